"""Shared pieces of the API tests: an app over a temp SQLite DB and the tiny model, with one key per role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
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


@pytest.fixture
def api(tiny_settings, tiny_service):
    settings = tiny_settings.model_copy(update={"model_poll_seconds": 0.0})
    tiny_service.settings = settings
    engine = engine_for(settings)
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
