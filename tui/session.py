"""The console's headless core: routing plans, this session's tickets, corrections.

No Textual here: the screens call these functions from workers and show the
results, so the same behaviour can be driven (and tested) without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from router.application import Application, validate_text
from router.departments import canonical
from router.results import STRATEGIES, Routing

PRIMARY = "tuned"
COMPARE_ORDER = (PRIMARY,) + tuple(s for s in STRATEGIES if s != PRIMARY)


def row_key(strategy: str, rag: bool) -> str:
    """The comparison row a routing belongs to: 'tuned', 'zero-shot+rag', ..."""
    return strategy + ("+rag" if rag else "")


def comparison_rows(rag: bool) -> list[tuple[str, bool]]:
    """(strategy, rag) pairs in the order they are routed; the primary (tuned, +RAG when on) comes first."""
    first = [(s, rag) for s in COMPARE_ORDER]
    return first + ([(s, False) for s in COMPARE_ORDER] if rag else [])


@dataclass
class Ticket:
    """One complaint routed in this console session."""

    number: int
    text: str
    rag: bool
    routings: dict[str, Routing] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # strategy rows that could not run, and why
    ticket_id: int | None = None
    final: list[str] | None = None
    reason: str = ""

    @property
    def primary(self) -> Routing | None:
        return self.routings.get(row_key(PRIMARY, self.rag))

    @property
    def status(self) -> str:
        if self.final is None:
            return "routed" if self.primary else "routing"
        return "accepted" if self.primary and self.final == self.primary.departments else "corrected"

    def matches(self, query: str) -> bool:
        words = query.lower().split()
        haystack = " ".join([self.text, self.status, *(self.final or []), *(self.primary.departments if self.primary else [])])
        return all(word in haystack.lower() for word in words)


class CorrectionError(ValueError):
    """A correction the console will not save (no departments, nothing routed yet)."""


class ConsoleSession:
    """What one agent does in one console run: route, accept or correct, look back (through the core)."""

    def __init__(self, core: Application, who: str = "console"):
        self.core = core
        self.who = who
        self.tickets: list[Ticket] = []

    @property
    def service(self):
        return self.core.service

    @property
    def rag_available(self) -> bool:
        return self.service.grounder is not None

    def new_ticket(self, text: str, rag: bool) -> Ticket:
        """Validate the complaint (InputError names what is wrong) and open a ticket for it."""
        clean = validate_text(text, self.service.settings.max_input_chars)
        ticket = Ticket(len(self.tickets) + 1, clean, rag and self.rag_available)
        self.tickets.append(ticket)
        return ticket

    def route_iter(self, ticket: Ticket, should_stop=lambda: False) -> Iterator[tuple[str, Routing | Exception]]:
        """Each comparison row as it finishes, the primary row first (then saved as a ticket).

        A strategy that cannot run (no tuned artifact, no shots file, ...) yields its error
        in place of a routing; the other strategies still run.
        """
        for rag in ([True, False] if ticket.rag else [False]):
            for strategy in COMPARE_ORDER:
                key = row_key(strategy, rag)
                try:
                    (routing,) = self.core.compare_iter(ticket.text, [strategy], rag=rag)
                except Exception as exc:  # shown in the strategy's row
                    ticket.errors[key] = str(exc) or type(exc).__name__
                    yield key, exc
                else:
                    ticket.routings[key] = routing
                    if key == row_key(PRIMARY, ticket.rag):
                        self._save_ticket(ticket)
                    yield key, routing
                if should_stop():
                    return

    def _save_ticket(self, ticket: Ticket) -> None:
        if ticket.primary is not None:
            ticket.ticket_id = self.core.record_routing(ticket.text, ticket.primary)

    def accept(self, ticket: Ticket) -> None:
        self.correct(ticket, ticket.primary.departments if ticket.primary else [], "")

    def correct(self, ticket: Ticket, departments, reason: str = "") -> bool:
        """Store the agent's departments for the ticket; True when they differ from the model's (a correction)."""
        if ticket.primary is None:
            raise CorrectionError("nothing to correct yet: the complaint is still being routed")
        chosen = canonical(departments)
        if not chosen:
            raise CorrectionError("choose at least one department (keys 1-7)")
        changed = chosen != ticket.primary.departments
        if ticket.ticket_id is not None:
            if changed:
                self.core.correct(ticket.ticket_id, chosen, who=self.who, why=reason.strip() or None)
            else:
                self.core.accept(ticket.ticket_id)
        ticket.final, ticket.reason = chosen, reason.strip()
        return changed

    def search(self, query: str) -> list[Ticket]:
        """This session's tickets, newest first, whose text, departments or status contain every word."""
        return [t for t in reversed(self.tickets) if t.matches(query)]
