"""Tuning jobs in the database: start (one at a time), read, cancel, finish, and mark dead workers failed.

Errors are router.store's: ParameterError (bad tuning parameters, 422 / exit 2),
Conflict (a job is already running; cancelling a finished job), NotFound.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from router.db.models import MAX_ROW_ID, ModelVersion, utcnow
from router.store import Conflict, InvalidInput, NotFound, json_safe
from tuning.jobs.launch import hostname, pid_alive, process_start
from tuning.jobs.paths import JobPaths
from tuning.jobs.progress import read_progress
from tuning.jobs.records import LIVE_STATES, TuningJob, TuningJobPublic

log = logging.getLogger(__name__)

NEVER_STARTED_AFTER = timedelta(minutes=2)  # a queued job without a worker this long after creation is dead
MAX_LIST = 200


class ParameterError(InvalidInput):
    """Tuning parameters outside watsonx's ranges; `problems` lists (field, problem) for each."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {p}" for f, p in problems), problems[0][0] if problems else None)


def _range(name: str) -> str:
    from tuning.config import TuningConfig

    field = TuningConfig.model_fields.get(name)
    if field is None:
        return ""
    bounds = {type(m).__name__: m for m in field.metadata}
    low, high = getattr(bounds.get("Ge"), "ge", None), getattr(bounds.get("Le"), "le", None)
    return f" (allowed range {low} to {high})" if low is not None and high is not None else ""


def validate_parameters(parameters: dict[str, Any]):
    """A TuningConfig, or ParameterError naming every bad field and its allowed range."""
    refuse_server_paths(parameters)
    return parameters_config(parameters)


def refuse_server_paths(parameters: dict[str, Any]) -> None:
    """ParameterError for what a caller may not set: paths on the server and options a retrain cannot build."""
    if not isinstance(parameters, dict):
        raise ParameterError([("parameters", "must be an object of tuning parameters")])
    for name in ("teacher", "cross_teacher"):  # paths on the server; distillation is a `triage tune` option
        if parameters.get(name) is not None:
            raise ParameterError([(name, f"a retraining job distils only from the teacher of the late prompt it "
                                         f"continues, never from a path it is given: use `triage tune "
                                         f"--{name.replace('_', '-')}`")])
    if parameters.get("init_prompt") is not None:  # a path on the server, like the teacher
        raise ParameterError([("init_prompt", "a retraining job starts from the active version's late prompt or "
                               "from the initialization text: use `triage tune --init-prompt`")])
    if parameters.get("simulated_corrections"):  # corrections are simulated in precedents, which a retrain lacks
        raise ParameterError([("simulated_corrections", "a retraining job tunes without retrieved precedents: use "
                               "`triage tune --context precedents --simulate-corrections`")])


def parameters_config(parameters: dict[str, Any]):
    """TuningConfig(**parameters), or ParameterError naming every bad field and its allowed range."""
    from tuning.config import TuningConfig

    try:
        return TuningConfig(**parameters)
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            name = ".".join(str(p) for p in item["loc"])
            message = str(item.get("ctx", {}).get("error", item["msg"])) if item["type"] == "value_error" else item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown tuning parameter (check the spelling)"
            if not name:  # a check across fields (e.g. the learning rate for the method) names its field
                name = "learning_rate" if "learning_rate" in message else "init_text" if "init_text" in message else "parameters"
            problems.append((name, message + ("" if "range" in message else _range(name))))
        raise ParameterError(problems) from None


# -- reading --------------------------------------------------------------------------------
def get_job(session: Session, job_id: int) -> TuningJob:
    job = session.get(TuningJob, job_id) if 1 <= job_id <= MAX_ROW_ID else None  # no driver OverflowError
    if job is None:
        raise NotFound(f"no tuning job {job_id} (see GET /v1/tuning/jobs or `triage retrain list`)", "job_id")
    return job


def live_job(session: Session) -> TuningJob | None:
    """The queued or running job, if any."""
    return session.exec(select(TuningJob).where(col(TuningJob.state).in_(LIVE_STATES))).first()


def list_jobs(session: Session, limit: int = 50) -> list[TuningJob]:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}", "limit")
    return list(session.exec(select(TuningJob).order_by(col(TuningJob.id).desc()).limit(limit)).all())


def public(settings, job: TuningJob, with_curve: bool = True) -> TuningJobPublic:
    """The job with its progress file (the loss curve only when asked)."""
    progress = read_progress(JobPaths.of(settings, job.id).progress)
    if not with_curve:
        progress.pop("loss_curve", None)
    return TuningJobPublic.model_validate({**job.model_dump(), "progress": progress})


def describe(job: TuningJob) -> str:
    when = job.started or job.created
    at = when.replace(tzinfo=timezone.utc).isoformat(timespec="seconds") if when else "?"
    return f"job {job.id} ({job.state}, {job.phase}, started by {job.who} at {at})"


# -- writing --------------------------------------------------------------------------------
def create_job(session: Session, parameters: dict[str, Any], *, who: str, options: dict[str, Any] | None = None,
               active: Path | None = None, start_from: str = "active") -> TuningJob:
    """Record a new job; Conflict (naming it) while another job is queued or running.

    `active`: the version the job would continue (tuning.jobs.start_point); the job row records the parameters
    it runs with, the continued prompt's path among them."""
    from tuning.jobs.start_point import describe_start, plan_start

    refuse_server_paths(parameters)  # the caller's own, before the continued prompt's path is added
    if active is not None:
        start = plan_start(parameters, active, start_from)  # type: ignore[arg-type]
        parameters, more, description = start.parameters, start.more_data, start.description
    else:
        more, description = [], describe_start(parameters)
    config = parameters_config(parameters)
    options = {**(options or {}), **({"more_data": more} if more else {}), "start": description}
    running = live_job(session)
    if running is not None:
        raise Conflict(_busy(running), "job")
    job = TuningJob(who=who, parameters=config.model_dump(), options=json_safe(options or {}), running_slot=1)
    session.add(job)
    try:
        session.flush()
    except IntegrityError as exc:  # another request took the slot between our check and the insert
        session.rollback()
        running = live_job(session)
        raise Conflict(_busy(running) if running else "another tuning job was just started", "job") from exc
    job.version = f"retrain-{job.id:04d}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def _busy(job: TuningJob) -> str:
    return (f"a tuning job is already running: {describe(job)}; one job runs at a time — follow it "
            f"(GET /v1/tuning/jobs/{job.id}, `triage retrain follow {job.id}`) or cancel it "
            f"(POST /v1/tuning/jobs/{job.id}/cancel, `triage retrain cancel {job.id}`)")


def set_process(session: Session, job_id: int, pid: int) -> TuningJob:
    """Record which process runs the job (the launcher right after starting it, the worker itself at claim)."""
    job = get_job(session, job_id)
    job.pid, job.pid_started, job.host = pid, process_start(pid), hostname()
    session.add(job)
    session.commit()
    return job


def claim(session: Session, job_id: int, pid: int) -> TuningJob:
    """The worker takes the job: queued -> running, exactly once however many workers try at the same moment.

    The claim is one conditional UPDATE (`... WHERE id = :id AND state = 'queued'`): it runs under the row's lock
    in PostgreSQL (a second claimant waits for the first to commit, then finds the job no longer queued) and under
    SQLite's single writer lock. A worker that loses gets Conflict and changes nothing: the job keeps the pid of
    the worker that runs it. A job cancelled before it started ends here.
    """
    get_job(session, job_id)  # NotFound
    session.rollback()
    taken = session.execute(
        update(TuningJob).where(col(TuningJob.id) == job_id, col(TuningJob.state) == "queued")
        .values(state="running", phase="assembling", started=utcnow(), pid=pid, pid_started=process_start(pid),
                host=hostname())
        .execution_options(synchronize_session=False))
    if taken.rowcount != 1:
        session.rollback()
        job = get_job(session, job_id)
        session.refresh(job)
        why = (f"another worker{f' (pid {job.pid})' if job.pid else ''} claimed it" if job.state == "running"
               else "it already ended")
        raise Conflict(f"tuning job {job_id} is {job.state}, not queued: {why}", "job_id")
    session.commit()
    job = get_job(session, job_id)
    session.refresh(job)
    if job.cancel_requested:
        return finish(session, job_id, "cancelled", error="cancelled before it started")
    return job


def set_phase(session: Session, job_id: int, phase: str) -> None:
    job = get_job(session, job_id)
    job.phase = phase
    session.add(job)
    session.commit()


def finish(session: Session, job_id: int, state: str, *, error: str | None = None,
           result: dict[str, Any] | None = None) -> TuningJob:
    job = get_job(session, job_id)
    job.state, job.phase, job.finished, job.running_slot = state, "done", utcnow(), None
    job.error = error
    if result is not None:
        job.result = json_safe(result)
    session.add(job)
    session.commit()
    session.refresh(job)
    return job


def request_cancel(session: Session, settings, job_id: int) -> TuningJob:
    """Ask the worker to stop at its next step; nothing is registered. Conflict if the job already ended."""
    job = get_job(session, job_id)
    if job.state not in LIVE_STATES:
        raise Conflict(f"tuning job {job_id} already ended ({job.state}); nothing to cancel", "job_id")
    job.cancel_requested = True
    session.add(job)
    session.commit()
    paths = JobPaths.of(settings, job_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.cancel.touch()
    return job


# -- dead workers ---------------------------------------------------------------------------------
def _registered(session: Session, version: str | None) -> bool:
    return version is not None and session.exec(select(ModelVersion).where(ModelVersion.version == version)).first() is not None


def clean_job_files(settings, session: Session, job: TuningJob) -> None:
    """Remove an unfinished job's partial files, and its artifact in models_dir unless it was registered."""
    JobPaths.of(settings, job.id).clean_partial()
    if job.version and not _registered(session, job.version):
        shutil.rmtree(Path(settings.models_dir) / job.version, ignore_errors=True)


def reap(settings, session: Session) -> list[TuningJob]:
    """Mark failed every live job of this host whose worker is gone (killed, crashed, machine restarted)."""
    reaped = []
    here = hostname()
    for job in session.exec(select(TuningJob).where(col(TuningJob.state).in_(LIVE_STATES))).all():
        if job.pid is None:
            if utcnow() - job.created < NEVER_STARTED_AFTER:
                continue
            why = "its worker process never started"
        elif job.host != here:
            continue  # another machine's worker: only that machine can tell
        elif pid_alive(job.pid, job.pid_started):
            continue
        else:
            why = (f"its worker process (pid {job.pid}) ended during {job.phase} without finishing "
                   "(killed, crashed or the machine stopped)")
        registered = _registered(session, job.version)
        clean_job_files(settings, session, job)
        note = (f"; version {job.version} was registered but its corrections were not marked as trained"
                if registered else "; nothing was registered and its corrections stay pending")
        log.warning("tuning job %s failed: %s", job.id, why)
        reaped.append(finish(session, job.id, "failed", error=why + note))
    return reaped
