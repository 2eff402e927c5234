"""Retraining jobs in their own process on the tiny model saved as a HF directory:
`triage retrain start --follow`, cancel through the API, kill -9 mid-training, one job at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import Session

from conftest import TINY_TRAIN
from router import store
from router.api import create_app
from router.cli import cli
from router.db.models import ROLES
from router.security import create_key
from router.settings import Settings
from test_retrain_helpers import TINY_PARAMS, correct, migrated, wait_for, write_jsonl
from tuning.jobs import store as jobs
from tuning.jobs.launch import pid_alive
from tuning.jobs.paths import JobPaths
from tuning.jobs.progress import read_progress

SLOW_PARAMS = {**TINY_PARAMS, "epochs": 50, "batch_size": 1}  # long enough to be caught mid-training
NEW = ["The lamp in the ad was blue, mine is grey.", "Nobody could tell me how to reset the modem.",
       "Two of the four mugs are missing from the box."]


@pytest.fixture
def env(tiny_env, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_DEV_FILE", str(write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4])))
    settings = Settings()
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        for text, depts in zip(NEW, (["Planning", "Marketing"], ["Service", "L3"], ["Warehouse", "Packaging"])):
            correct(s, text, depts)
    yield settings, engine
    engine.dispose()


def job_row(engine, job_id: int):
    with Session(engine, expire_on_commit=False) as s:
        return jobs.get_job(s, job_id)


def pending(engine) -> int:
    with Session(engine) as s:
        return len(store.untrained_corrections(s))


def options(params: dict) -> list[str]:
    return [arg for k, v in params.items() for arg in (f"--{k.replace('_', '-')}", str(v))
            if k != "early_stopping_patience"]


def training_step(settings, job_id: int) -> bool:
    p = read_progress(JobPaths.of(settings, job_id).progress)
    return p.get("phase") == "training" and (p.get("step") or 0) >= 2


def test_retrain_follow_runs_the_job_to_a_registered_version(env):
    settings, engine = env
    result = CliRunner().invoke(cli, ["retrain", "start", *options(TINY_PARAMS), "--follow"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    job = job_row(engine, 1)
    assert job.state == "succeeded" and job.who.startswith("cli:")
    out = result.output
    assert "started tuning job 1" in out and "job 1 running:" in out  # which phases show depends on the poll timing
    assert f"{job.version} registered as" in out and "dev" in out and "holdout" in out
    path = Path(job.result["artifact_path"])
    assert path == settings.models_dir / job.version and (path / "provenance.jsonl").is_file()
    with Session(engine) as s:
        row = store.get_model_version(s, job.version)
    assert row.status == ("active" if job.result["promoted"] else "candidate")
    assert row.metrics["gate"]["active_version"] == "tiny-dir-prompt"
    assert pending(engine) == len(job.result["training_set"]["holdout_correction_ids"])
    listed = CliRunner().invoke(cli, ["retrain", "list"])
    assert listed.exit_code == 0 and "succeeded" in listed.output and job.version in listed.output


def test_bad_parameters_exit_2_naming_the_field_and_range(env):
    result = CliRunner().invoke(cli, ["retrain", "start", "--epochs", "0", "--batch-size", "40"])
    assert result.exit_code == 2
    assert "epochs" in result.output and "allowed range 1 to 50" in result.output
    assert "batch_size" in result.output and "allowed range 1 to 16" in result.output
    result = CliRunner().invoke(cli, ["retrain", "start", "--method", "lora", "--learning-rate", "0.3"])
    assert result.exit_code == 2 and "learning_rate 0.3 is outside the range 1e-05 to 0.01 for lora" in result.output
    with Session(env[1]) as s:
        assert jobs.list_jobs(s) == [], "nothing was started"


def test_kill_9_mid_training_loses_no_correction_and_the_next_start_marks_it_failed(env, tiny_dir_artifact):
    settings, engine = env
    before = pending(engine)
    started = CliRunner().invoke(cli, ["retrain", "start", *options(SLOW_PARAMS)], catch_exceptions=False)
    assert started.exit_code == 0 and "started tuning job 1" in started.output
    with Session(engine) as s:
        create_key(s, "agent-key", "agent")
    serving = TestClient(create_app(settings))
    with serving:
        job = job_row(engine, 1)
        wait_for(lambda: training_step(settings, 1), timeout=90, what="the worker to be training")
        os.kill(job.pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(job.pid), timeout=10, what="the worker to die")
        assert job_row(engine, 1).state == "running", "nobody has looked yet"
        assert JobPaths.of(settings, 1).data.exists(), "the killed worker left its partial files"

        listed = CliRunner().invoke(cli, ["retrain", "list"])  # the next start of a triage command
        assert f"job 1 marked failed: its worker process (pid {job.pid}) ended during training" in listed.output
        dead = job_row(engine, 1)
        assert dead.state == "failed" and dead.running_slot is None and "corrections stay pending" in dead.error
        assert pending(engine) == before, "no correction lost"
        assert not JobPaths.of(settings, 1).data.exists() and not JobPaths.of(settings, 1).staging.exists()
        assert not (settings.models_dir / job.version).exists()
        with Session(engine) as s:
            assert store.list_model_versions(s) == []
            key = create_key(s, "agent-2", "agent")[1]
        # The server that was up all along still routes with the model it had.
        r = serving.post("/v1/route", json={"text": NEW[0]}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.json()["model_version"] == "tiny-dir-prompt"
    with Session(engine, expire_on_commit=False) as s:
        assert jobs.create_job(s, TINY_PARAMS, who="boss").id == 2, "a new job can start once the dead one failed"


def test_api_start_conflict_progress_cancel(env):
    settings, engine = env
    keys = {}
    with Session(engine) as s:
        for role in ROLES:
            keys[role] = create_key(s, f"{role}-key", role)[1]
    boss = {"Authorization": f"Bearer {keys['supervisor']}"}
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/tuning/jobs", json={"parameters": SLOW_PARAMS}, headers=boss)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "queued" and job["pid"] and job["who"] == "supervisor-key"
        busy = client.post("/v1/tuning/jobs", json={"parameters": TINY_PARAMS}, headers=boss)
        assert busy.status_code == 409
        assert f"already running: job {job['id']}" in busy.json()["detail"] and "supervisor-key" in busy.json()["detail"]

        def progress():
            body = client.get(f"/v1/tuning/jobs/{job['id']}", headers=boss).json()
            p = body["progress"]
            return body if body["phase"] == "training" and (p.get("step") or 0) >= 2 else None

        body = wait_for(progress, timeout=90, what="training progress through the API")
        p = body["progress"]
        assert body["state"] == "running" and p["epochs"] == 50 and p["loss_curve"] and p["eta_s"] is not None
        agent = {"Authorization": f"Bearer {keys['agent']}"}
        assert client.post("/v1/route", json={"text": NEW[1]}, headers=agent).status_code == 200, "serving goes on"

        r = client.post(f"/v1/tuning/jobs/{job['id']}/cancel", headers=boss)
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        done = wait_for(lambda: (b := client.get(f"/v1/tuning/jobs/{job['id']}", headers=boss).json())["state"]
                        != "running" and b, timeout=30, what="the job to stop")
        assert done["state"] == "cancelled" and "nothing was registered" in done["error"]
        assert client.get("/v1/models", headers=boss).json() == []
    assert not (settings.models_dir / done["version"]).exists() and pending(engine) == len(NEW)
    assert not JobPaths.of(settings, job["id"]).staging.exists()


def test_api_refuses_bad_parameters_and_a_second_job(tiny_settings, tiny_service):
    settings = tiny_settings.model_copy(update={"model_poll_seconds": 0.0})
    engine = migrated(settings)
    with Session(engine) as s:
        boss = {"Authorization": f"Bearer {create_key(s, 'boss', 'supervisor')[1]}"}
        agent = {"Authorization": f"Bearer {create_key(s, 'ann', 'agent')[1]}"}
    with TestClient(create_app(settings, tiny_service)) as client:
        r = client.post("/v1/tuning/jobs", json={"parameters": {"epochs": 99, "num_virtual_tokens": 0, "lr": 1}},
                        headers=boss)
        assert r.status_code == 422
        fields = {e["field"]: e["problem"] for e in r.json()["errors"]}
        assert "allowed range 1 to 50" in fields["parameters.epochs"]
        assert "allowed range 1 to 200" in fields["parameters.num_virtual_tokens"]
        assert "unknown tuning parameter" in fields["parameters.lr"]
        r = client.post("/v1/tuning/jobs", json={"parameters": {"method": "lora", "learning_rate": 0.3}}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.learning_rate"
        r = client.post("/v1/tuning/jobs", json={"parameters": {"method": "late-prompt", "teacher": "/etc"}}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.teacher"
        assert "triage tune --teacher" in r.json()["errors"][0]["problem"]
        r = client.post("/v1/tuning/jobs", json={"parameters": {"method": "late-prompt", "cross_teacher": "/etc"}},
                        headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.cross_teacher"
        assert "triage tune --cross-teacher" in r.json()["errors"][0]["problem"]
        r = client.post("/v1/tuning/jobs", json={"parameters": {"method": "late-prompt", "init_prompt": "/etc"}},
                        headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.init_prompt"
        r = client.post("/v1/tuning/jobs", json={"parameters": {"simulated_corrections": 0.3}}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.simulated_corrections"
        assert "--context precedents --simulate-corrections" in r.json()["errors"][0]["problem"]
        r = client.post("/v1/tuning/jobs", json={"parameters": {}, "promote": True}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "promote"
        assert client.post("/v1/tuning/jobs", json={}, headers=agent).status_code == 403
        with Session(engine, expire_on_commit=False) as s:  # a job another server started a moment ago
            other = jobs.create_job(s, TINY_PARAMS, who="alice")
        r = client.post("/v1/tuning/jobs", json={}, headers=boss)
        assert r.status_code == 409 and f"job {other.id} (queued" in r.json()["detail"] and "alice" in r.json()["detail"]
    engine.dispose()


def test_startup_marks_a_job_with_a_dead_worker_failed_and_cleans_it(tiny_settings, tiny_service):
    settings = tiny_settings.model_copy(update={"model_poll_seconds": 0.0})
    engine = migrated(settings)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, TINY_PARAMS, who="alice")
        jobs.claim(s, job.id, gone.pid)
    paths = JobPaths.of(settings, job.id)
    (paths.staging / "x").parent.mkdir(parents=True)
    (paths.staging / "x").write_text("half an artifact")
    (settings.models_dir / job.version).mkdir(parents=True)
    create_app(settings, tiny_service)  # startup, no request yet
    dead = job_row(engine, job.id)
    assert dead.state == "failed" and f"pid {gone.pid}" in dead.error
    assert not paths.staging.exists() and not (settings.models_dir / job.version).exists()
    engine.dispose()
