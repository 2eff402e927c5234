"""This session's tickets, newest first, with a search box."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from tui.session import ConsoleSession, Ticket


def excerpt(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class HistoryPanel(Vertical):
    """Search box plus a table of tickets; Enter on a row opens that ticket again."""

    class Opened(Message):
        def __init__(self, ticket: Ticket) -> None:
            super().__init__()
            self.ticket = ticket

    def __init__(self, session: ConsoleSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search this session's tickets", id="history-search", compact=True)
        table = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("#", "status", "departments", "complaint")
        yield table

    def refresh_rows(self) -> None:
        table = self.query_one("#history-table", DataTable)
        table.clear()
        query = self.query_one("#history-search", Input).value
        for ticket in self.session.search(query):
            final = ticket.final or (ticket.primary.departments if ticket.primary else [])
            table.add_row(str(ticket.number), ticket.status, ", ".join(final), excerpt(ticket.text), key=str(ticket.number))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.refresh_rows()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#history-table", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        number = int(str(event.row_key.value))
        self.post_message(self.Opened(self.session.tickets[number - 1]))

    def shown_numbers(self) -> list[int]:
        table = self.query_one("#history-table", DataTable)
        return [int(str(key.value)) for key in table.rows]
