"""Supervisor pane: start a retraining job with validated watsonx parameters, watch its loss live, see the gate.

The job is the same one the API and `triage retrain start` run (router.application's Retraining over
tuning.jobs): its own process, one at a time, the training file plus every correction, evaluated against
the active version on the dev file and on held-out corrections, promoted only when the gate passes.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Label, ProgressBar, Static
from textual.worker import get_current_worker

from router.application import TuningJobPublic
from router.application.retraining import active_change_note, stage_line
from tui.widgets.loss_plot import LossPlot
from tui.widgets.tuning_form import TuningForm, form_fields

METRICS = (("exact_set_accuracy", "exact"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"))


class JobUpdate(Message):
    def __init__(self, job: TuningJobPublic | None, error: str | None = None) -> None:
        super().__init__()
        self.job, self.error = job, error


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def status_line(job: TuningJobPublic) -> str:
    p = job.progress
    if job.phase == "training" and stage_line(p):
        return f"job {job.id}: {stage_line(p)}"
    if job.phase == "training" and p.get("step"):
        return (f"job {job.id}: epoch {p.get('epoch')}/{p.get('epochs')} · update {p['step']}/{p.get('steps_total')}"
                f" · loss {p.get('loss', 0):.3f} · eta {p.get('eta_s') or 0:.0f}s")
    return f"job {job.id} {job.state}: {job.phase}…"


class RetrainPane(Horizontal):
    """Form on the left; progress, live loss curve and the gate's comparison on the right."""

    BINDINGS = [
        Binding("ctrl+s", "start", "Start retrain"),
        Binding("ctrl+b", "stop", "Stop"),
    ]

    def __init__(self, session, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.job: TuningJobPublic | None = None  # the job this pane started or follows

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.state in ("queued", "running")

    def compose(self) -> ComposeResult:
        defaults, start = self._job_defaults()
        with VerticalScroll(id="retrain-form-col"):
            yield TuningForm(defaults=defaults, id="tuning-form")
            yield Static("", id="retrain-errors")
            with Horizontal(id="retrain-buttons"):
                yield Button("Start", id="retrain-start", variant="primary", compact=True)
                yield Button("Stop", id="retrain-stop", variant="error", compact=True, disabled=True)
        with Vertical(id="retrain-live"):
            yield ProgressBar(total=1, id="retrain-progress", show_eta=False)
            hint = f"Ctrl+S: start a retrain ({start})" if start else "Ctrl+S: start a retrain"
            yield Label(hint, id="retrain-status")
            yield LossPlot(id="loss-plot")
            yield DataTable(id="retrain-eval", cursor_type="none", zebra_stripes=True)

    def _job_defaults(self):
        """What a job would run with by default, and where it would start (it continues the active late prompt);
        (None, "") when that cannot be read: the fields' own defaults."""
        try:
            return self.session.core.retraining.job_defaults()
        except Exception:  # noqa: BLE001 - the database is down: the form still opens, a start reports the error
            return None, ""

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
        self._set_running(True)
        self.query_one(LossPlot).reset()
        self.query_one("#retrain-eval", DataTable).clear(columns=True)
        self.query_one("#retrain-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#retrain-status", Label).update("Starting the job…")
        shown = set(form_fields())  # the form's own fields only: the rest (teacher weight, ...) stay the job's
        self.follow_job({k: v for k, v in config.model_dump(mode="json").items() if k in shown})

    @on(Button.Pressed, "#retrain-stop")
    def action_stop(self) -> None:
        if self.running:
            self.query_one("#retrain-status", Label).update("Stopping after this step…")
            self.cancel_job(self.job.id)

    def _set_running(self, running: bool) -> None:
        self.query_one("#retrain-start", Button).disabled = running
        self.query_one("#retrain-stop", Button).disabled = not running

    @work(thread=True, group="retrain-cancel")
    def cancel_job(self, job_id: int) -> None:
        try:
            self.session.core.retraining.cancel(job_id)
        except Exception as exc:  # e.g. it ended a moment ago: shown, the follower reports the end
            self.app.call_from_thread(self.notify, str(exc), title="Retrain", severity="warning")

    @work(thread=True, exclusive=True, group="retrain", name="retrain")
    def follow_job(self, parameters: dict) -> None:
        """Start the job, then post its state each time it changes until it ends."""
        worker = get_current_worker()
        retraining = self.session.core.retraining
        try:
            job = retraining.start(parameters, who=f"console:{self.session.who}")
            self.post_message(JobUpdate(job))
            for job in retraining.follow(job.id, with_curve=True, should_stop=lambda: worker.is_cancelled):
                self.post_message(JobUpdate(job))
        except Exception as exc:  # refused (another job runs, bad parameters) or the database failed: shown
            self.post_message(JobUpdate(None, str(exc) or type(exc).__name__))
            return
        if job.state == "succeeded" and job.result.get("promoted"):
            self.session.core.registry.sync()  # serve the promoted version here at once

    # -- updates from the worker ------------------------------------------------
    def on_job_update(self, message: JobUpdate) -> None:
        if message.job is None:
            self._set_running(False)
            self.query_one("#retrain-status", Label).update(f"Not started: {message.error}")
            self.notify(message.error or "failed", title="Retrain", severity="error")
            return
        self.job = job = message.job
        p = job.progress
        self.query_one(LossPlot).show(p.get("loss_curve") or [], p.get("epochs_done") or [], p.get("steps_total"),
                                      p.get("epochs"))
        if p.get("steps_total"):
            self.query_one("#retrain-progress", ProgressBar).update(total=p["steps_total"], progress=p.get("step", 0))
        self.query_one("#retrain-status", Label).update(status_line(job))
        if not self.running:
            self._finished(job)

    def _finished(self, job: TuningJobPublic) -> None:
        self._set_running(False)
        status = self.query_one("#retrain-status", Label)
        if job.state != "succeeded":
            status.update(f"Retrain {job.state}: {job.error or 'stopped'}; nothing was registered")
            self.notify(job.error or job.state, title="Retrain", severity="warning")
            return
        result = job.result
        where = "active and serving" if result.get("promoted") else "a candidate: promote it on the Models tab (m)"
        note = active_change_note(result)
        status.update(f"Saved {result.get('version')}; it is {where}" + (f". Note: {note}" if note else ""))
        self.show_gate(result.get("gate") or {})
        self.post_message(self.Finished(job))

    class Finished(Message):
        def __init__(self, job: TuningJobPublic) -> None:
            super().__init__()
            self.job = job

    def show_gate(self, gate: dict) -> None:
        """Each evaluation set's scores, new vs active, and the gate's verdict."""
        table = self.query_one("#retrain-eval", DataTable)
        table.clear(columns=True)
        table.add_columns("set (n)", *[f"{label} new / active" for _, label in METRICS], "gated")
        for name, scores in (gate.get("sets") or {}).items():
            new, active = scores.get("candidate") or {}, scores.get("active") or {}
            cells = [f"{fmt(new.get(key))} / {fmt(active.get(key))}" for key, _ in METRICS]
            table.add_row(f"{name} ({scores.get('n', 0)})", *cells, "yes" if scores.get("gated") else "no", key=name)
        verdict = "promoted" if gate.get("promote") else "stays a candidate"
        reasons = "; ".join(gate.get("reasons") or [])
        table.add_row("gate", verdict, reasons or "-", "", "", key="gate")
