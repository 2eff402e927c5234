"""Start N `triage serve` replicas at the same moment on an empty data directory, several times over.

    python scripts/replicas_start.py --replicas 3 --tries 10              # embedded SQLite, created by the replicas
    python scripts/replicas_start.py --postgres-url URL --replicas 3      # a THROWAWAY database: it is wiped each try

Each try gets a new empty data directory shared by every replica (weights cache, drafts, database file), starts
the replicas together on free loopback ports, and counts one as up when it answers /healthz (uvicorn answers only
once startup, model loading included, has succeeded), then /readyz and a routing with an API key created
afterwards. Model settings come from the environment (default: the embedded SmolLM2 and the shipped tuned model,
so every try converts the GGUF again: the cache race of issue 16). Prints one line per try and a JSON summary;
exit status 1 if any replica of any try failed (its log's tail is printed). Every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from loadbench import free_port, start_server, stop_server  # noqa: E402 - scripts/loadbench.py, beside this one

COMPLAINT = "Where are the 2 extra sets of sheets that are supposed to come with my order?"
CLI = [sys.executable, "-c", "from router.cli import main; main()"]


@dataclass
class TryResult:
    up: int = 0
    replicas: int = 0
    seconds_to_healthy: list[float] = field(default_factory=list)
    departments: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one per replica that did not come up or did not route


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wipe_postgres(url: str) -> None:
    from sqlalchemy import MetaData

    from router.db import make_engine

    engine = make_engine(url)
    reflected = MetaData()
    reflected.reflect(engine)
    reflected.drop_all(engine)
    engine.dispose()


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"triage {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def try_once(base_env: dict[str, str], replicas: int, work: Path, *, postgres_url: str | None = None,
             timeout: float = 900) -> TryResult:
    """One try: `replicas` servers started together on the empty data directory work/data."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    env = {**base_env, "TRIAGE_DATA_DIR": str(data), "TRIAGE_MODEL_POLL_SECONDS": "0"}
    if postgres_url:
        _wipe_postgres(postgres_url)
        env["TRIAGE_DATABASE_URL"] = postgres_url
        _cli(env, "db", "upgrade")  # a PostgreSQL schema is created only by this command
    assert not data.exists(), f"{data} is not empty"
    ports = [free_port() for _ in range(replicas)]
    logs = [work / f"replica-{i}.log" for i in range(replicas)]
    started = time.perf_counter()
    procs = [start_server(env, port, log_path=log) for port, log in zip(ports, logs)]
    result = TryResult(replicas=replicas)
    try:
        pending = set(range(replicas))
        while pending and time.perf_counter() - started < timeout:
            for i in sorted(pending):
                if procs[i].poll() is not None:
                    pending.discard(i)
                    result.failures.append(f"replica {i} exited with status {procs[i].returncode} during startup:\n"
                                           + logs[i].read_text(errors="replace")[-3000:])
                elif _healthy(f"http://127.0.0.1:{ports[i]}"):
                    pending.discard(i)
                    result.seconds_to_healthy.append(round(time.perf_counter() - started, 1))
            time.sleep(0.2)
        result.failures += [f"replica {i} was not up after {timeout:.0f}s" for i in sorted(pending)]
        try:
            key = _cli(env, "keys", "create", "--role", "agent", "--name", "replicas-start")
        except RuntimeError as exc:  # e.g. no replica came up to create the database
            result.failures.append(str(exc))
            return result
        for i, port in enumerate(ports):
            if procs[i].poll() is not None or any(f.startswith(f"replica {i} ") for f in result.failures):
                continue
            headers = {"Authorization": f"Bearer {key}"}
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", headers=headers, timeout=30)
            routed = httpx.post(f"http://127.0.0.1:{port}/v1/route", json={"text": COMPLAINT}, headers=headers,
                                timeout=120)
            if ready.status_code != 200 or routed.status_code != 200:
                result.failures.append(f"replica {i}: /readyz {ready.status_code} {ready.text[:300]}; "
                                       f"/v1/route {routed.status_code} {routed.text[:300]}")
                continue
            result.up += 1
            result.departments.append(routed.json()["departments"])
    finally:
        for proc in procs:
            stop_server(proc)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3, help="servers started at once (2-8, default 3)")
    parser.add_argument("--tries", type=int, default=10, help="tries, each on a new empty data directory (1-100)")
    parser.add_argument("--postgres-url", help="a throwaway PostgreSQL database (wiped before every try) instead of "
                                               "the embedded SQLite one")
    parser.add_argument("--keep", action="store_true", help="keep each try's directory (logs, data) and print it")
    args = parser.parse_args(argv)
    if not 2 <= args.replicas <= 8:
        parser.error("--replicas must be between 2 and 8")
    if not 1 <= args.tries <= 100:
        parser.error("--tries must be between 1 and 100")
    env = {k: v for k, v in os.environ.items() if k not in ("TRIAGE_DATA_DIR", "TRIAGE_DATABASE_URL")}
    env.setdefault("PYTHONPATH", str(ROOT))
    good, summary = 0, []
    for n in range(1, args.tries + 1):
        work = Path(tempfile.mkdtemp(prefix=f"triage-replicas-{n}-"))
        try:
            result = try_once(env, args.replicas, work, postgres_url=args.postgres_url)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        good += result.up == result.replicas and not result.failures
        same = len({tuple(d) for d in result.departments}) <= 1
        print(f"try {n}: {result.up}/{result.replicas} up, healthy after {result.seconds_to_healthy} s, "
              f"routed {result.departments[0] if result.departments else '-'}"
              f"{'' if same else ' (replicas disagree: ' + str(result.departments) + ')'}"
              f"{' in ' + str(work) if args.keep else ''}", flush=True)
        for failure in result.failures:
            print(f"  FAILED {failure}", file=sys.stderr, flush=True)
        summary.append({"try": n, "up": result.up, "replicas": result.replicas,
                        "seconds_to_healthy": result.seconds_to_healthy, "failures": len(result.failures)})
    print(json.dumps({"tries": args.tries, "all_up": good, "replicas": args.replicas, "per_try": summary}))
    print(f"{good}/{args.tries} tries: every one of the {args.replicas} replicas came up", flush=True)
    return 0 if good == args.tries else 1


if __name__ == "__main__":
    sys.exit(main())
