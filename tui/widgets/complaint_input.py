"""The complaint text area: Enter routes, Ctrl+J inserts a new line."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class ComplaintInput(TextArea):
    """A multi-line complaint box where Enter submits (paste keeps its new lines)."""

    BINDINGS = [
        Binding("enter", "submit", "Route", priority=False),
        Binding("ctrl+j", "newline", "New line"),
        Binding("escape", "leave", "Results", show=False),
    ]

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         placeholder="Type or paste a complaint, then Enter to route it", **kwargs)

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea._on_key (Textual dispatches down the MRO); stopping
        # the default here keeps Enter from inserting a line break.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()
        elif event.key in ("ctrl+j", "newline"):
            event.stop()
            event.prevent_default()
            self.action_newline()

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self.text))

    def action_newline(self) -> None:
        if not self.read_only:
            self.insert("\n")

    def action_leave(self) -> None:
        self.screen.focus_next()
