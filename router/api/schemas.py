"""Request and response shapes that exist only in the API (tickets' shapes live in router.db.models)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Optional

from fastapi import Path
from pydantic import BaseModel, Field, computed_field, create_model

from router.db.models import MAX_ROW_ID, Strategy, _Forbid
from router.results import Routing


def row_id(what: str):
    """A path id: 1 to MAX_ROW_ID, so an id no row can have is a 422 naming the parameter, never a driver
    OverflowError (a 500 that also dropped the keep-alive connection)."""
    return Annotated[int, Path(ge=1, le=MAX_ROW_ID, description=f"The {what}'s id.")]


class RouteRequest(_Forbid):
    """POST /v1/route: route one complaint, store nothing."""

    text: str = Field(description="The complaint.")
    strategy: Optional[Strategy] = Field(default=None, description="Default: the server's default strategy.")
    shots: Optional[int] = Field(default=None, ge=0, le=32, description="Examples in the multi-shot prompt.")
    rag: bool = Field(default=False, description="Ground the routing in retrieved policy passages.")
    precedents: bool = Field(default=False, description="Add similar labeled complaints to the prompt.")
    model: Optional[str] = Field(default=None, max_length=200,
                                 description="Tuned strategy only: a model version (see GET /v1/models) or a shipped "
                                 "artifact's version; default: the active one.")


class CompareRequest(_Forbid):
    """POST /v1/compare: every strategy on one complaint."""

    text: str
    shots: Optional[int] = Field(default=None, ge=0, le=32)
    rag: bool = False


class PassageOut(BaseModel):
    doc_id: str
    title: str
    snippet: str
    score: float
    kind: str
    source: Optional[str] = Field(default=None, description="A precedent's origin: 'ticket-12' for a supervisor's "
                                  "correction of ticket 12, '<file>:<line>' for a training example.")
    corrected: bool = Field(default=False, description="True for a precedent that is a supervisor's correction.")

    @computed_field(description="A correction's ticket: its path in this API, '/v1/tickets/12'; else null.")
    @property
    def ticket(self) -> Optional[str]:
        number = (self.source or "").removeprefix("ticket-")
        return f"/v1/tickets/{number}" if self.corrected and number.isdigit() else None


class _RoutingBase(BaseModel):
    @classmethod
    def of(cls, routing: Routing) -> "RoutingOut":
        return cls.model_validate(routing.to_json())


def _every_field_of(dataclass_type, replace: dict) -> dict:
    """The dataclass's fields as required pydantic fields (types from its annotations, some replaced)."""
    hints = typing.get_type_hints(dataclass_type)
    return {f.name: (replace.get(f.name, hints[f.name]), ...) for f in dataclasses.fields(dataclass_type)}


# One routing as the API returns it: every field of router.results.Routing (one list of fields, not two).
RoutingOut = create_model("RoutingOut", __base__=_RoutingBase, __doc__="One routing: departments, per-department "
                          "confidence and its cost.", **_every_field_of(Routing, {"passages": list[PassageOut]}))


class CompareOut(BaseModel):
    strategies: list[RoutingOut]


class ErrorItem(BaseModel):
    field: Optional[str] = Field(description="The input at fault: 'text', 'tickets[2].text', 'Idempotency-Key', ...")
    problem: str


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    detail: str
    errors: list[ErrorItem] = []


class ReadyOut(BaseModel):
    ready: bool
    model_loaded: bool
    database: bool
    problems: list[str] = []
    extra: dict[str, Any] = {}
