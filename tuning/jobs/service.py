"""Starting and following jobs: what the API and `triage retrain` call (no HTTP, no click here)."""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from tuning.jobs import store as jobs
from tuning.jobs.launch import spawn, watch
from tuning.jobs.records import TuningJob
from tuning.jobs.start_point import active_artifact

log = logging.getLogger(__name__)


def start_job(settings, engine: Engine, parameters: dict[str, Any], *, who: str, auto_promote: bool = True,
              base_file: str | None = None, watch_exit: bool = True, owned: bool = True,
              start_from: str = "active") -> TuningJob:
    """Record a job and start its worker process; ParameterError / Conflict before anything starts.

    start_from: "active" continues the active version when it is a late prompt (tuning.jobs.start_point);
    "scratch" tunes from the parameters alone.

    watch_exit: reap the worker in a thread of this process when it ends (long-lived callers: the API);
    a short-lived CLI leaves that to init and to the next start's `reap`.
    owned: the job belongs to this process (a server): if it ends, however, the worker stops the job at its
    next step and marks it failed. `triage retrain` starts detached jobs (owned=False) that outlive it.
    """
    options: dict[str, Any] = {"auto_promote": auto_promote}
    if base_file:
        options["base_file"] = str(base_file)
    with Session(engine, expire_on_commit=False) as s:
        jobs.reap(settings, s)
        job = jobs.create_job(s, parameters, who=who, options=options, active=active_artifact(settings, s),
                              start_from=start_from)
    try:
        process = spawn(settings, job.id, owner_pid=os.getpid() if owned else None)
    except OSError as exc:
        with Session(engine, expire_on_commit=False) as s:
            return jobs.finish(s, job.id, "failed", error=f"could not start the worker process: {exc}")
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.set_process(s, job.id, process.pid)
    if watch_exit:
        watch(process, lambda code: _after_exit(settings, engine, job.id, code))
    return job


def _after_exit(settings, engine: Engine, job_id: int, code: int) -> None:
    try:
        with Session(engine, expire_on_commit=False) as s:
            for job in jobs.reap(settings, s):
                log.warning("tuning job %s: worker exited with status %s: %s", job.id, code, job.error)
    except Exception:  # noqa: BLE001 - the next request's reap will catch it
        log.exception("could not check tuning job %s after its worker exited", job_id)
