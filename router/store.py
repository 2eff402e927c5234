"""Tickets, routings, corrections and model versions: the logic the API and the console share.

Every function takes an open ``sqlmodel.Session`` (see ``router.db.session_scope``)
and commits what it writes; none of them knows about HTTP. Errors:
``InvalidInput`` (bad value, names the field), ``NotFound``, ``Conflict``; routing
raises ``router.service.InputError`` for bad complaint text.

``Store`` / ``open_store(settings)`` wrap these for callers that hold no session
(the terminal console).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Sequence

from sqlalchemy import Engine, String, cast, exists, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from router.db.models import (
    Correction,
    CorrectionPublic,
    IdempotencyRecord,
    ModelVersion,
    RoutingRecord,
    Ticket,
    TicketCreate,
    TicketPublic,
    TicketsPublic,
    to_naive_utc,
    utcnow,
)
from router.departments import DEPARTMENTS, canonical
from router.results import Routing
from router.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE = 200
INTAKE_ATTEMPTS = 5


class StoreError(ValueError):
    """A request the store refuses; `field` names the offending input when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(StoreError):
    """A value that is not acceptable (unknown department, bad cursor, ...)."""


class NotFound(StoreError):
    """No such ticket, model version or key."""


class Conflict(StoreError):
    """The request contradicts what is stored (reused idempotency key, reused external_id, ...)."""


def add_unique(session: Session, row, conflict: str, field: str):
    """Insert `row`; a unique-constraint violation rolls back and becomes Conflict(conflict, field)."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(conflict, field) from exc
    return row


def json_safe(value: Any) -> Any:
    """`value` with NaN/Infinity replaced by None: strict JSON, which PostgreSQL requires."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# -- tickets ----------------------------------------------------------------------
def ticket_public(ticket: Ticket) -> TicketPublic:
    return TicketPublic.model_validate(ticket)


def _min_confidence(routing: Routing) -> float | None:
    values = [routing.confidence.get(name, 0.0) for name in routing.departments]
    return round(min(values), 4) if values else None


def _routing_record(routing: Routing) -> RoutingRecord:
    data = routing.to_json()
    return RoutingRecord(
        strategy=routing.strategy, model_version=routing.model_version, departments=list(routing.departments),
        confidence=json_safe(dict(routing.confidence)), input_tokens=routing.input_tokens,
        generated_tokens=routing.generated_tokens, latency_ms=data["latency_ms"], passages=json_safe(data["passages"]),
        needs_review=routing.needs_review, rag=routing.rag,
    )


def _new_ticket(text: str, routing: Routing, external_id: str | None, source: str) -> Ticket:
    return Ticket(
        text=text, external_id=external_id, source=source, departments=list(routing.departments),
        needs_review=routing.needs_review, confidence=_min_confidence(routing), routings=[_routing_record(routing)],
    )


def create_ticket_with_routing(session: Session, text: str, routing: Routing, *, external_id: str | None = None,
                               source: str = "console") -> TicketPublic:
    """Store a complaint and the routing it already got (no idempotency; see `intake` for that)."""
    row = add_unique(session, _new_ticket(text.strip(), routing, external_id, source),
                     f"external_id {external_id!r} is already used by another ticket", "external_id")
    return ticket_public(row)


def add_routing(session: Session, ticket_id: int, routing: Routing) -> TicketPublic:
    """Record another routing of a stored ticket (e.g. a re-route by a new model version)."""
    ticket = _ticket_row(session, ticket_id)
    ticket.routings.append(_routing_record(routing))
    if not ticket.corrections:
        ticket.departments, ticket.needs_review = list(routing.departments), routing.needs_review
        ticket.confidence = _min_confidence(routing)
    session.add(ticket)
    session.commit()
    return ticket_public(ticket)


def _ticket_row(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket {ticket_id}", "ticket_id")
    return ticket


def get_ticket(session: Session, ticket_id: int) -> TicketPublic:
    """One ticket with every routing and correction; NotFound if there is none."""
    return ticket_public(_ticket_row(session, ticket_id))


def get_ticket_by_external_id(session: Session, external_id: str) -> TicketPublic | None:
    row = session.exec(select(Ticket).where(Ticket.external_id == external_id)).first()
    return None if row is None else ticket_public(row)


def encode_cursor(ticket_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{ticket_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, value = raw.split(":", 1)
        if tag != "t":
            raise ValueError(tag)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor is not one this server gave out (pass next_cursor unchanged)", "cursor") from exc


def check_department(name: str, field: str = "department") -> str:
    """`name` if it is a department; else InvalidInput naming it and the allowed names."""
    if name in DEPARTMENTS:
        return name
    hint = next((d for d in DEPARTMENTS if d.lower() == str(name).strip().lower()), None)
    extra = f" (did you mean {hint!r}?)" if hint else ""
    raise InvalidInput(f"unknown department {name!r}{extra}; allowed: {', '.join(DEPARTMENTS)}", field)


def list_tickets(session: Session, *, department: str | None = None, needs_review: bool | None = None,
                 since: datetime | None = None, limit: int = 50, cursor: str | None = None) -> TicketsPublic:
    """Newest first, keyset-paginated: pass the returned next_cursor to get the following page.

    department: tickets currently routed to it (the latest correction, else the routing).
    needs_review: tickets whose routing was unsure and that nobody corrected yet (or the others).
    since: tickets created at or after this time.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", "limit")
    query = select(Ticket)
    if department is not None:
        check_department(department)
        query = query.where(cast(Ticket.departments, String).like(f'%"{department}"%'))
    if needs_review is not None:
        query = query.where(Ticket.needs_review == needs_review)
    if since is not None:
        query = query.where(Ticket.created >= to_naive_utc(since))
    if cursor:
        query = query.where(col(Ticket.id) < decode_cursor(cursor))
    rows = session.exec(query.order_by(col(Ticket.id).desc()).limit(limit + 1)).all()
    page = [ticket_public(r) for r in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return TicketsPublic(tickets=page, next_cursor=next_cursor)


# -- intake (idempotent) ----------------------------------------------------------
@dataclass
class IntakeResult:
    """What an intake call answers: the JSON body, its status, and whether it was a replay."""

    body: Any
    status_code: int
    tickets: list[TicketPublic]
    replayed: bool = False  # True when an earlier identical request's result was returned


@dataclass
class _Item:
    text: str
    external_id: str | None
    source: str
    same_as: int | None = None  # index of an identical earlier item in the batch


def _validated(items: Sequence[TicketCreate], max_chars: int, max_batch: int, batch: bool) -> list[_Item]:
    from router.service import validate_text

    if batch and len(items) > max_batch:
        raise InvalidInput(f"{len(items)} tickets in one batch; the limit is {max_batch}", "tickets")
    out: list[_Item] = []
    first_by_id: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"tickets[{i}]." if batch else ""
        clean = _Item(validate_text(item.text, max_chars, f"{where}text"), item.external_id, item.source)
        if item.external_id is not None:
            if item.external_id in first_by_id:
                j = first_by_id[item.external_id]
                if out[j].text != clean.text:
                    raise InvalidInput(f"external_id {item.external_id!r} is also tickets[{j}] with different text",
                                       f"{where}external_id")
                clean.same_as = j
            else:
                first_by_id[item.external_id] = i
        out.append(clean)
    return out


def request_hash(kind: str, payload: Any) -> str:
    """A stable hash of a request body (key order and whitespace do not matter)."""
    canonical_json = json.dumps({"kind": kind, "body": payload}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical_json.encode()).hexdigest()


def _replay(session: Session, key: str | None, digest: str) -> IntakeResult | None:
    if key is None:
        return None
    record = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.key == key)).first()
    if record is None:
        return None
    if record.request_hash != digest:
        raise Conflict("this Idempotency-Key was already used with a different request body; "
                       "use a new key for a new request", "Idempotency-Key")
    body = record.response
    tickets = body["tickets"] if isinstance(body, dict) and "tickets" in body else [body]
    return IntakeResult(body, record.status_code, [TicketPublic.model_validate(t) for t in tickets], replayed=True)


def _existing(session: Session, items: list[_Item], batch: bool) -> dict[int, TicketPublic]:
    ids = sorted({it.external_id for it in items if it.external_id is not None})
    if not ids:
        return {}
    rows = {t.external_id: t for t in session.exec(select(Ticket).where(col(Ticket.external_id).in_(ids))).all()}
    found: dict[int, TicketPublic] = {}
    for i, item in enumerate(items):
        row = rows.get(item.external_id) if item.external_id is not None else None
        if row is None:
            continue
        if row.text != item.text:
            where = f"tickets[{i}]." if batch else ""
            raise Conflict(f"external_id {item.external_id!r} is already ticket {row.id} with different text; "
                           "an external_id names one complaint", f"{where}external_id")
        found[i] = ticket_public(row)
    return found


def intake(session: Session, service, items: Sequence[TicketCreate], *, strategy: str | None = None,
           rag: bool = False, precedents: bool = False, batch: bool = False,
           idempotency_key: str | None = None) -> IntakeResult:
    """Route and store complaints, exactly once per external_id and per idempotency key.

    A repeat of an earlier request (same Idempotency-Key and body, or a known
    external_id with the same text) returns the stored result; the same key with
    another body, or a known external_id with other text, is a Conflict. Concurrent
    duplicates are settled by the database's unique constraints. A batch is stored
    all together or not at all. Status 201 for both fresh and replayed results.
    """
    items_in = list(items)
    settings = service.settings
    clean = _validated(items_in, settings.max_input_chars, settings.max_batch_tickets, batch)
    options = {"strategy": strategy, "rag": rag, "precedents": precedents}
    payload = {"tickets": [t.model_dump(mode="json") for t in items_in], **options} if batch else \
        {**items_in[0].model_dump(mode="json"), **options}
    digest = request_hash("batch" if batch else "ticket", payload)
    routed: dict[int, Routing] = {}
    for _attempt in range(INTAKE_ATTEMPTS):
        replay = _replay(session, idempotency_key, digest)
        existing = _existing(session, clean, batch) if replay is None else {}
        session.rollback()  # end the read transaction before the slow routing and the write
        if replay is not None:
            return replay
        todo = [i for i, it in enumerate(clean) if i not in existing and it.same_as is None and i not in routed]
        if todo:
            results = service.route_many([clean[i].text for i in todo], strategy, rag=rag, precedents=precedents)
            routed.update(zip(todo, results))
        try:
            return _store_intake(session, clean, existing, routed, batch, idempotency_key, digest)
        except IntegrityError:
            session.rollback()  # a concurrent request stored the same external_id or key first: look again
    raise Conflict("concurrent requests kept colliding on the same external_id or Idempotency-Key; retry")


def _store_intake(session: Session, clean: list[_Item], existing: dict[int, TicketPublic],
                  routed: dict[int, Routing], batch: bool, key: str | None, digest: str) -> IntakeResult:
    rows: dict[int, Ticket] = {}
    for i, item in enumerate(clean):
        if i not in existing and item.same_as is None:
            rows[i] = _new_ticket(item.text, routed[i], item.external_id, item.source)
            session.add(rows[i])
    session.flush()
    public: list[TicketPublic] = []
    for i, item in enumerate(clean):
        first = item.same_as if item.same_as is not None else i
        public.append(existing[first] if first in existing else ticket_public(rows[first]))
    tickets_json = [p.model_dump(mode="json") for p in public]
    body: Any = {"tickets": tickets_json} if batch else tickets_json[0]
    if key is not None:
        session.add(IdempotencyRecord(key=key, request_hash=digest, response=body, status_code=201))
    session.commit()
    return IntakeResult(body, 201, public, replayed=not rows)


# -- corrections -------------------------------------------------------------------
def add_correction(session: Session, ticket_id: int, departments: Sequence[str], *, who: str,
                   why: str | None = None, settings: Settings | None = None) -> CorrectionPublic:
    """Record the departments that should have been chosen; the ticket is routed to them from now on.

    With `settings`, the correction is also added to the precedent store (best effort)
    so the next grounded routing can retrieve it at once.
    """
    if not departments:
        raise InvalidInput("departments is empty: name every department that must act", "departments")
    names = canonical(check_department(name, f"departments[{i}]") for i, name in enumerate(departments))
    ticket = _ticket_row(session, ticket_id)
    why = why.strip() if why and why.strip() else None
    correction = Correction(departments=names, who=who, why=why)
    ticket.corrections.append(correction)
    ticket.departments, ticket.needs_review = names, False
    session.add(ticket)
    session.commit()
    session.refresh(correction)
    out = CorrectionPublic.model_validate(correction)
    if settings is not None:
        share_precedent(settings, ticket.text, names, f"ticket-{ticket.id}")
    return out


def share_precedent(settings: Settings, text_: str, departments: list[str], source_id: str) -> bool:
    """Make a correction retrievable by RAG at once, if the precedent store exists. Never raises."""
    try:
        from rag.precedents import add_precedent
    except ImportError:
        return False
    try:
        add_precedent(settings, text_, departments, source_id)
        return True
    except Exception as exc:  # retrieval is optional: the correction itself is already stored
        log.warning("correction stored, but not added to the precedent store: %s", exc)
        return False


def accept_routing(session: Session, ticket_id: int) -> TicketPublic:
    """An agent confirmed the routing: the ticket leaves the review queue."""
    ticket = _ticket_row(session, ticket_id)
    ticket.needs_review = False
    session.add(ticket)
    session.commit()
    return ticket_public(ticket)


def untrained_corrections(session: Session) -> list[CorrectionPublic]:
    """Corrections no model version was trained on yet, oldest first (for retraining)."""
    rows = session.exec(select(Correction).where(col(Correction.used_in_version).is_(None)).order_by(Correction.id))
    return [CorrectionPublic.model_validate(r) for r in rows.all()]


def mark_corrections_used(session: Session, correction_ids: Sequence[int], version: str) -> int:
    """Record that `version` was trained on these corrections; returns how many were marked."""
    rows = session.exec(select(Correction).where(col(Correction.id).in_(list(correction_ids)))).all()
    for row in rows:
        row.used_in_version = version
        session.add(row)
    session.commit()
    return len(rows)


@dataclass
class ReviewItem:
    ticket: TicketPublic
    reason: Literal["low-confidence", "corrected-untrained"]


def review_queue(session: Session, limit: int = 50) -> list[ReviewItem]:
    """What a supervisor should look at: unsure routings lowest confidence first, then corrections not yet trained on."""
    low = session.exec(
        select(Ticket).where(col(Ticket.needs_review).is_(True))
        .order_by(col(Ticket.confidence).asc(), col(Ticket.id).asc()).limit(limit)
    ).all()
    items = [ReviewItem(ticket_public(t), "low-confidence") for t in low]
    if len(items) < limit:
        untrained = exists().where(Correction.ticket_id == Ticket.id, col(Correction.used_in_version).is_(None))
        rows = session.exec(
            select(Ticket).where(untrained, col(Ticket.needs_review).is_(False))
            .order_by(col(Ticket.id).asc()).limit(limit - len(items))
        ).all()
        items += [ReviewItem(ticket_public(t), "corrected-untrained") for t in rows]
    return items


# -- model versions ------------------------------------------------------------------
def register_model_version(session: Session, artifact_path: str | Path, *, metrics: dict | None = None) -> ModelVersion:
    """Add a trained soft-prompt artifact as a candidate version.

    Its name is the artifact's own version (triage.json, else the directory name): the
    name every routing made with it records as model_version.
    """
    from router.artifact import ArtifactError, read_metadata

    path = Path(artifact_path).expanduser().resolve()
    try:
        meta = read_metadata(path)
    except ArtifactError as exc:
        raise InvalidInput(str(exc), "artifact_path") from exc
    name = meta.get("version") or path.name
    row = ModelVersion(version=name, artifact_path=str(path), meta=json_safe(meta),
                       metrics=json_safe(metrics if metrics is not None else dict(meta.get("metrics") or {})))
    add_unique(session, row, f"model version {name!r} is already registered", "version")
    session.refresh(row)
    return row


def list_model_versions(session: Session) -> list[ModelVersion]:
    """Every registered version, newest first."""
    return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.id).desc())).all())


def get_model_version(session: Session, version: str) -> ModelVersion:
    row = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        raise NotFound(f"no model version {version!r} (see GET /v1/models or `triage models list`)", "version")
    return row


def active_model_version(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.status == "active")).first()


def _switch(service, row: ModelVersion) -> None:
    """Load the version's soft prompt into the running service (validates it before anything is written)."""
    if service is None:
        return
    from router.artifact import ArtifactError

    try:
        service.use_tuned(Path(row.artifact_path))
    except (ArtifactError, OSError) as exc:
        raise Conflict(f"model version {row.version!r} cannot be served: {exc}", "version") from exc


def promote(session: Session, version: str, *, who: str, service=None) -> ModelVersion:
    """Make `version` the active one (the previous active version is retired).

    With `service`, the running service switches to it at once; if the artifact
    cannot be loaded nothing changes.
    """
    row = get_model_version(session, version)
    previous = active_model_version(session)
    _switch(service, row)
    try:
        if previous is not None and previous.id != row.id:
            previous.status = "retired"
            session.add(previous)
        row.status, row.promoted_by, row.promoted_at = "active", who, utcnow()
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        if service is not None and previous is not None:
            _switch(service, previous)
        raise
    session.refresh(row)
    return row


def rollback(session: Session, version: str, *, who: str, service=None) -> ModelVersion:
    """Retire the active `version` and re-activate the version that was active before it; returns that one."""
    row = get_model_version(session, version)
    if row.status != "active":
        raise Conflict(f"model version {version!r} is {row.status}, not active: only the active version can be "
                       "rolled back", "version")
    earlier = session.exec(
        select(ModelVersion).where(ModelVersion.status == "retired", col(ModelVersion.promoted_at).is_not(None),
                                   ModelVersion.id != row.id)
        .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())
    ).first()
    if earlier is None:
        raise Conflict(f"no earlier promoted version to roll back to from {version!r}", "version")
    return _reactivate(session, row, earlier, who, service)


def _reactivate(session: Session, current: ModelVersion, earlier: ModelVersion, who: str, service) -> ModelVersion:
    _switch(service, earlier)
    current.status = "retired"
    earlier.status, earlier.promoted_by, earlier.promoted_at = "active", who, utcnow()
    session.add(current)
    session.add(earlier)
    session.commit()
    session.refresh(earlier)
    return earlier


# -- health ---------------------------------------------------------------------------
def ping(session: Session) -> None:
    """Raise unless the database answers."""
    session.exec(text("SELECT 1")).one()  # type: ignore[call-overload]
    session.rollback()


# -- a session-less facade for the console ------------------------------------------------
@dataclass
class Store:
    """The store functions bound to one engine, for callers without a session (the console)."""

    engine: Engine
    settings: Settings | None = None
    who: str = "console"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def record_routing(self, text_: str, routing: Routing, external_id: str | None = None) -> int:
        """Store a routed complaint; returns the ticket id."""
        with self.session() as s:
            return create_ticket_with_routing(s, text_, routing, external_id=external_id, source="console").id

    def record_correction(self, ticket_id: int, departments: Sequence[str], why: str | None = None,
                          who: str | None = None) -> CorrectionPublic:
        with self.session() as s:
            return add_correction(s, ticket_id, departments, who=who or self.who, why=why, settings=self.settings)

    def record_acceptance(self, ticket_id: int) -> TicketPublic:
        with self.session() as s:
            return accept_routing(s, ticket_id)

    def get_ticket(self, ticket_id: int) -> TicketPublic:
        with self.session() as s:
            return get_ticket(s, ticket_id)

    def list_tickets(self, **filters) -> TicketsPublic:
        with self.session() as s:
            return list_tickets(s, **filters)

    def review_queue(self, limit: int = 50) -> list[ReviewItem]:
        with self.session() as s:
            return review_queue(s, limit)

    def list_model_versions(self) -> list[ModelVersion]:
        with self.session() as s:
            return list_model_versions(s)

    def promote(self, version: str, who: str | None = None, service=None) -> ModelVersion:
        with self.session() as s:
            return promote(s, version, who=who or self.who, service=service)

    def rollback(self, version: str, who: str | None = None, service=None) -> ModelVersion:
        with self.session() as s:
            return rollback(s, version, who=who or self.who, service=service)


def open_store(settings: Settings) -> Store:
    """The store of `settings.resolved_database_url`; SchemaError (run `triage db upgrade`) if it is not ready."""
    from router.db import check_schema, engine_for

    engine = engine_for(settings)
    check_schema(engine)
    return Store(engine, settings)
