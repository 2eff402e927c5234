"""triage models: the registry of tuned model versions (register, list, promote, roll back)."""

from __future__ import annotations

import getpass
import json

import click

from router.cli.common import get_application
from router.cli.db import db_errors


def _who(who: str | None) -> str:
    return who or f"cli:{getpass.getuser()}"


@click.group()
def models() -> None:
    """Model versions. A running server picks up promotions within TRIAGE_MODEL_POLL_SECONDS."""


@models.command()
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--metrics", "metrics_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON file of evaluation metrics to store with it.")
def register(artifact: str, metrics_file: str | None) -> None:
    """Add a tuned artifact (LoRA adapter, soft prompt or prompt ensemble) as a candidate version (named by its triage.json version)."""
    metrics = json.loads(open(metrics_file, encoding="utf-8").read()) if metrics_file else None
    with db_errors():
        row = get_application().registry.register(artifact, metrics=metrics)
    click.echo(f"registered {row.version} ({row.status}) from {row.artifact_path}")


@models.command(name="list")
def list_() -> None:
    """Every version, newest first, with its evaluation scores (vs: exact-accuracy change over the model it was
    compared with when it was trained)."""
    with db_errors():
        rows = get_application().registry.versions()
    if not rows:
        click.echo("no model versions registered: triage models register ARTIFACT_DIR", err=True)
        return
    click.echo(f"{'version':<28} {'status':<10} {'exact':>6} {'macroF1':>7} {'vs':>7}  {'promoted by':<16} "
               f"{'promoted at':<20} path")
    for r in rows:
        at = r.promoted_at.isoformat(timespec="seconds") if r.promoted_at else "-"
        exact, macro, versus = _scores(r.metrics or {})
        click.echo(f"{r.version:<28} {r.status:<10} {exact:>6} {macro:>7} {versus:>7}  {r.promoted_by or '-':<16} "
                   f"{at:<20} {r.artifact_path}")


def _scores(metrics: dict) -> tuple[str, str, str]:
    """Exact-set accuracy and macro F1 on the evaluation set, and the exact-accuracy change vs the model it was
    compared with (when it was evaluated against one)."""
    def fmt(value) -> str:
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    exact, other = metrics.get("exact_set_accuracy"), (metrics.get("compared_with") or {}).get("exact_set_accuracy")
    versus = f"{exact - other:+.3f}" if isinstance(exact, (int, float)) and isinstance(other, (int, float)) else "-"
    return fmt(exact), fmt(metrics.get("macro_f1")), versus


@models.command()
@click.argument("version")
@click.option("--who", default=None, help="Recorded as promoted_by (default: cli:<user>).")
def promote(version: str, who: str | None) -> None:
    """Make VERSION the active one (running servers switch within the poll interval)."""
    with db_errors():  # the artifact is checked first: nothing changes if it is no longer one
        row = get_application().registry.promote(version, who=_who(who))
    click.echo(f"{row.version} is active (promoted by {row.promoted_by})")


@models.command()
@click.argument("version")
@click.option("--who", default=None, help="Recorded on the re-activated version (default: cli:<user>).")
def rollback(version: str, who: str | None) -> None:
    """Retire the active VERSION and re-activate the one before it."""
    with db_errors():
        row = get_application().registry.rollback(version, who=_who(who))
    click.echo(f"rolled back {version}; {row.version} is active again")
