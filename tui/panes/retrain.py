"""Supervisor pane: retrain the soft prompt with validated watsonx parameters, watch the loss, compare."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Label, ProgressBar, Static
from textual.worker import get_current_worker

from tuning.train import Cancelled, Progress
from tui.retrain_job import EVAL_METRICS, RetrainOutcome, run_retrain
from tui.supervision import register_outcome, training_set
from tui.widgets.loss_plot import LossPlot
from tui.widgets.tuning_form import TuningForm


class TrainProgress(Message):
    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class RetrainPhase(Message):
    def __init__(self, phase: str) -> None:
        super().__init__()
        self.phase = phase


class RetrainDone(Message):
    def __init__(self, outcome: RetrainOutcome | None, error: str | None = None) -> None:
        super().__init__()
        self.outcome, self.error = outcome, error


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


class RetrainPane(Horizontal):
    """Form on the left; progress, live loss curve and the evaluation on the right."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start retrain"),
        Binding("ctrl+b", "stop", "Stop"),
    ]

    def __init__(self, session, *, eval_examples=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.eval_examples = eval_examples  # None: data/dev.jsonl
        self.running = False
        self.stop_requested = False
        self.outcome: RetrainOutcome | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="retrain-form-col"):
            yield TuningForm(id="tuning-form")
            yield Static("", id="retrain-errors")
            with Horizontal(id="retrain-buttons"):
                yield Button("Start", id="retrain-start", variant="primary", compact=True)
                yield Button("Stop", id="retrain-stop", variant="error", compact=True, disabled=True)
        with Vertical(id="retrain-live"):
            yield ProgressBar(total=1, id="retrain-progress", show_eta=False)
            yield Label("Ctrl+S: start a retrain", id="retrain-status")
            yield LossPlot(id="loss-plot")
            yield DataTable(id="retrain-eval", cursor_type="none", zebra_stripes=True)

    # -- control ----------------------------------------------------------------
    @on(Button.Pressed, "#retrain-start")
    def action_start(self) -> None:
        if self.running:
            self.notify("A retrain is already running", severity="warning")
            return
        errors = self.query_one("#retrain-errors", Static)
        try:
            config = self.query_one(TuningForm).config()
        except ValueError as exc:
            errors.update(f"[b red]Not started[/]: {exc}")
            self.notify(str(exc), title="Invalid parameters", severity="error")
            return
        errors.update("")
        self.running, self.stop_requested, self.outcome = True, False, None
        self.query_one("#retrain-start", Button).disabled = True
        self.query_one("#retrain-stop", Button).disabled = False
        self.query_one(LossPlot).reset()
        self.query_one("#retrain-eval", DataTable).clear(columns=True)
        self.query_one("#retrain-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#retrain-status", Label).update("Preparing…")
        self.retrain_worker(config)

    @on(Button.Pressed, "#retrain-stop")
    def action_stop(self) -> None:
        if self.running:
            self.stop_requested = True
            self.query_one("#retrain-status", Label).update("Stopping after this batch…")

    @work(thread=True, exclusive=True, group="retrain", name="retrain")
    def retrain_worker(self, config) -> None:
        worker = get_current_worker()
        try:
            data = training_set(self.session.service, self.session.store)
            self.post_message(RetrainPhase(f"training on {len(data.examples)} examples "
                                           f"({len(data.corrections)} corrections)"))
            outcome = run_retrain(
                self.session.service, config, data.examples, eval_examples=self.eval_examples,
                on_progress=lambda p: self.post_message(TrainProgress(p)),
                should_stop=lambda: self.stop_requested or worker.is_cancelled,
                on_phase=lambda phase: self.post_message(RetrainPhase(phase)),
            )
            if self.session.store is not None:
                register_outcome(self.session.store, outcome, data.correction_ids)
        except Cancelled:
            self.post_message(RetrainDone(None, "stopped: nothing was saved"))
        except Exception as exc:  # shown in the pane; the console keeps running
            self.post_message(RetrainDone(None, str(exc) or type(exc).__name__))
        else:
            self.post_message(RetrainDone(outcome))

    # -- updates from the worker ------------------------------------------------
    def on_train_progress(self, message: TrainProgress) -> None:
        p = message.progress
        self.query_one(LossPlot).add(p)
        self.query_one("#retrain-progress", ProgressBar).update(total=p.steps_total, progress=p.step)
        if p.epoch_end:
            val = "" if p.val_loss is None or p.val_loss != p.val_loss else f", validation {p.val_loss:.3f}"
            text = f"epoch {p.epoch}/{p.epochs} done: loss {p.loss:.3f}{val}"
        else:
            text = f"epoch {p.epoch}/{p.epochs} · update {p.step}/{p.steps_total} · loss {p.loss:.3f} · eta {p.eta_s:.0f}s"
        self.query_one("#retrain-status", Label).update(text)

    def on_retrain_phase(self, message: RetrainPhase) -> None:
        self.query_one("#retrain-status", Label).update(message.phase + "…")

    def on_retrain_done(self, message: RetrainDone) -> None:
        self.running = False
        self.query_one("#retrain-start", Button).disabled = False
        self.query_one("#retrain-stop", Button).disabled = True
        status = self.query_one("#retrain-status", Label)
        if message.outcome is None:
            status.update(f"Retrain {message.error}")
            self.notify(message.error or "failed", title="Retrain", severity="warning")
            return
        self.outcome = outcome = message.outcome
        versus = f", compared with {outcome.active_version}" if outcome.active_version else ""
        status.update(f"Saved {outcome.version}{versus}. Promote it on the Models tab (m).")
        self.show_evaluation(outcome)
        self.post_message(self.Finished(outcome))

    class Finished(Message):
        def __init__(self, outcome: RetrainOutcome) -> None:
            super().__init__()
            self.outcome = outcome

    def show_evaluation(self, outcome: RetrainOutcome) -> None:
        table = self.query_one("#retrain-eval", DataTable)
        table.clear(columns=True)
        if not outcome.candidate:
            table.add_columns("evaluation")
            table.add_row("no evaluation set (data/dev.jsonl) was found")
            return
        table.add_columns(f"eval set ({outcome.n_eval})", "new", "active")
        for name in EVAL_METRICS:
            table.add_row(name.replace("_", " "), fmt(outcome.candidate.get(name)), fmt(outcome.active.get(name)), key=name)
