"""Asks for a supervisor API key before the supervisor view opens."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class KeyPrompt(ModalScreen[bool]):
    """Dismissed with True once a valid supervisor key is typed; Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, check: Callable[[str], bool]) -> None:
        super().__init__()
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="key-dialog"):
            yield Label("[b]Supervisor key[/b]")
            yield Static("The supervisor view needs a supervisor API key "
                         "(create one with `triage keys create NAME --role supervisor`).", classes="hint")
            yield Input(placeholder="trk_…", password=True, id="key-input")
            yield Static("", id="key-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.check(event.value.strip()):
            self.dismiss(True)
        else:
            self.query_one("#key-error", Static).update("[b red]Not a valid supervisor key[/] (unknown, revoked, or not a supervisor's)")
            event.input.value = ""

    def action_cancel(self) -> None:
        self.dismiss(False)
