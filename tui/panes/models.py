"""Supervisor pane: model versions with their metrics; promote and roll back."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui.supervision import model_versions


def metric(row, name: str) -> str:
    value = (row.metrics or {}).get(name)
    return "-" if value is None else f"{value:.3f}"


class ModelsPane(Vertical):
    """Registered tuned-model versions, newest first; p promotes the selected one, b rolls back the active one."""

    BINDINGS = [
        Binding("p", "promote", "Promote"),
        Binding("b", "rollback", "Roll back"),
        Binding("f5", "reload", "Reload"),
    ]

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.versions = []

    def compose(self) -> ComposeResult:
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="models-info")

    def on_mount(self) -> None:
        self.query_one("#models-table", DataTable).add_columns("version", "status", "exact", "micro F1", "macro F1", "Δ exact")
        self.action_reload()

    @work(thread=True, exclusive=True, group="models")
    def action_reload(self) -> None:
        versions = model_versions(self.session.core)
        self.app.call_from_thread(self.show, versions, self.serving())

    def show(self, versions, serving: str = "") -> None:
        self.versions = versions
        table = self.query_one("#models-table", DataTable)
        table.clear()
        for row in versions:
            base = (row.metrics or {}).get("compared_with") or {}
            versus = "-"
            if base.get("exact_set_accuracy") is not None and row.metrics.get("exact_set_accuracy") is not None:
                versus = f"{row.metrics['exact_set_accuracy'] - base['exact_set_accuracy']:+.3f}"
            table.add_row(row.version, row.status, metric(row, "exact_set_accuracy"), metric(row, "micro_f1"),
                          metric(row, "macro_f1"), versus, key=row.version)
        info = self.query_one("#models-info", Static)
        if not versions:
            info.update("No model versions yet: retrain on the Retrain tab, or `triage models register`.")
        else:
            info.update(f"Serving: {serving}. Δ exact: against the version active when it was trained.")

    def serving(self) -> str:
        """The version the tuned strategy uses now (call off the UI thread: it may load the model)."""
        try:
            return self.session.service.tuned_model.version
        except Exception as exc:  # shown, not raised: the pane still lists versions
            return f"nothing ({exc})"

    def selected(self):
        table = self.query_one("#models-table", DataTable)
        if not self.versions or table.cursor_row is None or table.cursor_row >= len(self.versions):
            return None
        return self.versions[table.cursor_row]

    def action_promote(self) -> None:
        row = self.selected()
        if row is not None:
            self.change("promote", row.version)

    def action_rollback(self) -> None:
        active = next((v for v in self.versions if v.status == "active"), None)
        if active is None:
            self.notify("No active version to roll back", severity="warning")
            return
        self.change("rollback", active.version)

    @work(thread=True, exclusive=True, group="models-change")
    def change(self, what: str, version: str) -> None:
        registry = self.session.core.registry
        try:
            if what == "promote":
                row = registry.promote(version, who=self.session.who)
                text = f"{row.version} is now active and serving"
            else:
                row = registry.rollback(version, who=self.session.who)
                text = f"rolled back to {row.version}"
        except ValueError as exc:
            self.app.call_from_thread(self.notify, str(exc), title=f"Not done: {what}", severity="error")
            return
        self.app.call_from_thread(self.notify, text, title="Models")
        versions = model_versions(self.session.core)
        self.app.call_from_thread(self.show, versions, self.serving())
