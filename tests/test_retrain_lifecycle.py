"""Who a retraining job belongs to. A job started through the API belongs to that server: when the server is
gone the job stops at its next step and is marked failed, saying why. A job started with `triage retrain`
is detached: it outlives the command and is followed or cancelled from any later command or server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlmodel import Session

from router import store
from router.security import create_key
from test_retrain_helpers import wait_for
from test_retrain_jobs import NEW, SLOW_PARAMS, env, job_row, options, pending, training_step  # noqa: F401 - env
from tuning.jobs.launch import pid_alive
from tuning.jobs.paths import JobPaths

TRIAGE = Path(sys.executable).parent / "triage"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environ = {**os.environ, "TRIAGE_LAZY_MODEL_LOAD": "1", "TRIAGE_MODEL_POLL_SECONDS": "0",
               "TRIAGE_TORCH_THREADS": "1"}
    log = (tmp_path / "serve.log").open("ab")
    server = subprocess.Popen([str(TRIAGE), "serve", "--port", str(port)], env=environ, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=120, every=0.3, what="the server to answer")
    return server, base


def test_a_job_started_through_the_api_stops_and_fails_when_its_server_is_gone(env, tmp_path):
    settings, engine = env
    with Session(engine) as s:
        boss = {"Authorization": f"Bearer {create_key(s, 'boss', 'supervisor')[1]}"}
    server, base = start_server(tmp_path)
    try:
        r = httpx.post(f"{base}/v1/tuning/jobs", json={"parameters": SLOW_PARAMS}, headers=boss, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        wait_for(lambda: training_step(settings, job_id), timeout=120, what="the worker to be training")
        worker = job_row(engine, job_id).pid
    finally:
        server.send_signal(signal.SIGTERM)  # the server exits (as the fuzzer's did); nobody cancels the job
        server.wait(timeout=60)
    wait_for(lambda: job_row(engine, job_id).state != "running", timeout=90, what="the job to stop")
    job = job_row(engine, job_id)
    assert job.state == "failed" and f"the server that started it (pid {server.pid}) stopped" in job.error
    assert "nothing was registered" in job.error and "corrections stay pending" in job.error
    wait_for(lambda: not pid_alive(worker), timeout=30, what="the worker process to end")
    assert pending(engine) == len(NEW), "no correction lost"
    with Session(engine) as s:
        assert store.list_model_versions(s) == []
    paths = JobPaths.of(settings, job_id)
    assert not paths.staging.exists() and not paths.data.exists() and not paths.orphaned.exists()
    listed = subprocess.run([str(TRIAGE), "retrain", "list"], capture_output=True, text=True, timeout=120)
    assert "failed" in listed.stdout and "the server that started it" in listed.stdout


def test_a_job_started_with_triage_retrain_outlives_the_command_and_is_cancelled_later(env, tmp_path):
    from tests.conftest import TINY_TRAIN

    settings, engine = env
    # a base file large enough that 50 epochs cannot end before the cancel (a quiet host ran 12 examples' worth
    # to the end first)
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps({"input": f"{text} (ticket {n})", "output": label}) + "\n"
                            for n in range(40) for text, label in TINY_TRAIN))
    started = subprocess.run([str(TRIAGE), "retrain", "start", "--base-file", str(base), *options(SLOW_PARAMS)],
                             capture_output=True, text=True, timeout=300)
    assert started.returncode == 0 and "started tuning job 1" in started.stdout, started.stderr
    wait_for(lambda: training_step(settings, 1), timeout=120, what="the worker to be training")
    time.sleep(3)  # longer than a worker's owner check: a detached job has no owner to lose
    job = job_row(engine, 1)
    assert job.state == "running" and pid_alive(job.pid), "the job went on after `triage retrain` exited"
    cancel = subprocess.run([str(TRIAGE), "retrain", "cancel", "1"], capture_output=True, text=True, timeout=120)
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    wait_for(lambda: job_row(engine, 1).state != "running", timeout=60, what="the job to stop")
    assert job_row(engine, 1).state == "cancelled"
    wait_for(lambda: not pid_alive(job.pid), timeout=30, what="the worker process to end")
