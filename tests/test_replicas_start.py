"""Replicas started at the same moment on an empty data directory all come up (issue 16: the cache race).

Every replica writes the same caches at once (weights hash memo, the draft classifier; with the embedded model
also the converted weights) and, with the embedded SQLite database, creates and migrates the same database file.
`scripts/replicas_start.py --tries 10` repeats this with the real model; here one try each.
"""

from __future__ import annotations

import json
import os

import pytest

from replica_helpers import NO_POSTGRES, PG_URL, replica_env
from scripts.replicas_start import try_once


def assert_all_came_up(result, replicas: int) -> None:
    assert result.failures == [], "\n".join(result.failures)
    assert result.up == replicas and len(result.seconds_to_healthy) == replicas
    assert len({tuple(d) for d in result.departments}) == 1, f"the replicas route alike: {result.departments}"


def assert_caches_whole(data) -> None:
    cache = data / "cache"
    leftovers = [p for p in cache.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    memo = json.loads((cache / "hashes.json").read_text())
    assert memo, "the weights hash memo is whole JSON"
    drafts = [p for p in (cache / "drafts").iterdir()]
    assert drafts, "the draft classifier was cached"


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=[pytest.mark.slow, pytest.mark.skipif(
    not PG_URL, reason=NO_POSTGRES)])])
def test_three_replicas_started_at_once_on_an_empty_data_dir_all_come_up(database, tmp_path, tiny_env):
    env = replica_env(tmp_path, {k: v for k, v in tiny_env.items() if k.startswith("TRIAGE_") and k != "TRIAGE_DATA_DIR"})
    result = try_once(env, 3, tmp_path / "try", postgres_url=PG_URL if database == "postgresql" else None)
    print(f"{database}: healthy after {result.seconds_to_healthy} s")
    assert_all_came_up(result, 3)
    assert_caches_whole(tmp_path / "try" / "data")
    if database == "sqlite":
        assert (tmp_path / "try" / "data" / "triage.db").is_file(), "the replicas created the embedded database"


@pytest.mark.slow
@pytest.mark.realmodel
def test_three_replicas_of_the_shipped_model_started_at_once_on_an_empty_data_dir_all_come_up(tmp_path):
    """The embedded GGUF is converted by all three at once, and the shipped model registered once."""
    from sqlmodel import Session

    from router import store
    from router.db import make_engine

    env = replica_env(tmp_path, {"TRIAGE_TORCH_THREADS": os.environ.get("TRIAGE_TORCH_THREADS", "1")})
    result = try_once(env, 3, tmp_path / "try")
    print(f"shipped model: healthy after {result.seconds_to_healthy} s")
    assert_all_came_up(result, 3)
    data = tmp_path / "try" / "data"
    assert_caches_whole(data)
    converted = [p.name for p in (data / "cache" / "models").iterdir()]
    assert len(converted) == 1 and converted[0].startswith("smollm2-"), converted
    engine = make_engine(f"sqlite:///{data / 'triage.db'}")
    with Session(engine) as s:
        assert [v.status for v in store.list_model_versions(s)] == ["active"], "the shipped model registered once"
    engine.dispose()
