"""The live side-by-side table: every strategy on the same complaint, filled in as each finishes."""

from __future__ import annotations

from textual.widgets import DataTable

from router.results import Routing
from tui.session import comparison_rows, row_key

COLUMNS = ("strategy", "departments", "in tok", "gen tok", "latency")
PENDING = "…"


class ComparisonTable(DataTable):
    """One row per strategy (and +RAG); pending rows show an ellipsis until their routing arrives."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def start(self, rag: bool) -> None:
        """Clear the table and add a pending row for each strategy that will run."""
        self.clear()
        for strategy, with_rag in comparison_rows(rag):
            key = row_key(strategy, with_rag)
            self.add_row(key, PENDING, PENDING, PENDING, PENDING, key=key)

    def fill(self, key: str, routing: Routing) -> None:
        if key not in self.rows:
            self.add_row(key, PENDING, PENDING, PENDING, PENDING, key=key)
        values = (routing.label, str(routing.input_tokens), str(routing.generated_tokens), f"{routing.latency_ms:.0f} ms")
        for column, value in zip(COLUMNS[1:], values):
            self.update_cell(key, column, value, update_width=True)

    def fail(self, key: str, error: str) -> None:
        """A strategy that could not run: its row says why."""
        if key not in self.rows:
            self.add_row(key, PENDING, PENDING, PENDING, PENDING, key=key)
        self.update_cell(key, "departments", "failed: " + " ".join(error.split()), update_width=True)
        for column in COLUMNS[2:]:
            self.update_cell(key, column, "-")

    def show_all(self, rag: bool, routings: dict[str, Routing], errors: dict[str, str] | None = None) -> None:
        """Show a finished ticket (from history)."""
        self.start(rag)
        for key, routing in routings.items():
            self.fill(key, routing)
        for key, error in (errors or {}).items():
            self.fail(key, error)

    def row_values(self) -> dict[str, list[str]]:
        """What each row shows now, by row key (used by tests and the command palette)."""
        return {str(key.value): [str(cell) for cell in self.get_row(key)] for key in self.rows}
