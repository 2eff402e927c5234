"""A real `triage serve` (uvicorn subprocess, tiny model, SQLite WAL) under concurrent load, and killed mid-load."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from scripts.loadbench import free_port, run_load, start_server, stop_server, wait_ready
from router.db import make_engine, upgrade
from router.security import create_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory, tokenizer):
    """Environment for a server on the tiny model saved to disk (TRIAGE_BASE_MODEL) with a tiny artifact."""
    from conftest import TINY_TRAIN, make_tiny_base, tune_tiny
    from router.modelio import load_base_model
    from router.settings import Settings

    root = tmp_path_factory.mktemp("served")
    model_dir = root / "tiny-base"
    make_tiny_base(tokenizer).model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    train = root / "train.jsonl"
    train.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    base = load_base_model(Settings(data_dir=root / "cache-home", base_model=str(model_dir)))
    artifact, _ = tune_tiny(base, train, root / "tiny-prompt", epochs=1)
    return {"TRIAGE_BASE_MODEL": str(model_dir), "TRIAGE_TUNED_MODEL": str(artifact), "TRIAGE_SHOTS_FILE": str(train),
            "TRIAGE_MODEL_POLL_SECONDS": "0", "TRIAGE_TORCH_THREADS": "1"}


def prepare(tmp_path, served):
    data = tmp_path / "server-data"
    env = {**os.environ, **served, "TRIAGE_DATA_DIR": str(data)}
    engine = make_engine(f"sqlite:///{data / 'triage.db'}")
    upgrade(engine)
    with Session(engine) as s:
        key = create_key(s, "load", "integration")[1]
    return env, engine, key


def duplicates(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT external_id, COUNT(*) FROM tickets GROUP BY external_id HAVING COUNT(*) > 1")).all()


def test_concurrent_intake_with_retries(tmp_path, served):
    env, engine, key = prepare(tmp_path, served)
    port = free_port()
    proc = start_server(env, port, workers=2, log_path=tmp_path / "server.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, key, proc)
        report = run_load(base_url, key, clients=16, requests=500, retry_fraction=0.25)
    finally:
        stop_server(proc)
    summary = report.summary()
    print("load:", summary)
    assert report.failures == [], report.failures[:5]
    assert summary["answered"] == report.sent > 500
    assert set(report.statuses) == {201}, (report.statuses, (tmp_path / "server.log").read_text()[-3000:])
    assert report.retry_mismatches == []
    assert duplicates(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM tickets")).scalar() == 500 == len(report.acked)
        assert conn.execute(text("SELECT COUNT(*) FROM routings")).scalar() == 500


def test_acknowledged_tickets_survive_sigkill(tmp_path, served):
    env, engine, key = prepare(tmp_path, served)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    proc = start_server(env, port, log_path=tmp_path / "server.log")
    stop = threading.Event()
    reports = []
    try:
        wait_ready(base_url, key, proc)
        loader = threading.Thread(target=lambda: reports.append(
            run_load(base_url, key, clients=16, requests=5000, retry_fraction=0.1, stop=stop, timeout=30)))
        loader.start()
        deadline = time.time() + 120
        while time.time() < deadline and (not reports and _acked_so_far(engine) < 80):
            time.sleep(0.05)
        stop_server(proc, kill=True)  # SIGKILL mid-load: no shutdown, no flush
        stop.set()
        loader.join(timeout=120)
    finally:
        stop_server(proc, kill=True)
    report = reports[0]
    assert len(report.acked) >= 50, report.summary()
    assert report.failures, "the kill should have cut some requests off"

    proc = start_server(env, port, log_path=tmp_path / "server2.log")
    try:
        wait_ready(base_url, key, proc)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            stored = dict(conn.execute(text("SELECT external_id, id FROM tickets")).all())
            orphans = conn.execute(text("SELECT COUNT(*) FROM tickets t WHERE NOT EXISTS "
                                        "(SELECT 1 FROM routings r WHERE r.ticket_id = t.id)")).scalar()
        lost = {eid: tid for eid, tid in report.acked.items() if stored.get(eid) != tid}
        assert lost == {}, f"{len(lost)} acknowledged tickets missing after the kill"
        assert orphans == 0, "a ticket without its routing: intake was not atomic"
        eid, tid = next(iter(report.acked.items()))
        again = httpx.post(f"{base_url}/v1/tickets", json={"text": "ignored?", "external_id": eid},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert again.status_code == 409  # same external_id, other text: the stored ticket stands
        print("durability:", report.summary(), "stored after restart:", len(stored))
    finally:
        stop_server(proc)


def _acked_so_far(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM tickets")).scalar()
