"""Shared pieces of the console tests: a migrated temp SQLite store and Pilot steps."""

from __future__ import annotations

from router.db import make_engine, upgrade
from router.store import Store


def make_store(settings) -> Store:
    """A real SQLite store under the test's data dir, schema upgraded (the console's database in the tests)."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    return Store(engine)


async def settle(pilot) -> None:
    """Let every worker finish and the UI process what they posted."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def route(pilot, text: str) -> None:
    """Type a complaint like an agent (paste into the box) and press Enter."""
    box = pilot.app.screen.query_one("#complaint")
    box.focus()
    box.insert(text)
    await pilot.press("enter")
    await settle(pilot)
