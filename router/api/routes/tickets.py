"""Ticket intake (idempotent), lookup, listing and corrections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Optional

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from router.api.deps import CoreDep, SessionDep, caller_dep
from router.application import MAX_PAGE
from router.api.schemas import ErrorOut, row_id
from router.db.models import (
    CorrectionCreate,
    CorrectionPublic,
    TicketBatchIntake,
    TicketCreate,
    TicketIntake,
    TicketPublic,
    TicketsPublic,
    check_storable,
)

router = APIRouter(prefix="/v1", tags=["tickets"])

IdempotencyKey = Annotated[
    Optional[str],
    Header(alias="Idempotency-Key", min_length=1, max_length=200,
           description="Retrying with the same key returns the original result; another body with it is a 409."),
]
ERRORS = {409: {"model": ErrorOut}, 422: {"model": ErrorOut}}
TicketId = row_id("ticket")


def _answer(result) -> JSONResponse:
    return JSONResponse(result.body, status_code=201,
                        headers={"Idempotent-Replayed": "true" if result.replayed else "false"})


def _scoped(caller_name: str, key: str | None) -> str | None:
    if key is None:
        return None
    check_storable(key)
    return f"{caller_name}/{key}"  # each client's keys are its own


@router.post("/tickets", status_code=201, response_model=TicketPublic, responses=ERRORS,
             summary="Take in a complaint: route it and store ticket + routing (idempotent)")
def create_ticket(body: TicketIntake, session: SessionDep, core: CoreDep, caller: caller_dep("intake"),
                  idempotency_key: IdempotencyKey = None) -> JSONResponse:
    item = TicketCreate(text=body.text, external_id=body.external_id, source=body.source)
    result = core.intake(session, [item], strategy=body.strategy, rag=body.rag, precedents=body.precedents,
                          idempotency_key=_scoped(caller.name, idempotency_key))
    return _answer(result)


@router.post("/tickets:batch", status_code=201, response_model=TicketsPublic, responses=ERRORS,
             summary="Take in many complaints at once, routed in batches (all stored or none)")
def create_tickets(body: TicketBatchIntake, session: SessionDep, core: CoreDep, caller: caller_dep("intake"),
                   idempotency_key: IdempotencyKey = None) -> JSONResponse:
    result = core.intake(session, body.tickets, strategy=body.strategy, rag=body.rag,
                          precedents=body.precedents, batch=True, idempotency_key=_scoped(caller.name, idempotency_key))
    return _answer(result)


@router.get("/tickets/{ticket_id}", response_model=TicketPublic,
            responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
            summary="One ticket with its routings and corrections")
def read_ticket(ticket_id: TicketId, core: CoreDep, _caller: caller_dep("read")) -> TicketPublic:
    return core.ticket(ticket_id)


@router.get("/tickets", response_model=TicketsPublic, responses={422: {"model": ErrorOut}},
            summary="Tickets, newest first, keyset-paginated")
def list_tickets(core: CoreDep, _caller: caller_dep("read"),
                 department: Annotated[Optional[str], Query(description="Currently routed to this department.")] = None,
                 needs_review: Annotated[Optional[bool], Query(description="Unsure and not yet corrected.")] = None,
                 since: Annotated[Optional[datetime], Query(description="Created at or after (ISO 8601).")] = None,
                 limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                 cursor: Annotated[Optional[str], Query(max_length=100, description="next_cursor of the previous page.")] = None,
                 ) -> TicketsPublic:
    return core.tickets(department=department, needs_review=needs_review, since=since, limit=limit,
                              cursor=cursor)


@router.post("/tickets/{ticket_id}/corrections", status_code=201, response_model=CorrectionPublic,
             responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
             summary="Record the departments that should have been chosen (supervisor)")
def correct_ticket(ticket_id: TicketId, body: CorrectionCreate, session: SessionDep, core: CoreDep,
                   caller: caller_dep("correct")) -> CorrectionPublic:
    return core.correct(ticket_id, body.departments, who=caller.name, why=body.why, session=session)
