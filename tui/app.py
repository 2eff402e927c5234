"""The triage console app and its factory, shared by `triage console` and the tests."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from router.application import Application, RouterService
from router.settings import Settings
from tui.commands import ConsoleCommands
from tui.session import ConsoleSession

STYLES = Path(__file__).parent / "styles"


class TriageConsole(App):
    """Agent and supervisor views over one application core (routing, store, registry, retraining)."""

    TITLE = "triage console"
    CSS_PATH = [STYLES / "console.tcss", STYLES / "agent.tcss", STYLES / "supervisor.tcss"]
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("f2", "show_agent", "Agent"),
        Binding("f3", "show_supervisor", "Supervisor"),
        Binding("ctrl+t", "toggle_dark", "Theme", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, core: Application, *, supervisor: bool = False, supervisor_key: str | None = None,
                 theme: str | None = None) -> None:
        super().__init__()
        self.core = core
        self.settings = core.settings
        self.session = ConsoleSession(core)
        self.start_supervisor = supervisor
        self.supervisor_key = supervisor_key
        self.supervisor_unlocked = False
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        from tui.screens.agent import AgentScreen

        self.add_mode("agent", lambda: AgentScreen(self.session))
        self.add_mode("supervisor", self._supervisor_screen)
        if self.start_supervisor:
            self.action_show_supervisor()
        else:
            self.switch_mode("agent")
        self.warm_up()
        if self.settings.model_poll_seconds:
            self.set_interval(self.settings.model_poll_seconds, self.follow_registry)

    def _supervisor_screen(self):
        from tui.screens.supervisor import SupervisorScreen

        return SupervisorScreen(self.session)

    @work(thread=True, exclusive=True, group="load", name="load model")
    def warm_up(self) -> None:
        """Serve the registry's active version and load the models off the UI thread."""
        try:
            problem = self.core.load()
        except Exception as exc:  # the agent sees why routing will fail
            self.call_from_thread(self.notify, str(exc), title="Model not loaded", severity="error", timeout=15)
            return
        if problem:  # zero-shot and multi-shot still work
            self.call_from_thread(self.notify, problem, title="Tuned strategy unavailable", severity="warning",
                                  timeout=15)

    @work(thread=True, exclusive=True, group="registry", name="follow registry")
    def follow_registry(self) -> None:
        """Promotes made elsewhere (API, CLI, another console) reach this console too."""
        if not self.core.service.loaded:
            return
        try:
            version = self.core.registry.sync()
        except Exception as exc:  # keep serving the current version
            self.call_from_thread(self.notify, str(exc), title="Could not switch model", severity="warning")
            return
        if version:
            self.call_from_thread(self.notify, f"Now serving model {version}", title="Model")

    # -- views ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers the view you are not in."""
        if action == "show_agent":
            return self.current_mode != "agent"
        if action == "show_supervisor":
            return self.current_mode != "supervisor"
        return True

    def action_show_agent(self) -> None:
        self.switch_mode("agent")
        self.refresh_bindings()

    def action_show_supervisor(self) -> None:
        check = self.core.is_supervisor_key
        if self.supervisor_unlocked:
            self._open_supervisor()
            return
        if self.supervisor_key is not None and check(self.supervisor_key):
            self.supervisor_unlocked = True
            self._open_supervisor()
            return
        if self.supervisor_key is not None:
            self.notify("The key given with --key is not a live supervisor key", title="Supervisor", severity="error")
            self.supervisor_key = None
        from tui.screens.key_prompt import KeyPrompt

        def unlocked(ok: bool | None) -> None:
            if ok:
                self.supervisor_unlocked = True
                self._open_supervisor()
            elif self.current_mode is None or self.current_mode == "_default":
                self.switch_mode("agent")

        self.push_screen(KeyPrompt(check), unlocked)

    def _open_supervisor(self) -> None:
        self.switch_mode("supervisor")
        self.refresh_bindings()

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"


def create_app(settings: Settings, service: RouterService | None = None, store=None, *, core: Application | None = None,
               supervisor: bool = False, supervisor_key: str | None = None, theme: str | None = None) -> TriageConsole:
    """Build the console over `core` (the CLI's application core), or over one built here: tests pass a tiny
    service and a temp store (its database is the one the console uses)."""
    if core is None:
        core = Application(settings, service=service, database=store.engine if store is not None else None)
    return TriageConsole(core, supervisor=supervisor, supervisor_key=supervisor_key, theme=theme)
