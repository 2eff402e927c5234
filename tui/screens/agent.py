"""The agent's screen: type a complaint, read the departments, accept or correct, look back."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, TabbedContent, TabPane
from textual.worker import get_current_worker

from router.departments import DEPARTMENTS
from router.application import InputError
from tui.messages import RoutingFailed, RoutingFinished, RowFailed, RowRouted
from tui.session import PRIMARY, ConsoleSession, Ticket, row_key
from tui.widgets.comparison import ComparisonTable
from tui.widgets.complaint_input import ComplaintInput
from tui.widgets.department_board import DepartmentBoard
from tui.widgets.evidence import EvidencePanel
from tui.widgets.history import HistoryPanel


class AgentScreen(Screen):
    """Route complaints, accept or correct the tuned model's departments."""

    BINDINGS = [
        Binding("1", "toggle(1)", "Toggle", key_display="1-7"),
        *[Binding(str(i), f"toggle({i})", DEPARTMENTS[i - 1], show=False) for i in range(2, 8)],
        Binding("a", "accept", "Accept"),
        Binding("s", "save_correction", "Save fix"),
        Binding("r", "reason", "Reason", show=False),
        Binding("n", "new", "New", show=False),
        Binding("ctrl+n", "new", "New", show=False),
        Binding("ctrl+r", "toggle_rag", "RAG"),
        Binding("h", "tab('history')", "History", show=False),
        Binding("c", "tab('compare')", "Compare", show=False),
        Binding("e", "tab('evidence')", "Evidence", show=False),
    ]

    PALETTE = [
        ("Route complaint", "route", "Route what is in the complaint box (Enter)"),
        ("New complaint", "new", "Clear the box and type the next complaint (Ctrl+N)"),
        ("Toggle RAG", "toggle_rag", "Ground routings in policy passages and compare +RAG rows (Ctrl+R)"),
        ("Accept routing", "accept", "The tuned model's departments are right (a)"),
        ("Save correction", "save_correction", "Store the toggled departments and the reason (s)"),
        ("Write correction reason", "reason", "Why the routing was wrong (r)"),
        *[(f"Toggle {name}", f"toggle({i})", f"Add or remove {name} ({i})") for i, name in enumerate(DEPARTMENTS, 1)],
        ("Show comparison", "tab('compare')", "Every strategy side by side (c)"),
        ("Show RAG evidence", "tab('evidence')", "The passages the routing cited (e)"),
        ("Search history", "tab('history')", "This session's tickets (h)"),
    ]

    def __init__(self, session: ConsoleSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.ticket: Ticket | None = None
        self.rag = False

    # -- layout -----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="☎")
        with Vertical(id="agent"):
            yield ComplaintInput(id="complaint")
            with Horizontal(id="status-bar"):
                yield Label("", id="review-marker")
                yield Label("Enter routes the complaint", id="ticket-info")
                yield Label("RAG off", id="rag-state")
            yield DepartmentBoard(id="board")
            yield Input(placeholder="reason for a correction (optional): r, then Enter saves", id="reason", compact=True)
            with TabbedContent(id="agent-tabs", initial="compare"):
                with TabPane("Compare", id="compare"):
                    yield ComparisonTable(id="comparison")
                with TabPane("Evidence", id="evidence"):
                    yield EvidencePanel(id="evidence-panel")
                with TabPane("History", id="history"):
                    yield HistoryPanel(self.session, id="history-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "triage console"
        self.sub_title = "agent"
        self.query_one(EvidencePanel).show(None, self.rag, self.session.rag_available)
        self.query_one(ComplaintInput).focus()

    # -- routing ----------------------------------------------------------------
    @on(ComplaintInput.Submitted)
    def route_complaint(self, event: ComplaintInput.Submitted) -> None:
        try:
            ticket = self.session.new_ticket(event.text, self.rag)
        except InputError as exc:
            self.notify(f"complaint {exc}", title="Not routed", severity="error")
            return
        self.open_ticket(ticket)
        self.query_one(ComparisonTable).start(ticket.rag)
        self.query_one("#ticket-info", Label).update(f"Ticket {ticket.number}: routing…")
        self.route_worker(ticket)

    @work(thread=True, exclusive=True, group="route", name="route")
    def route_worker(self, ticket: Ticket) -> None:
        worker = get_current_worker()
        try:
            for key, result in self.session.route_iter(ticket, should_stop=lambda: worker.is_cancelled):
                if isinstance(result, Exception):
                    self.post_message(RowFailed(ticket, key, ticket.errors[key]))
                else:
                    self.post_message(RowRouted(ticket, key, result))
        except Exception as exc:  # shown to the agent; the console keeps running
            self.post_message(RoutingFailed(ticket, str(exc) or type(exc).__name__))
        finally:
            self.post_message(RoutingFinished(ticket))

    def on_row_routed(self, message: RowRouted) -> None:
        self.query_one(HistoryPanel).refresh_rows()
        if message.ticket is not self.ticket:
            return
        self.query_one(ComparisonTable).fill(message.key, message.routing)
        if message.key == row_key(PRIMARY, message.ticket.rag):
            self.show_primary(message.ticket)
            if isinstance(self.focused, ComplaintInput):
                self.query_one(DepartmentBoard).focus()

    def on_row_failed(self, message: RowFailed) -> None:
        if message.ticket is self.ticket:
            self.query_one(ComparisonTable).fail(message.key, message.error)
        if message.key == row_key(PRIMARY, message.ticket.rag):
            self.notify(message.error, title=f"Ticket {message.ticket.number}: {message.key} failed", severity="error",
                        timeout=10)
            if message.ticket is self.ticket:
                self.query_one("#ticket-info", Label).update(f"Ticket {message.ticket.number}: {message.key} failed, not saved")

    def on_routing_failed(self, message: RoutingFailed) -> None:
        self.notify(message.error, title=f"Ticket {message.ticket.number} failed", severity="error", timeout=10)

    def on_routing_finished(self, message: RoutingFinished) -> None:
        self.query_one(HistoryPanel).refresh_rows()

    # -- showing a ticket -------------------------------------------------------
    def open_ticket(self, ticket: Ticket) -> None:
        self.ticket = ticket
        self.query_one(DepartmentBoard).show(ticket.primary, ticket.final)
        self.query_one("#reason", Input).value = ticket.reason
        self.show_primary(ticket)

    def show_primary(self, ticket: Ticket) -> None:
        routing = ticket.primary
        marker = self.query_one("#review-marker", Label)
        marker.update("needs review" if routing and routing.needs_review else "")
        marker.set_class(bool(routing and routing.needs_review), "-on")
        if routing is None:
            self.query_one(EvidencePanel).show(None, ticket.rag, self.session.rag_available)
            return
        board = self.query_one(DepartmentBoard)
        if board.routing is not routing:
            board.show(routing, ticket.final)
        version = f" · model {routing.model_version}" if routing.model_version else ""
        saved = f" · saved #{ticket.ticket_id}" if ticket.ticket_id is not None else ""
        self.query_one("#ticket-info", Label).update(f"Ticket {ticket.number} · {ticket.status}{version}{saved}")
        self.query_one(EvidencePanel).show(routing.passages, ticket.rag, self.session.rag_available,
                                           grounded=routing.rag or not ticket.rag)

    @on(HistoryPanel.Opened)
    def reopen(self, event: HistoryPanel.Opened) -> None:
        ticket = event.ticket
        self.open_ticket(ticket)
        self.query_one(ComparisonTable).show_all(ticket.rag, ticket.routings, ticket.errors)
        self.query_one(ComplaintInput).text = ticket.text
        self.query_one(DepartmentBoard).focus()

    # -- corrections ------------------------------------------------------------
    def action_toggle(self, key: int) -> None:
        if self.ticket is None or self.ticket.primary is None:
            self.notify("Route a complaint first", severity="warning")
            return
        self.query_one(DepartmentBoard).toggle(DEPARTMENTS[key - 1])

    @on(DepartmentBoard.Toggle)
    def clicked_badge(self, event: DepartmentBoard.Toggle) -> None:
        self.action_toggle(event.key)

    def action_accept(self) -> None:
        if self.ticket is None:
            self.notify("Route a complaint first", severity="warning")
            return
        board = self.query_one(DepartmentBoard)
        board.show(self.ticket.primary)
        self._store(board.routed, "")

    def action_save_correction(self) -> None:
        if self.ticket is None:
            self.notify("Route a complaint first", severity="warning")
            return
        self._store(self.query_one(DepartmentBoard).chosen, self.query_one("#reason", Input).value)

    def _store(self, departments: list[str], reason: str) -> None:
        self.save_worker(self.ticket, departments, reason)

    @work(thread=True, group="save", name="save correction")
    def save_worker(self, ticket: Ticket, departments: list[str], reason: str) -> None:
        """Stores off the UI thread: a correction also feeds the precedent store, which may load a model."""
        try:
            changed = self.session.correct(ticket, departments, reason)
        except Exception as exc:  # CorrectionError, store errors, an unreachable database: all shown
            self.app.call_from_thread(self.notify, str(exc), title="Not saved", severity="error")
            return
        self.app.call_from_thread(self._saved, ticket, changed)

    def _saved(self, ticket: Ticket, changed: bool) -> None:
        what = f"corrected to {', '.join(ticket.final)}" if changed else "accepted"
        self.notify(f"Ticket {ticket.number} {what}", title="Saved")
        if ticket is self.ticket:
            self.show_primary(ticket)
        self.query_one(HistoryPanel).refresh_rows()

    @on(Input.Submitted, "#reason")
    def reason_entered(self) -> None:
        self.action_save_correction()
        self.query_one(DepartmentBoard).focus()

    def action_route(self) -> None:
        self.query_one(ComplaintInput).action_submit()

    def action_reason(self) -> None:
        self.query_one("#reason", Input).focus()

    def action_new(self) -> None:
        box = self.query_one(ComplaintInput)
        box.clear()
        self.query_one("#reason", Input).value = ""
        box.focus()

    def action_toggle_rag(self) -> None:
        if not self.session.rag_available:
            self.notify("RAG needs a retrieval store: run 'triage rag ingest' first", title="RAG unavailable",
                        severity="warning")
            return
        self.rag = not self.rag
        self.query_one("#rag-state", Label).update("RAG on" if self.rag else "RAG off")
        self.query_one("#rag-state", Label).set_class(self.rag, "-on")

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "history":
            self.query_one("#history-search", Input).focus()
