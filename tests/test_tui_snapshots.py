"""SVG snapshots of the console's main screens at 80x24 (update with --snapshot-update).

Latencies are frozen to 0 ms (the engine's clock is stopped) so the pictures do not
change from run to run; everything else shown is computed for real on the tiny model.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import router.engine
from router.security import create_key
from tests.tui_helpers import make_store, route, settle
from tui.app import create_app

COMPLAINT = "Only 3 of the 4 chairs were in the delivery and the box was crushed."


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(router.engine, "time", SimpleNamespace(perf_counter=lambda: 0.0))


@pytest.fixture
def console(tiny_settings, tiny_service, frozen_clock):
    store = make_store(tiny_settings)
    with store.session() as s:
        key = create_key(s, "boss", "supervisor")[1]

    def build(**kwargs):
        return create_app(tiny_settings, tiny_service, store, supervisor_key=key, **kwargs)

    return build


def test_agent_after_routing(console, snap_compare):
    async def run_before(pilot):
        await route(pilot, COMPLAINT)

    assert snap_compare(console(), run_before=run_before, terminal_size=(80, 24))


def test_agent_correcting_in_light_theme(console, snap_compare):
    async def run_before(pilot):
        await route(pilot, COMPLAINT)
        await pilot.press("6", "r", *"box crushed")

    assert snap_compare(console(theme="textual-light"), run_before=run_before, terminal_size=(80, 24))


def test_supervisor_review_queue(console, snap_compare):
    async def run_before(pilot):
        await route(pilot, COMPLAINT)
        await pilot.press("f3")
        await settle(pilot)

    assert snap_compare(console(), run_before=run_before, terminal_size=(80, 24))


def test_supervisor_training_data(console, snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)

    assert snap_compare(console(supervisor=True), run_before=run_before, terminal_size=(80, 24))


def test_supervisor_retrain_form(console, snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)

    assert snap_compare(console(supervisor=True), run_before=run_before, terminal_size=(80, 24))
