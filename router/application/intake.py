"""Intake: route and store complaints exactly once per external_id and per Idempotency-Key.

A repeat of an earlier request (same key and body, or a known external_id with the same text) returns the
stored result; the same key with another body, or a known external_id with other text, is a Conflict.
Concurrent duplicates (another replica, another request) are settled by the database's unique constraints:
the loser looks again and answers with the winner's tickets. A batch is stored all together or not at all.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from router import store
from router.application.scheduler import RequestScheduler
from router.db.models import TicketCreate
from router.results import Routing
from router.service import validate_text
from router.settings import Settings
from router.store import Conflict, IntakeItem, IntakeResult, InvalidInput

ATTEMPTS = 5


def validated_items(items: Sequence[TicketCreate], settings: Settings, batch: bool) -> list[IntakeItem]:
    """Each complaint checked (InputError names `tickets[i].text`); repeated external_ids in a batch must agree."""
    if batch and len(items) > settings.max_batch_tickets:
        raise InvalidInput(f"{len(items)} tickets in one batch; the limit is {settings.max_batch_tickets}", "tickets")
    out: list[IntakeItem] = []
    first_by_id: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"tickets[{i}]." if batch else ""
        clean = IntakeItem(validate_text(item.text, settings.max_input_chars, f"{where}text"), item.external_id,
                           item.source)
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


def intake(session: Session, scheduler: RequestScheduler, items: Sequence[TicketCreate], *,
           strategy: str | None = None, rag: bool = False, precedents: bool = False, batch: bool = False,
           idempotency_key: str | None = None) -> IntakeResult:
    """Route the new complaints (through the scheduler, batched with concurrent requests) and store them."""
    items_in = list(items)
    clean = validated_items(items_in, scheduler.service.settings, batch)
    options = {"strategy": strategy, "rag": rag, "precedents": precedents}
    payload = {"tickets": [t.model_dump(mode="json") for t in items_in], **options} if batch else \
        {**items_in[0].model_dump(mode="json"), **options}
    digest = store.request_hash("batch" if batch else "ticket", payload)
    routed: dict[int, Routing] = {}
    for _attempt in range(ATTEMPTS):
        replay = store.find_replay(session, idempotency_key, digest)
        existing = store.find_existing(session, clean, batch) if replay is None else {}
        session.rollback()  # end the read transaction before the slow routing and the write
        if replay is not None:
            return replay
        todo = [i for i, it in enumerate(clean) if i not in existing and it.same_as is None and i not in routed]
        if todo:
            results = scheduler.route_many([clean[i].text for i in todo], strategy, rag=rag, precedents=precedents)
            routed.update(zip(todo, results))
        try:
            return store.save_intake(session, clean, existing, routed, batch, idempotency_key, digest)
        except IntegrityError:
            session.rollback()  # a concurrent request stored the same external_id or key first: look again
    raise Conflict("concurrent requests kept colliding on the same external_id or Idempotency-Key; retry")
