"""The db, keys and models commands on a temp SQLite database."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from sqlmodel import Session

from router.cli import cli
from router.db import engine_for
from router.security import authenticate
from router.settings import DEFAULT_TUNED, Settings
from test_api_helpers import tiny_artifact  # noqa: F401 - fixture


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_db_status_looks_without_creating_and_upgrade_is_idempotent():
    path = Settings().data_dir / "triage.db"
    code, out, _ = run("db", "status")
    assert code == 0 and "none yet" in out and "first command that needs it" in out
    assert not path.exists(), "looking at the database does not create it"
    code, out, _ = run("db", "upgrade")
    assert code == 0 and "applied 1" in out
    code, out, _ = run("db", "upgrade")
    assert code == 0 and "applied" not in out
    code, out, _ = run("db", "status")
    assert "tickets" in out and "triage db upgrade" not in out


def test_keys_create_list_revoke():
    run("db", "upgrade")
    code, out, err = run("keys", "create", "--role", "supervisor", "--name", "boss")
    key = out.strip()
    assert code == 0 and key.startswith("trk_") and "shown only now" in err
    engine = engine_for(Settings())
    with Session(engine) as s:
        assert authenticate(s, key).role == "supervisor"
    code, _, err = run("keys", "create", "--role", "supervisor", "--name", "boss")
    assert code == 1 and "already exists" in err
    code, _, err = run("keys", "create", "--role", "admin", "--name", "x")
    assert code == 2 and "admin" in err
    code, out, _ = run("keys", "list")
    assert "boss" in out and "supervisor" in out and key not in out
    code, out, _ = run("keys", "revoke", "boss")
    assert code == 0 and "revoked" in out
    with Session(engine) as s:
        assert authenticate(s, key) is None
    code, _, err = run("keys", "revoke", "nobody")
    assert code == 1 and "no API key named 'nobody'" in err


def test_keys_create_refuses_names_outside_the_pattern():
    for name, shown in (("../x", "'/'"), ("a/b", "'/'"), ("two\nlines", "'\\n'"), ("\x1b[2Jwipe", "'\\x1b'"),
                        (" boss", "' '")):
        code, out, err = run("keys", "create", "--role", "agent", "--name", name)
        assert code == 1 and out == "", name
        assert err.startswith("triage: error: name ") and shown in err and "only letters, digits and . _ @ -" in err, err
    code, out, _ = run("keys", "list")
    assert code == 0 and out == "", "nothing was created"
    assert run("keys", "create", "--role", "agent", "--name", "desk-2@site.example")[0] == 0


def test_models_register_promote_rollback(tiny_artifact, tmp_path):
    from tuning.artifacts import update_metadata

    run("db", "upgrade")
    for version in ("v1", "v2"):
        path = tmp_path / version
        shutil.copytree(tiny_artifact, path)
        update_metadata(path, version=version)
        code, out, _ = run("models", "register", str(path))
        assert code == 0 and f"registered {version} (candidate)" in out
    code, _, err = run("models", "register", str(tmp_path))
    assert code == 1 and "not a tuned-model artifact" in err
    assert run("models", "promote", "v1", "--who", "ann")[0] == 0
    code, out, _ = run("models", "promote", "v2")
    assert code == 0 and "v2 is active" in out and "cli:" in out
    code, out, _ = run("models", "list")
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    shipped = json.loads((DEFAULT_TUNED / "triage.json").read_text())["version"]
    assert lines == {"v2": "active", "v1": "retired", shipped: "retired"}, "the shipped model too"
    code, out, _ = run("models", "rollback", "v2")
    assert code == 0 and "v1 is active again" in out
    code, _, err = run("models", "rollback", "v2")
    assert code == 1 and "not active" in err
