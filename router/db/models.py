"""Database tables and their Create/Public shapes (full-stack-fastapi-template style).

Times are stored as naive UTC and returned as aware UTC. JSON columns hold plain
lists and dicts so the same code runs on SQLite and PostgreSQL.
"""

# No `from __future__ import annotations`: SQLModel relationships need real annotations.

import re
from datetime import datetime, timezone
from typing import Any, Literal, Optional

from pydantic import ConfigDict, field_validator
from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel

from router.departments import DEPARTMENTS
from router.results import Strategy

Role = Literal["integration", "agent", "supervisor"]
ModelStatus = Literal["candidate", "active", "retired"]
ROLES: tuple[str, ...] = ("integration", "agent", "supervisor")
MAX_ROW_ID = 2**63 - 1  # the largest id an integer key holds (SQLite INTEGER, PostgreSQL BIGINT)
MODEL_STATUSES: tuple[str, ...] = ("candidate", "active", "retired")


def utcnow() -> datetime:
    """Now as naive UTC (what the database stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored naive-UTC time as an aware UTC time (for output)."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_naive_utc(value: datetime) -> datetime:
    """An input time (aware or assumed UTC) as naive UTC (for queries)."""
    return value if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


def check_storable(value: str) -> str:
    """Refuse text no database can store faithfully (lone surrogates, NUL)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains invalid Unicode (a lone surrogate at character {exc.start})") from exc
    if "\x00" in value:
        raise ValueError(f"contains a NUL character at position {value.index(chr(0))}")
    return value


class _Forbid(SQLModel):
    """Request bodies: unknown fields are an error, never silently dropped; text must be storable."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str):
            return check_storable(value)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    check_storable(item)
        return value


class _Public(SQLModel):
    """Responses: times come out as aware UTC."""

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return as_utc(value) if isinstance(value, datetime) else value


# -- tickets --------------------------------------------------------------------
class TicketBase(SQLModel):
    text: str = Field(description="The complaint, as the customer wrote it.")
    external_id: Optional[str] = Field(
        default=None, min_length=1, max_length=200, description="The caller's own id; intake is idempotent on it."
    )
    source: str = Field(default="api", min_length=1, max_length=40, description="Where the complaint came from.")


class Ticket(TicketBase, table=True):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_review", "needs_review", "confidence"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    external_id: Optional[str] = Field(default=None, max_length=200, unique=True)
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False, index=True))
    # What the ticket is routed to now: the latest correction, else the routing (denormalized for filters).
    departments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The routing was unsure and nobody has corrected it yet.
    needs_review: bool = Field(default=False, index=True)
    # Lowest confidence among the routed departments (review queue order).
    confidence: Optional[float] = Field(default=None)

    routings: list["RoutingRecord"] = Relationship(
        back_populates="ticket", sa_relationship_kwargs={"order_by": "RoutingRecord.id", "lazy": "selectin"}
    )
    corrections: list["Correction"] = Relationship(
        back_populates="ticket", sa_relationship_kwargs={"order_by": "Correction.id", "lazy": "selectin"}
    )


class TicketCreate(TicketBase, _Forbid):
    """One complaint to take in."""


class TicketIntake(TicketCreate):
    """POST /v1/tickets: one complaint plus how to route it."""

    strategy: Optional[Strategy] = Field(default=None, description="Default: the server's default strategy.")
    rag: bool = Field(default=False, description="Ground the routing in retrieved policy passages.")
    precedents: bool = Field(default=False, description="Add similar labeled complaints to the prompt.")


class TicketBatchIntake(_Forbid):
    """POST /v1/tickets:batch: many complaints routed together."""

    tickets: list[TicketCreate] = Field(min_length=1)
    strategy: Optional[Strategy] = None
    rag: bool = False
    precedents: bool = False


# -- routings -------------------------------------------------------------------
class RoutingBase(SQLModel):
    strategy: str = Field(max_length=20)
    model_version: Optional[str] = Field(default=None, max_length=200)
    departments: list[str] = Field(default_factory=list, sa_type=JSON)
    confidence: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    input_tokens: int = 0
    generated_tokens: int = 0
    latency_ms: float = 0.0
    passages: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    needs_review: bool = False
    rag: bool = False


class RoutingRecord(RoutingBase, table=True):
    __tablename__ = "routings"

    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))
    ticket: Optional[Ticket] = Relationship(back_populates="routings")


class RoutingPublic(RoutingBase, _Public):
    id: int
    created: datetime


# -- corrections ----------------------------------------------------------------
class CorrectionBase(SQLModel):
    departments: list[str] = Field(sa_type=JSON, description="Every department that must act, canonical names.")
    why: Optional[str] = Field(default=None, max_length=2000, description="Why the routing was wrong.")


class Correction(CorrectionBase, table=True):
    __tablename__ = "corrections"

    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    who: str = Field(max_length=200)
    why: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))
    used_in_version: Optional[str] = Field(default=None, max_length=200, index=True)
    ticket: Optional[Ticket] = Relationship(back_populates="corrections")


class CorrectionCreate(CorrectionBase, _Forbid):
    departments: list[str] = Field(
        min_length=1, description="Every department that must act, canonical names.",
        schema_extra={"json_schema_extra": {"items": {"type": "string", "enum": list(DEPARTMENTS)}}},
    )


class CorrectionPublic(CorrectionBase, _Public):
    id: int
    ticket_id: int
    who: str
    created: datetime
    used_in_version: Optional[str] = None


class TicketPublic(TicketBase, _Public):
    id: int
    created: datetime
    departments: list[str]
    needs_review: bool
    confidence: Optional[float] = None
    routings: list[RoutingPublic] = []
    corrections: list[CorrectionPublic] = []


class TicketsPublic(SQLModel):
    tickets: list[TicketPublic]
    next_cursor: Optional[str] = Field(default=None, description="Pass as ?cursor= for the next page; null at the end.")


# -- model versions -------------------------------------------------------------
class ModelVersionBase(SQLModel):
    version: str = Field(max_length=200)
    artifact_path: str = Field(max_length=1000)
    # "metadata" is taken by SQLModel itself; the column is named metadata, the field meta.
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default="candidate", max_length=20, index=True)
    promoted_by: Optional[str] = Field(default=None, max_length=200)


class ModelVersion(ModelVersionBase, table=True):
    __tablename__ = "model_versions"

    id: Optional[int] = Field(default=None, primary_key=True)
    version: str = Field(max_length=200, unique=True)
    promoted_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(), nullable=True))
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))


class ModelVersionPublic(ModelVersionBase, _Public):
    id: int
    meta: dict[str, Any] = {}
    promoted_at: Optional[datetime] = None
    created: datetime


# -- API keys -------------------------------------------------------------------
class ApiKeyBase(SQLModel):
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)


class ApiKey(ApiKeyBase, table=True):
    __tablename__ = "api_keys"

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    prefix: str = Field(max_length=32, index=True)
    salt: str = Field(max_length=64)
    hashed_secret: str = Field(max_length=128)
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))
    revoked_at: Optional[datetime] = Field(default=None, sa_column=Column(DateTime(), nullable=True))


KEY_NAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
KEY_NAME_MAX = 100


def check_key_name(name: str) -> str:
    """`name` if it can name an API key (it is shown in lists and is part of DELETE /v1/keys/{name}); else
    ValueError saying what is allowed."""
    if not name:
        raise ValueError("is empty: name who or what uses the key")
    if len(name) > KEY_NAME_MAX:
        raise ValueError(f"is {len(name)} characters; at most {KEY_NAME_MAX}")
    if not re.fullmatch(KEY_NAME_PATTERN[1:-1], name):
        bad = next(c for c in name if not re.fullmatch(KEY_NAME_PATTERN[1:-1], c))
        raise ValueError(f"{name!r} has {bad!r}; only letters, digits and . _ @ - are allowed")
    return name


class ApiKeyCreate(_Forbid):
    name: str = Field(max_length=KEY_NAME_MAX, schema_extra={"json_schema_extra": {"pattern": KEY_NAME_PATTERN}},
                      description="Who or what uses the key: letters, digits and . _ @ - only.")
    role: Role

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_key_name(value)


class ApiKeyPublic(ApiKeyBase, _Public):
    id: int
    prefix: str
    created: datetime
    revoked_at: Optional[datetime] = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret, shown this once; only its hash is stored.")


# -- idempotency ----------------------------------------------------------------
class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("key", name="uq_idempotency_key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(max_length=400)
    request_hash: str = Field(max_length=64)
    response: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    status_code: int
    created: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(), nullable=False))
