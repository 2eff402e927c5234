"""Shared pieces of the API tests: an app over a temp SQLite DB and the tiny model, with one key per role."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData
from sqlmodel import Session, func, select

from router.api import create_app
from router.db import engine_for, upgrade
from router.db.models import ROLES, Ticket
from router.security import create_key


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]
    engine: Engine

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def ticket_count(self) -> int:
        with Session(self.engine) as s:
            return s.exec(select(func.count()).select_from(Ticket)).one()


# With TRIAGE_TEST_POSTGRES_URL (a throwaway database: it is wiped), every API test also runs on PostgreSQL.
PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set TRIAGE_TEST_POSTGRES_URL to a throwaway PostgreSQL database"))])
def api(request, tiny_settings, tiny_service):
    update = {"model_poll_seconds": 0.0, **({"database_url": PG_URL} if request.param == "postgresql" else {})}
    settings = tiny_settings.model_copy(update=update)
    tiny_service.settings = settings
    engine = engine_for(settings)
    if request.param == "postgresql":
        reflected = MetaData()
        reflected.reflect(engine)
        reflected.drop_all(engine)
    upgrade(engine)
    keys = {}
    with Session(engine) as s:
        for role in ROLES:
            keys[role] = create_key(s, f"{role}-key", role)[1]
    with TestClient(create_app(settings, tiny_service)) as client:
        yield Api(client, keys, engine)
    engine.dispose()


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tokenizer):
    """One tiny tuned artifact per test module (same seed, so it fits every `tiny_base`); copy it before changing it."""
    import json

    from conftest import TINY_TRAIN, make_tiny_base, tune_tiny

    root = tmp_path_factory.mktemp("artifact")
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    path, _ = tune_tiny(make_tiny_base(tokenizer), train, root / "tiny-prompt")
    return path


def keyed_data_dir(data, *keys: tuple[str, str]) -> dict[str, str]:
    """A data directory whose SQLite database is migrated and holds API keys (name, role); returns their secrets,
    for a real `triage serve` started on it."""
    from router.db import make_engine

    engine = make_engine(f"sqlite:///{data / 'triage.db'}")
    upgrade(engine)
    with Session(engine) as s:
        secrets = {name: create_key(s, name, role)[1] for name, role in keys}
    engine.dispose()
    return secrets
