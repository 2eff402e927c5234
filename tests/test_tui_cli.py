"""`triage console` refuses a database it cannot use, saying how to fix it (a brand-new data directory is not
refused: the console in tmux, tests/test_tui_tmux.py, starts on one)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import text

from router.cli import cli
from router.db import make_engine, upgrade
from router.settings import Settings


def test_console_on_a_database_newer_than_this_triage_says_to_upgrade_triage():
    engine = make_engine(Settings().resolved_database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version (version, description, applied_at) "
                          "VALUES (99, 'from the future', CURRENT_TIMESTAMP)"))
    result = CliRunner().invoke(cli, ["console"])
    assert result.exit_code == 1
    assert "triage: error:" in result.output and "newer than this triage" in result.output
    assert "the console saves tickets and corrections there" in result.output
