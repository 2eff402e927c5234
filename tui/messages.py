"""Messages the console's workers post back to the UI thread."""

from __future__ import annotations

from textual.message import Message

from router.results import Routing
from tui.session import Ticket


class RowRouted(Message):
    """One comparison row of a ticket is done."""

    def __init__(self, ticket: Ticket, key: str, routing: Routing) -> None:
        super().__init__()
        self.ticket, self.key, self.routing = ticket, key, routing


class RowFailed(Message):
    """One strategy could not route this ticket (the others still run)."""

    def __init__(self, ticket: Ticket, key: str, error: str) -> None:
        super().__init__()
        self.ticket, self.key, self.error = ticket, key, error


class RoutingFailed(Message):
    """Routing a ticket stopped with an error the agent should read."""

    def __init__(self, ticket: Ticket, error: str) -> None:
        super().__init__()
        self.ticket, self.error = ticket, error


class RoutingFinished(Message):
    """Every comparison row of a ticket is done."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__()
        self.ticket = ticket
