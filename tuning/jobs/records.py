"""The tuning_jobs table (created by migration 2) and the shape a job is shown in."""

# No `from __future__ import annotations`: SQLModel needs real annotations.

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from router.db.models import _Public, utcnow

STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
LIVE_STATES: tuple[str, ...] = ("queued", "running")


class TuningJob(SQLModel, table=True):
    """One retraining run: its parameters, who started it, which process runs it, and how it ended."""

    __tablename__ = "tuning_jobs"

    id: Optional[int] = Field(default=None, primary_key=True)
    state: str = Field(default="queued", max_length=20, index=True)
    phase: str = Field(default="queued", max_length=40)
    who: str = Field(max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    version: Optional[str] = Field(default=None, max_length=200)
    # 1 while the job is queued or running, NULL after: the unique constraint allows one live job at a time.
    running_slot: Optional[int] = Field(default=None, unique=True)
    pid: Optional[int] = None
    pid_started: Optional[str] = Field(default=None, max_length=40)  # the process's start time (tells a reused pid)
    host: Optional[str] = Field(default=None, max_length=255)
    cancel_requested: bool = False
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))
    started: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(), nullable=True))
    finished: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(), nullable=True))


class TuningJobPublic(_Public):
    """A job as the API and `triage retrain` show it: the row plus its live progress."""

    id: int
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    phase: str = Field(description="What it is doing: assembling, loading, training, evaluating, registering, done.")
    who: str
    parameters: dict[str, Any]
    options: dict[str, Any]
    version: Optional[str] = Field(default=None, description="The model version it registers when it succeeds.")
    pid: Optional[int] = None
    cancel_requested: bool = False
    error: Optional[str] = None
    result: dict[str, Any] = Field(default_factory=dict, description="Training-set counts, evaluation, gate decision.")
    progress: dict[str, Any] = Field(
        default_factory=dict, description="epoch, step, loss, eta_s and the loss curve so far (from the worker)."
    )
    created: datetime
    started: Optional[datetime] = None
    finished: Optional[datetime] = None
