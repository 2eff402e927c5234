"""Keyboard, palette and mouse: every console action has a palette entry, and the entries work."""

from __future__ import annotations

import pytest

from router.security import create_key
from tests.tui_helpers import make_store, route, settle
from tui.app import TriageConsole, create_app
from tui.commands import APP_PALETTE
from tui.panes.models import ModelsPane
from tui.panes.retrain import RetrainPane
from tui.panes.review import ReviewPane
from tui.screens.agent import AgentScreen
from tui.screens.supervisor import SupervisorScreen
from tui.widgets.department_board import DepartmentBadge

pytestmark = pytest.mark.anyio


def actions(bindings) -> set[str]:
    return {b.action for b in bindings}


def test_every_key_binding_has_a_palette_entry():
    agent = {action for _, action, _ in AgentScreen.PALETTE}
    assert actions(AgentScreen.BINDINGS) - agent == set()
    supervisor = {action for _, action, _ in SupervisorScreen.PALETTE}
    assert actions(SupervisorScreen.BINDINGS) - supervisor == set()
    for tab, pane in (("review", ReviewPane), ("retrain", RetrainPane), ("models", ModelsPane)):
        missing = {a for a in actions(pane.BINDINGS) if f"pane('{tab}', '{a}')" not in supervisor}
        assert missing == set(), f"{pane.__name__} keys without a palette entry: {missing}"
    app_actions = {action for _, action, _ in APP_PALETTE}
    assert {f"app.{a}" for a in actions(TriageConsole.BINDINGS)} - app_actions == set()


async def palette(pilot, title: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*title)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await settle(pilot)


async def test_palette_accepts_a_routing_and_switches_views(tiny_settings, tiny_service):
    store = make_store(tiny_settings)
    with store.session() as s:
        key = create_key(s, "boss", "supervisor")[1]
    app = create_app(tiny_settings, tiny_service, store, supervisor_key=key)
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, "The agent was rude and hung up on me.")
        await palette(pilot, "accept r")
        assert app.session.tickets[0].status == "accepted"
        await palette(pilot, "to superv")
        assert isinstance(app.screen, SupervisorScreen)
        await palette(pilot, "model vers")
        assert app.screen.query_one("#supervisor-tabs").active == "models"
        await palette(pilot, "dark theme")
        assert not app.current_theme.dark


async def test_clicking_a_badge_toggles_its_department(tiny_settings, tiny_service):
    app = create_app(tiny_settings, tiny_service, make_store(tiny_settings))
    async with app.run_test(size=(80, 24)) as pilot:
        await route(pilot, "The agent was rude and hung up on me.")
        badge = app.screen.query_one("#dept-marketing", DepartmentBadge)
        before = badge.has_class("-selected")
        await pilot.click("#dept-marketing")
        await pilot.pause()
        assert badge.has_class("-selected") != before
        assert ("Marketing" in app.screen.query_one("#board").chosen) != before
