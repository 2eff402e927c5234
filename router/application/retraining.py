"""Retraining for every front end: one pipeline (tuning.jobs), one job at a time, each in its own process.

The API, `triage retrain` and the console all start, follow and cancel jobs here. A job assembles the
training file plus every correction (tuning.assemble), trains, evaluates the candidate against the active
version on the dev file and on held-out corrections (tuning.gate), registers it, and promotes it only when
the gate says it is no worse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sqlalchemy import Engine
from sqlmodel import Session

from router.settings import Settings
from tuning.assemble import Assembled, assemble_from_store
from tuning.config import LR_RANGES, TuningConfig, describe_error, field_default, field_range  # for forms
from tuning.gate import format_decision
from tuning.plots import loss_terminal
from tuning.jobs import store as jobs
from tuning.jobs.progress import stage_line
from tuning.jobs.records import LIVE_STATES, TuningJob, TuningJobPublic
from tuning.jobs.service import start_job
from tuning.jobs.start_point import (CONTINUE_EPOCHS, CONTINUE_LEARNING_RATE, active_artifact, active_change_note,
                                     plan_start)

FOLLOW_POLL_S = 0.5
MAX_LISTED = jobs.MAX_LIST
ParameterError = jobs.ParameterError
METHODS = tuple(LR_RANGES)
__all__ = ["CONTINUE_EPOCHS", "CONTINUE_LEARNING_RATE", "MAX_LISTED", "METHODS", "LR_RANGES", "ParameterError", "Retraining", "TrainingPreview", "TuningConfig",
           "active_change_note", "describe_error", "field_default", "field_range", "format_decision", "loss_terminal", "stage_line"]


@dataclass
class TrainingPreview:
    """What the next retrain would train on (the console's Training data tab)."""

    assembled: Assembled
    base_count: int

    @property
    def pending(self) -> int:
        return len(self.assembled.trained_correction_ids) + len(self.assembled.holdout_correction_ids)


class Retraining:
    """Start, read, follow and cancel retraining jobs of one database."""

    def __init__(self, settings: Settings, database: Engine):
        self.settings, self.database = settings, database

    def _session(self) -> Session:
        return Session(self.database, expire_on_commit=False)

    def reap(self) -> list[TuningJob]:
        """Mark failed every job whose worker died; returns them."""
        with self._session() as s:
            return jobs.reap(self.settings, s)

    def validate(self, parameters: dict[str, Any]):
        """The TuningConfig of `parameters`, or ParameterError naming each bad field and its range."""
        return jobs.validate_parameters(parameters)

    def start(self, parameters: dict[str, Any], *, who: str, auto_promote: bool = True,
              base_file: str | None = None, detached: bool = False, start_from: str = "active") -> TuningJobPublic:
        """Record a job and start its worker; ParameterError / Conflict (one job at a time) before anything starts.

        detached: the job outlives this process (`triage retrain`); otherwise a server or console owns it and,
        should that process end, the worker stops the job at its next step and marks it failed.
        start_from: "active" continues the active late prompt (tuning.jobs.start_point), "scratch" tunes afresh.
        """
        job = start_job(self.settings, self.database, parameters, who=who, auto_promote=auto_promote,
                        base_file=base_file, watch_exit=not detached, owned=not detached, start_from=start_from)
        return jobs.public(self.settings, job)

    def job_defaults(self) -> tuple[TuningConfig, str]:
        """The parameters a job started without any would run with (the console form's defaults), and where it
        would start (`describe_start`)."""
        with self._session() as s:
            active = active_artifact(self.settings, s)
        start = plan_start({}, active)
        config = TuningConfig(**{k: v for k, v in start.parameters.items() if k != "init_prompt"})
        return config, start.description

    def get(self, job_id: int, *, with_curve: bool = True) -> TuningJobPublic:
        with self._session() as s:
            jobs.reap(self.settings, s)
            return jobs.public(self.settings, jobs.get_job(s, job_id), with_curve=with_curve)

    def list(self, limit: int = 50) -> list[TuningJobPublic]:
        """Recent jobs, newest first, with their progress but not their loss curves."""
        with self._session() as s:
            jobs.reap(self.settings, s)
            return [jobs.public(self.settings, j, with_curve=False) for j in jobs.list_jobs(s, limit)]

    def cancel(self, job_id: int) -> TuningJobPublic:
        """Ask the job to stop at its next step (it registers nothing); Conflict if it already ended."""
        with self._session() as s:
            jobs.reap(self.settings, s)
            return jobs.public(self.settings, jobs.request_cancel(s, self.settings, job_id))

    def follow(self, job_id: int, *, every: float = FOLLOW_POLL_S, with_curve: bool = False,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[TuningJobPublic]:
        """The job each time it changes (state, phase or progress), until it ends or `should_stop()`."""
        last = None
        while True:
            job = self.get(job_id, with_curve=with_curve)
            seen = (job.state, job.phase, job.progress.get("updated"), len(job.progress.get("loss_curve", [])))
            if seen != last:
                last = seen
                yield job
            if job.state not in LIVE_STATES or should_stop():
                return
            time.sleep(every)

    def preview(self, base_file: str | None = None) -> TrainingPreview:
        """The training set the next job would assemble now (training file + corrections, minus the held-out)."""
        with self._session() as s:
            assembled, base = assemble_from_store(self.settings, s, base_file)
        return TrainingPreview(assembled, len(base))
