"""Supervisor pane: the label distribution of the training set plus pending corrections."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from router.departments import DEPARTMENTS
from router.report import Distribution
from router.application import TrainingPreview
from tui.supervision import distribution, training_set

SHORT = {d: d[:5] for d in DEPARTMENTS}


class TrainingDataPane(VerticalScroll):
    """Counts per label set, per department alone vs paired, the pairs matrix, and warnings."""

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.data: TrainingPreview | None = None

    def compose(self) -> ComposeResult:
        yield Static("Loading the training set…", id="data-summary")
        yield Static("", id="data-warnings")
        with Horizontal(id="data-tables"):
            yield DataTable(id="label-sets", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="alone-paired", cursor_type="row", zebra_stripes=True)
        yield Static("[b]Pairs matrix[/b]: complaints routed to both departments", classes="hint")
        yield DataTable(id="pairs", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        self.action_reload()

    @work(thread=True, exclusive=True, group="training-data")
    def action_reload(self) -> None:
        try:
            data = training_set(self.session.core)
        except Exception as exc:  # a broken training file is shown, with its line numbers
            self.app.call_from_thread(self.query_one("#data-summary", Static).update, f"[b red]Cannot read the training set[/]: {exc}")
            return
        self.app.call_from_thread(self.show, data)

    def show(self, data: TrainingPreview) -> None:
        self.data = data
        dist = distribution(data)
        pending = data.pending
        self.query_one("#data-summary", Static).update(
            f"[b]{dist.n}[/b] examples ({data.base_count} in the training file, {pending} pending correction"
            f"{'' if pending == 1 else 's'}, {len(data.assembled.holdout)} held out to evaluate the next retrain); "
            f"{dist.multi_share:.0%} routed to more than one department"
        )
        warnings = "\n".join(f"[b $warning]warning[/]: {w}" for w in dist.warnings)
        self.query_one("#data-warnings", Static).update(warnings)
        self._label_sets(dist)
        self._alone_paired(dist)
        self._pairs(dist)

    def _label_sets(self, dist: Distribution) -> None:
        table = self.query_one("#label-sets", DataTable)
        table.clear(columns=True)
        table.add_columns("count", "label set")
        for label, count in dist.label_sets.most_common():
            table.add_row(str(count), label, key=label)

    def _alone_paired(self, dist: Distribution) -> None:
        table = self.query_one("#alone-paired", DataTable)
        table.clear(columns=True)
        table.add_columns("department", "alone", "paired", "alone %")
        for d in DEPARTMENTS:
            total = dist.alone[d] + dist.paired[d]
            share = f"{dist.alone[d] / total:.0%}" if total else "-"
            table.add_row(d, str(dist.alone[d]), str(dist.paired[d]), share, key=d)

    def _pairs(self, dist: Distribution) -> None:
        table = self.query_one("#pairs", DataTable)
        table.clear(columns=True)
        table.add_columns("", *[SHORT[d] for d in DEPARTMENTS])
        for i, a in enumerate(DEPARTMENTS):
            cells = []
            for j, b in enumerate(DEPARTMENTS):
                key = (a, b) if i < j else (b, a)
                cells.append("·" if i == j else str(dist.pairs[key]))
            table.add_row(a, *cells, key=a)
