"""The `triage` command. Each subcommand lives in a small module of its own."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from router.cli.common import TriageGroup

# (module, command attribute) — each module holds one command or group.
COMMANDS = [
    ("router.cli.route", "route"),
    ("router.cli.data", "data"),
    ("router.cli.tune", "tune"),
    ("router.cli.ensemble", "ensemble"),
    ("router.cli.evaluate", "eval_command"),
    ("router.cli.rag", "rag"),
    ("router.cli.serve", "serve"),
    ("router.cli.db", "db"),
    ("router.cli.keys", "keys"),
    ("router.cli.console", "console"),
    ("router.cli.models", "models"),
    ("router.cli.retrain", "retrain"),
    ("router.cli.bench", "bench"),
]


@click.group(cls=TriageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """triage: route customer complaints to every department that must act."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


for module_name, attribute in COMMANDS:  # a command module that does not import is an error, never a missing command
    cli.add_command(getattr(importlib.import_module(module_name), attribute))


def main() -> None:
    cli(prog_name="triage")


if __name__ == "__main__":
    sys.exit(main())
