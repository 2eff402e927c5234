"""The seven departments as large coloured badges: the model's choice, its confidence, the agent's correction."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Static

from router.departments import DEPARTMENTS
from router.results import Routing


def css_name(department: str) -> str:
    return "dept-" + department.lower()


class DepartmentBadge(Static):
    """One department: name, confidence and key; coloured when it is in the routing."""

    def __init__(self, department: str, key: int) -> None:
        super().__init__(id=css_name(department), classes=f"badge {css_name(department)}")
        self.department, self.key = department, key
        self.confidence: float | None = None
        self.routed = False
        self.selected = False

    def set_state(self, *, routed: bool, selected: bool, confidence: float | None) -> None:
        self.routed, self.selected, self.confidence = routed, selected, confidence
        self.set_class(selected, "-selected")
        self.set_class(routed and not selected, "-removed")
        self.set_class(selected and not routed, "-added")
        self.refresh()

    def render(self) -> str:
        conf = "" if self.confidence is None else f"{self.confidence:.0%}"
        mark = "+added" if self.selected and not self.routed else ("removed" if self.routed and not self.selected else "")
        return f"{self.department}\n{self.key}  {conf}\n{mark}"

    def on_click(self) -> None:
        self.post_message(DepartmentBoard.Toggle(self.key))


class DepartmentBoard(Horizontal):
    """All seven badges; the agent toggles departments with keys 1-7 or a click."""

    can_focus = True

    class Toggle(Message):
        def __init__(self, key: int) -> None:
            super().__init__()
            self.key = key

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.routed: list[str] = []
        self.confidence: dict[str, float] = {}
        self.selection: set[str] = set()
        self.routing: Routing | None = None

    def compose(self) -> ComposeResult:
        for index, name in enumerate(DEPARTMENTS, start=1):
            yield DepartmentBadge(name, index)

    def show(self, routing: Routing | None, selection: list[str] | None = None) -> None:
        """Show a routing; the selection starts as the model's departments unless given."""
        self.routing = routing
        self.show_labels(routing.departments if routing else [], routing.confidence if routing else {}, selection)

    def show_labels(self, routed: list[str], confidence: dict[str, float], selection: list[str] | None = None) -> None:
        """Show departments chosen by a model (with confidences) and the agent's current selection."""
        self.routed, self.confidence = list(routed), dict(confidence)
        self.selection = set(selection if selection is not None else routed)
        self._paint()

    def toggle(self, department: str) -> None:
        self.selection ^= {department}
        self._paint()

    @property
    def chosen(self) -> list[str]:
        return [d for d in DEPARTMENTS if d in self.selection]

    def _paint(self) -> None:
        for badge in self.query(DepartmentBadge):
            badge.set_state(routed=badge.department in self.routed, selected=badge.department in self.selection,
                            confidence=self.confidence.get(badge.department))
