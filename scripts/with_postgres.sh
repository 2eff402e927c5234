#!/usr/bin/env bash
# Run a command with TRIAGE_TEST_POSTGRES_URL pointing at a throwaway PostgreSQL server.
#
#   scripts/with_postgres.sh .venv/bin/python -m pytest -q
#
# Installs PostgreSQL from the Debian packages when its server binaries are missing (root only), starts a
# server as an unprivileged user (the `postgres` system user when run as root) in a temporary directory,
# listening on 127.0.0.1 only, on a free port, and stops and removes it when the command ends, whatever
# happened. An already set TRIAGE_TEST_POSTGRES_URL is used as it is. When no server can be had, it says so
# and runs the command without one (the PostgreSQL tests then skip); under CI (CI=true) that is an error.
set -uo pipefail

say() { echo "with_postgres: $*" >&2; }

if [ "$#" -eq 0 ]; then say "usage: $0 COMMAND [ARGS...]"; exit 2; fi
if [ -n "${TRIAGE_TEST_POSTGRES_URL:-}" ]; then
    say "using the given TRIAGE_TEST_POSTGRES_URL"
    exec "$@"
fi

without_server() {
    if [ "${CI:-}" = "true" ]; then
        say "ERROR: $1; CI must run the PostgreSQL tests (set TRIAGE_TEST_POSTGRES_URL or install PostgreSQL)"
        exit 1
    fi
    say "WARNING: $1 -- running without PostgreSQL: the PostgreSQL tests will be SKIPPED"
    shift
    "$@"
    exit $?
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN="$(pg_bin)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        say "PostgreSQL server binaries missing: installing the Debian package"
        export DEBIAN_FRONTEND=noninteractive
        # The package's own cluster (if it creates one) is not used.
        apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2 || without_server "apt-get install postgresql failed" "$@"
        BIN="$(pg_bin)"
    else
        without_server "PostgreSQL is not installed and cannot be (needs root and apt-get: apt-get install postgresql)" "$@"
    fi
fi
[ -x "$BIN/initdb" ] || without_server "no initdb under /usr/lib/postgresql/*/bin" "$@"

DIR="$(mktemp -d /tmp/triage-pg.XXXXXX)"
if [ "$(id -u)" -eq 0 ]; then
    # The server refuses to run as root: run it as the package's unprivileged system user.
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres: "$DIR"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

stop_server() {
    if [ -f "$DIR/data/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1
    fi
    rm -rf "$DIR"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg "$BIN/initdb" -D "$DIR/data" -U triage -A trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; without_server "initdb failed" "$@"; }
# Throwaway data: no fsync. Unix socket in the temp dir, TCP on loopback only.
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$DIR/server.log" >&2; without_server "the PostgreSQL server did not start" "$@"; }
"$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U triage triage_test || without_server "createdb failed" "$@"

export TRIAGE_TEST_POSTGRES_URL="postgresql+psycopg://triage@127.0.0.1:$PORT/triage_test"
say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $DIR, stopped at exit)"
"$@"
exit $?
