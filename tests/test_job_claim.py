"""A tuning job is claimed by exactly one worker, under a database lock, on SQLite and on PostgreSQL.

Two replicas share one database; a job must run once however many workers try to take it at the same moment,
and a worker that loses must not touch the job (it keeps the pid of the worker that runs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import MetaData
from sqlmodel import Session

from router.db import make_engine, upgrade
from router.settings import Settings
from router.store import Conflict
from test_retrain_helpers import TINY_PARAMS
from tuning.jobs import store as jobs
from tuning.jobs.paths import JobPaths, write_settings

PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
CLAIMANTS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="set TRIAGE_TEST_POSTGRES_URL to a throwaway PostgreSQL database"))])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'triage.db'}"
    else:
        url = PG_URL
        engine = make_engine(url)
        reflected = MetaData()
        reflected.reflect(engine)
        reflected.drop_all(engine)
        engine.dispose()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def test_workers_claiming_one_job_at_the_same_moment_leave_exactly_one_running(database_url):
    engine = make_engine(database_url)
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, TINY_PARAMS, who="alice")
    engine.dispose()
    start = threading.Barrier(CLAIMANTS)
    outcomes: dict[int, object] = {}

    def claimant(pid: int) -> None:
        own = make_engine(database_url)  # each worker is its own process with its own connection
        try:
            with Session(own, expire_on_commit=False) as s:
                jobs.get_job(s, job.id)
                s.rollback()
                start.wait()
                try:
                    outcomes[pid] = jobs.claim(s, job.id, pid).state
                except Conflict as exc:
                    outcomes[pid] = exc
        finally:
            own.dispose()

    # Fake pids well above any real one: claim only records them.
    threads = [threading.Thread(target=claimant, args=(4_000_000 + i,)) for i in range(CLAIMANTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [pid for pid, outcome in outcomes.items() if outcome == "running"]
    losers = [outcome for outcome in outcomes.values() if isinstance(outcome, Conflict)]
    assert len(winners) == 1 and len(losers) == CLAIMANTS - 1, outcomes
    assert all(f"pid {winners[0]}" in str(e) and "not queued" in str(e) for e in losers), losers[0]
    engine = make_engine(database_url)
    with Session(engine) as s:
        row = jobs.get_job(s, job.id)
        assert (row.state, row.pid) == ("running", winners[0]), "the job keeps the pid of the worker that runs it"
    engine.dispose()


def test_a_second_worker_process_for_a_running_job_exits_without_touching_it(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    engine = make_engine(database_url)
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, TINY_PARAMS, who="alice")
        jobs.claim(s, job.id, os.getpid())  # this test process plays the worker that runs it
    paths = JobPaths.of(settings, job.id)
    write_settings(settings, paths.settings)
    stray = subprocess.run([sys.executable, "-m", "tuning.jobs.run", str(job.id), "--settings", str(paths.settings)],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert stray.returncode == 1, stray.stderr
    assert f"tuning job {job.id} not run by this worker" in stray.stderr and f"pid {os.getpid()}" in stray.stderr
    assert "Traceback" not in stray.stderr
    with Session(engine) as s:
        row = jobs.get_job(s, job.id)
        assert (row.state, row.pid, row.phase) == ("running", os.getpid(), "assembling")
    assert not paths.progress.exists(), "the stray worker wrote no progress over the real one's"
    engine.dispose()
