"""Tickets, routings, corrections and model versions: the logic the API and the console share.

Persistence only: every function takes an open ``sqlmodel.Session`` (see ``router.db.session_scope``)
and commits what it writes; none of them routes, serves a model, retrieves or knows about HTTP
(router.application does those). Errors:
``InvalidInput`` (bad value, names the field), ``NotFound``, ``Conflict``.

``Store`` / ``open_store(settings)`` wrap these for callers that hold no session
(the terminal console). Callers use the names below (``from router import store``);
the modules hold one idea each: errors, tickets, intake, corrections, models, facade, setup
(``open_database``: the database ready on first use).
"""

from router.store.corrections import (
    ReviewItem,
    accept_routing,
    add_correction,
    mark_corrections_used,
    review_queue,
    untrained_corrections,
)
from router.store.errors import Conflict, InvalidInput, NotFound, StoreError, add_unique, json_safe
from router.store.facade import Store, open_store, ping
from router.store.intake import IntakeItem, IntakeResult, find_existing, find_replay, request_hash, save_intake
from router.store.models import (
    active_model_version,
    get_model_version,
    list_model_versions,
    promote,
    register_model_version,
    rollback,
    rollback_target,
)
from router.store.setup import SHIPPED_BY, open_database, register_shipped_model
from router.store.tickets import (
    MAX_PAGE,
    add_routing,
    check_department,
    create_ticket_with_routing,
    decode_cursor,
    encode_cursor,
    get_ticket,
    get_ticket_by_external_id,
    list_tickets,
    ticket_public,
)

__all__ = [
    "MAX_PAGE", "SHIPPED_BY", "Conflict", "IntakeItem", "IntakeResult", "InvalidInput", "NotFound", "ReviewItem", "Store",
    "StoreError", "accept_routing", "active_model_version", "add_correction", "add_routing", "add_unique",
    "check_department", "create_ticket_with_routing", "decode_cursor", "encode_cursor", "get_model_version",
    "get_ticket", "get_ticket_by_external_id", "find_existing", "find_replay", "save_intake", "json_safe", "list_model_versions", "list_tickets",
    "mark_corrections_used", "open_database", "open_store", "ping", "promote", "register_model_version", "request_hash",
    "register_shipped_model", "review_queue", "rollback", "rollback_target", "ticket_public", "untrained_corrections",
]
