"""`triage console` refuses to start on a database without the schema, saying how to fix it."""

from __future__ import annotations

from click.testing import CliRunner

from router.cli import cli


def test_console_without_database_schema_says_to_upgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "fresh"))
    result = CliRunner().invoke(cli, ["console"])
    assert result.exit_code == 1
    assert "triage: error:" in result.output and "triage db upgrade" in result.output
