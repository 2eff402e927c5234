"""Every command module under router/cli/ is a `triage` command; none can go missing without an error."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

import router.cli as cli_package
from router.cli import COMMANDS, cli

SHARED = {"__init__", "common"}  # plumbing, not commands


def test_every_command_module_is_registered():
    modules = {p.stem for p in Path(cli_package.__file__).parent.glob("*.py")} - SHARED
    assert {name.rsplit(".", 1)[1] for name, _ in COMMANDS} == modules, "a module in router/cli/ is not in COMMANDS"
    for module_name, attribute in COMMANDS:
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command) and cli.commands[command.name] is command, module_name
