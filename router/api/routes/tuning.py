"""Retraining jobs (supervisor): start one, follow its progress, cancel it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from router.api.deps import SessionDep, SettingsDep, caller_dep
from router.api.errors import error_response
from router.api.schemas import ErrorOut, row_id
from router.db.models import _Forbid
from tuning.jobs import store as jobs
from tuning.jobs.records import TuningJobPublic
from tuning.jobs.service import start_job

router = APIRouter(prefix="/v1/tuning/jobs", tags=["tuning"])
ERRORS = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}}
JobId = row_id("tuning job")


class TuningJobCreate(_Forbid):
    """POST /v1/tuning/jobs: retrain on the training file plus every correction."""

    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="watsonx tuning parameters (method, num_virtual_tokens, epochs 1-50, learning_rate, batch_size "
                    "1-16, accumulation_steps 1-128, ...); omitted ones take their defaults.",
        examples=[{"method": "prompt", "epochs": 4, "num_virtual_tokens": 20, "learning_rate": 0.3}],
    )
    auto_promote: bool = Field(True, description="Promote the result when the evaluation gate passes.")


def _reap(request: Request, session) -> None:
    jobs.reap(request.app.state.settings, session)


@router.post("", status_code=202, response_model=TuningJobPublic, responses=ERRORS,
             summary="Start a retraining job (one at a time; it runs in its own process)")
def create(body: TuningJobCreate, request: Request, settings: SettingsDep, caller: caller_dep("models")):
    try:
        job = start_job(settings, request.app.state.engine, body.parameters, who=caller.name,
                        auto_promote=body.auto_promote)
    except jobs.ParameterError as exc:
        problems = [{"field": f"parameters.{f}", "problem": p} for f, p in exc.problems]
        detail = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return error_response(422, detail, problems)
    return jobs.public(settings, job)


@router.get("", response_model=list[TuningJobPublic], summary="Tuning jobs, newest first (without loss curves)")
def list_(request: Request, session: SessionDep, settings: SettingsDep, _caller: caller_dep("models"),
          limit: int = Query(20, ge=1, le=jobs.MAX_LIST)) -> list[TuningJobPublic]:
    _reap(request, session)
    return [jobs.public(settings, j, with_curve=False) for j in jobs.list_jobs(session, limit)]


@router.get("/{job_id}", response_model=TuningJobPublic, responses=ERRORS,
            summary="One job: state, epoch, step, loss, ETA and the loss curve so far")
def get(job_id: JobId, request: Request, session: SessionDep, settings: SettingsDep,
        _caller: caller_dep("models")) -> TuningJobPublic:
    _reap(request, session)
    return jobs.public(settings, jobs.get_job(session, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=TuningJobPublic, responses=ERRORS,
             summary="Stop the job at its next step; nothing is registered")
def cancel(job_id: JobId, request: Request, session: SessionDep, settings: SettingsDep,
           _caller: caller_dep("models")) -> TuningJobPublic:
    _reap(request, session)
    return jobs.public(settings, jobs.request_cancel(session, settings, job_id))
