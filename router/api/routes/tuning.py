"""Retraining jobs (supervisor): start one, follow its progress, cancel it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from router.api.deps import CoreDep, caller_dep
from router.api.errors import error_response
from router.api.schemas import ErrorOut, row_id
from router.application import ParameterError, TuningJobPublic
from router.application.retraining import MAX_LISTED
from router.db.models import _Forbid

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
    start_from: Literal["active", "scratch"] = Field(
        "active",
        description="active: when the active version is a late prompt, the job continues it with its recipe (its "
                    "prompt layer and length, its recorded teacher and more-data files; 2 epochs at learning rate 0.02 "
                    "unless given); scratch: a fresh tune from the parameters alone (LoRA unless `method` says "
                    "otherwise).",
    )


@router.post("", status_code=202, response_model=TuningJobPublic, responses=ERRORS,
             summary="Start a retraining job (one at a time; it runs in its own process)")
def create(body: TuningJobCreate, core: CoreDep, caller: caller_dep("models")):
    try:
        return core.retraining.start(body.parameters, who=caller.name, auto_promote=body.auto_promote,
                                     start_from=body.start_from)
    except ParameterError as exc:
        problems = [{"field": f"parameters.{f}", "problem": p} for f, p in exc.problems]
        detail = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return error_response(422, detail, problems)


@router.get("", response_model=list[TuningJobPublic], summary="Tuning jobs, newest first (without loss curves)")
def list_(core: CoreDep, _caller: caller_dep("models"),
          limit: int = Query(20, ge=1, le=MAX_LISTED)) -> list[TuningJobPublic]:
    return core.retraining.list(limit)


@router.get("/{job_id}", response_model=TuningJobPublic, responses=ERRORS,
            summary="One job: state, epoch, step, loss, ETA and the loss curve so far")
def get(job_id: JobId, core: CoreDep, _caller: caller_dep("models")) -> TuningJobPublic:
    return core.retraining.get(job_id)


@router.post("/{job_id}/cancel", status_code=202, response_model=TuningJobPublic, responses=ERRORS,
             summary="Stop the job at its next step; nothing is registered")
def cancel(job_id: JobId, core: CoreDep, _caller: caller_dep("models")) -> TuningJobPublic:
    return core.retraining.cancel(job_id)
