"""The supervisor's screen: review queue, training data, retrain, model versions."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from router.departments import DEPARTMENTS
from tui.panes.models import ModelsPane
from tui.panes.retrain import RetrainPane
from tui.panes.review import ReviewPane
from tui.panes.training_data import TrainingDataPane
from tui.session import ConsoleSession

TABS = {"review": "Review", "data": "Training data", "retrain": "Retrain", "models": "Models"}


class SupervisorScreen(Screen):
    """Four tabs; letters switch tabs when no text field has focus."""

    BINDINGS = [
        Binding("r", "tab('review')", "Review", show=False),
        Binding("d", "tab('data')", "Data", show=False),
        Binding("t", "tab('retrain')", "Retrain", show=False),
        Binding("m", "tab('models')", "Models", show=False),
    ]

    PALETTE = [
        ("Review queue", "tab('review')", "Unsure routings and untrained corrections (r)"),
        ("Training data distribution", "tab('data')", "Label sets, alone vs paired, pairs matrix (d)"),
        ("Retrain form", "tab('retrain')", "Retrain the tuned model on the corrections (t)"),
        ("Model versions", "tab('models')", "Promote and roll back (m)"),
        ("Reload review queue", "pane('review', 'reload')", "Read the queue from the database again"),
        *[(f"Review: toggle {name}", f"pane('review', 'toggle({i})')", f"Add or remove {name} on the selected ticket ({i})")
          for i, name in enumerate(DEPARTMENTS, 1)],
        ("Save review correction", "pane('review', 'save')", "Store the selected ticket's departments (s)"),
        ("Accept reviewed routing", "pane('review', 'accept')", "The selected ticket was routed right"),
        ("Reload training data", "pane('data', 'reload')", "Recount the training set and pending corrections"),
        ("Start retrain", "pane('retrain', 'start')", "Train with the form's parameters (Ctrl+S)"),
        ("Stop retrain", "pane('retrain', 'stop')", "Stop the running retrain; nothing is saved (Ctrl+B)"),
        ("Promote selected model", "pane('models', 'promote')", "Make the selected version active (p)"),
        ("Roll back active model", "pane('models', 'rollback')", "Re-activate the version before it (b)"),
        ("Reload model versions", "pane('models', 'reload')", "Read the versions again"),
    ]

    def __init__(self, session: ConsoleSession, **kwargs) -> None:
        super().__init__(**kwargs)
        self.session = session

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="☎")
        with TabbedContent(id="supervisor-tabs", initial="review"):
            with TabPane(TABS["review"], id="review"):
                yield ReviewPane(self.session, id="review-pane")
            with TabPane(TABS["data"], id="data"):
                yield TrainingDataPane(self.session, id="data-pane")
            with TabPane(TABS["retrain"], id="retrain"):
                yield RetrainPane(self.session, id="retrain-pane")
            with TabPane(TABS["models"], id="models"):
                yield ModelsPane(self.session, id="models-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "triage console"
        self.sub_title = "supervisor"
        self.call_after_refresh(self.focus_tab, "review")

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.focus_tab(tab)

    def focus_tab(self, tab: str) -> None:
        pane = self.query_one(f"#{tab}-pane")
        target = next((w for w in pane.query("*") if w.focusable), None)
        if target is not None:
            target.focus()

    async def action_pane(self, tab: str, action: str) -> None:
        self.action_tab(tab)
        await self.query_one(f"#{tab}-pane").run_action(action)

    @on(TabbedContent.TabActivated)
    def tab_shown(self, event: TabbedContent.TabActivated) -> None:
        """Lists are read again whenever their tab is shown (the API may have changed them)."""
        if event.pane.id in ("review", "data", "models"):
            self.query_one(f"#{event.pane.id}-pane").action_reload()
        self.focus_tab(event.pane.id)

    @on(RetrainPane.Finished)
    def retrained(self, event: RetrainPane.Finished) -> None:
        self.query_one("#models-pane", ModelsPane).action_reload()
        self.query_one("#data-pane", TrainingDataPane).action_reload()
        self.query_one("#review-pane", ReviewPane).action_reload()
