"""Supervisor pane: the review queue (unsure routings first, then untrained corrections), corrected in place."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from router.departments import DEPARTMENTS
from tui.supervision import latest_routing, review_items
from tui.widgets.department_board import DepartmentBoard
from tui.widgets.history import excerpt


class ReviewPane(Vertical):
    """Pick a ticket, toggle departments 1-7, save the correction (s) or accept the routing (a)."""

    BINDINGS = [
        Binding("1", "toggle(1)", "Toggle", key_display="1-7"),
        *[Binding(str(i), f"toggle({i})", DEPARTMENTS[i - 1], show=False) for i in range(2, 8)],
        Binding("s", "save", "Save fix"),
        Binding("a", "accept", "Accept"),
        Binding("f5", "reload", "Reload"),
    ]

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.items = []

    def compose(self) -> ComposeResult:
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="review-text")
        yield DepartmentBoard(id="review-board")
        yield Input(placeholder="why the routing was wrong (optional); Enter saves", id="review-reason", compact=True)

    def on_mount(self) -> None:
        self.query_one("#review-table", DataTable).add_columns("ticket", "why listed", "conf", "departments", "complaint")
        self.action_reload()

    @work(thread=True, exclusive=True, group="review")
    def action_reload(self) -> None:
        items = review_items(self.session.core)
        self.app.call_from_thread(self.show, items)

    def show(self, items) -> None:
        self.items = items
        table = self.query_one("#review-table", DataTable)
        table.clear()
        for item in items:
            t = item.ticket
            conf = "-" if t.confidence is None else f"{t.confidence:.0%}"
            table.add_row(str(t.id), item.reason, conf, ", ".join(t.departments), excerpt(t.text, 30), key=str(t.id))
        if not items:
            self.query_one("#review-text", Static).update("The review queue is empty.")
            self.query_one(DepartmentBoard).show(None)
        else:
            self.select(0)

    def current(self):
        table = self.query_one("#review-table", DataTable)
        if not self.items or table.cursor_row is None or table.cursor_row >= len(self.items):
            return None
        return self.items[table.cursor_row].ticket

    def select(self, row: int) -> None:
        ticket = self.items[row].ticket
        routed, confidence = latest_routing(ticket)
        self.query_one(DepartmentBoard).show_labels(routed, confidence, list(ticket.departments))
        self.query_one("#review-text", Static).update(f"Ticket {ticket.id}: {excerpt(ticket.text, 300)}")
        self.query_one("#review-reason", Input).value = ""

    @on(DataTable.RowHighlighted, "#review-table")
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.items):
            self.select(event.cursor_row)

    def action_toggle(self, key: int) -> None:
        if self.current() is not None:
            self.query_one(DepartmentBoard).toggle(DEPARTMENTS[key - 1])

    @on(DepartmentBoard.Toggle)
    def clicked(self, event: DepartmentBoard.Toggle) -> None:
        event.stop()
        self.action_toggle(event.key)

    @on(Input.Submitted, "#review-reason")
    def action_save(self) -> None:
        ticket = self.current()
        if ticket is None:
            return
        chosen = self.query_one(DepartmentBoard).chosen
        if not chosen:
            self.notify("choose at least one department (keys 1-7)", title="Not saved", severity="error")
            return
        reason = self.query_one("#review-reason", Input).value.strip() or None
        self.store_worker(ticket.id, chosen, reason)

    def action_accept(self) -> None:
        ticket = self.current()
        if ticket is not None:
            self.store_worker(ticket.id, None, None)

    @work(thread=True, group="review-save")
    def store_worker(self, ticket_id: int, departments: list[str] | None, reason: str | None) -> None:
        """departments None: accept the routing as it is."""
        core = self.session.core
        try:
            if departments is None:
                core.accept(ticket_id)
                text = f"Ticket {ticket_id} accepted as routed"
            else:
                core.correct(ticket_id, departments, who=self.session.who, why=reason)
                text = f"Ticket {ticket_id} corrected to {', '.join(departments)}"
        except Exception as exc:  # store errors and an unreachable database are shown, not raised
            self.app.call_from_thread(self.notify, str(exc), title="Not saved", severity="error")
            return
        self.app.call_from_thread(self.notify, text, title="Saved")
        items = review_items(core)
        self.app.call_from_thread(self.show, items)
