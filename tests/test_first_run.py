"""First run on a brand-new data directory: every command that needs the database finds it ready (the
embedded SQLite file is created and migrated on first use), the shipped model is in the registry, and
PostgreSQL still needs an explicit `triage db upgrade`, saying so."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, text
from sqlmodel import Session

from router.cli import cli
from router.db import SCHEMA_VERSION, current_version, make_engine, upgrade
from router.settings import DEFAULT_TUNED, Settings
from test_api_helpers import PG_URL

TRIAGE = Path(sys.executable).parent / "triage"
SHIPPED = json.loads((DEFAULT_TUNED / "triage.json").read_text())["version"]


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def database_file() -> Path:
    return Settings().data_dir / "triage.db"


def test_cli_commands_work_on_a_brand_new_data_dir(tmp_path):
    assert not database_file().exists()
    code, out, err = run("retrain", "list")
    assert code == 0 and "no tuning jobs yet" in err, err
    assert current_version(make_engine(f"sqlite:///{database_file()}")) == SCHEMA_VERSION

    code, out, err = run("data", "build", "--out", str(tmp_path / "x.jsonl"))
    assert code == 0, err
    assert "wrote" in out and (tmp_path / "x.jsonl").stat().st_size > 0

    code, out, _ = run("models", "list")
    (row,) = [line.split() for line in out.splitlines()[1:]]
    assert row[:2] == [SHIPPED, "active"] and "triage:shipped" in row, "the served shipped model is registered"

    code, out, _ = run("keys", "create", "--role", "agent", "--name", "first")
    assert code == 0 and out.startswith("trk_")


def test_every_first_command_finds_it_ready(tmp_path):
    for args in (["keys", "list"], ["models", "list"], ["retrain", "list"]):
        data_dir = tmp_path / "-".join(args)
        result = CliRunner(env={"TRIAGE_DATA_DIR": str(data_dir)}).invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0 and "triage db upgrade" not in result.output, (args, result.output)
        assert current_version(make_engine(f"sqlite:///{data_dir / 'triage.db'}")) == SCHEMA_VERSION, args


def test_api_app_on_a_brand_new_data_dir_lists_the_shipped_model(tmp_path, tiny_train_file, tiny_base):
    from fastapi.testclient import TestClient

    from router.api import create_app
    from router.security import create_key
    from router.service import RouterService

    settings = Settings(data_dir=tmp_path / "fresh", shots_file=tiny_train_file, lazy_model_load=True,
                        model_poll_seconds=0.0)
    app = create_app(settings, RouterService(settings, base=tiny_base))
    with Session(app.state.core.database) as s:
        boss = {"Authorization": f"Bearer {create_key(s, 'boss', 'supervisor')[1]}"}
    with TestClient(app) as client:
        (model,) = client.get("/v1/models", headers=boss).json()
    assert (model["version"], model["status"], model["promoted_by"]) == (SHIPPED, "active", "triage:shipped")
    assert Path(model["artifact_path"]) == DEFAULT_TUNED.resolve()
    assert model["metrics"]["exact_set_accuracy"] > 0.8, "the shipped model's own dev evaluation is kept"


def test_an_explicit_tuned_model_is_not_registered(tmp_path, tiny_artifact):
    result = CliRunner(env={"TRIAGE_TUNED_MODEL": str(tiny_artifact)}).invoke(cli, ["models", "list"])
    assert result.exit_code == 0 and "no model versions registered" in result.stderr


def test_a_newer_schema_is_refused_and_left_as_it_is(tiny_settings, tiny_service):
    from router.api import create_app
    from router.db import SchemaError

    engine = make_engine(f"sqlite:///{database_file()}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version (version, description, applied_at) "
                          "VALUES (99, 'from the future', CURRENT_TIMESTAMP)"))
    for args in (["keys", "list"], ["retrain", "list"], ["serve"]):
        code, _, err = run(*args)
        assert code == 1 and "newer than this triage" in err and "upgrade triage" in err, (args, err)
    assert tiny_settings.resolved_database_url == Settings().resolved_database_url
    with pytest.raises(SchemaError, match="newer than this triage"):
        create_app(tiny_settings, tiny_service)
    assert current_version(engine) == 99


@pytest.mark.skipif(not PG_URL, reason="set TRIAGE_TEST_POSTGRES_URL to a throwaway PostgreSQL database")
def test_postgresql_needs_an_explicit_upgrade_and_says_so(monkeypatch, tiny_settings, tiny_service):
    from router.api import create_app
    from router.db import SchemaError

    engine = make_engine(PG_URL)
    reflected = MetaData()
    reflected.reflect(engine)
    reflected.drop_all(engine)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", PG_URL)
    for args in (["keys", "list"], ["retrain", "list"], ["data", "build", "--out", "/dev/null"], ["serve"]):
        code, _, err = run(*args)
        assert code == 1 and "run `triage db upgrade`" in err, (args, err)
        assert "postgresql databases are created and migrated only by that command" in err
    with pytest.raises(SchemaError, match="only by that command"):
        create_app(tiny_settings.model_copy(update={"database_url": PG_URL}), tiny_service)
    assert current_version(engine) == 0, "nothing was created implicitly"
    assert run("db", "upgrade")[0] == 0
    assert run("keys", "list")[0] == 0
    assert not database_file().exists(), "no SQLite file on the side"
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_a_brand_new_data_dir(tiny_env, tmp_path):
    port = free_port()
    env = {**os.environ, "TRIAGE_LAZY_MODEL_LOAD": "1", "TRIAGE_MODEL_POLL_SECONDS": "0", "TRIAGE_TORCH_THREADS": "1"}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([str(TRIAGE), "serve", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.3)
        code, key, _ = run("keys", "create", "--role", "agent", "--name", "desk")
        assert code == 0
        r = httpx.post(f"{base}/v1/route", json={"text": "The box was crushed."},
                       headers={"Authorization": f"Bearer {key.strip()}"}, timeout=60)
        assert r.status_code == 200 and r.json()["departments"], r.text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert database_file().exists()
