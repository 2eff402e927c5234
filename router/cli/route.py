"""triage route: route one complaint (or compare every strategy on it)."""

from __future__ import annotations

import json
import sys

import click

from router.cli.common import get_service
from router.results import STRATEGIES, Routing


def _read_text(words: tuple[str, ...]) -> str:
    if not words or words == ("-",):
        if sys.stdin.isatty() and not words:
            raise click.UsageError("give the complaint as an argument, or '-' to read it from standard input")
        return sys.stdin.read()
    return " ".join(words)


def comparison_table(routings: list[Routing]) -> str:
    header = f"{'strategy':<14} {'departments':<44} {'in tok':>7} {'gen tok':>8} {'latency':>10}"
    lines = [header, "-" * len(header)]
    for r in routings:
        name = r.strategy + ("+rag" if r.rag else "")
        lines.append(f"{name:<14} {r.label:<44} {r.input_tokens:>7} {r.generated_tokens:>8} {r.latency_ms:>8.0f}ms")
    return "\n".join(lines)


@click.command()
@click.argument("text", nargs=-1)
@click.option("--strategy", "-s", type=click.Choice(STRATEGIES), default=None, help="Default: tuned (TRIAGE_DEFAULT_STRATEGY).")
@click.option("--shots", type=click.IntRange(0, 32), default=None, help="Examples in the multi-shot prompt (default 3).")
@click.option("--compare", is_flag=True, help="Run every strategy side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a list of them with --compare).")
@click.option("--rag", is_flag=True, help="Ground the routing in retrieved policy passages.")
@click.option("--precedents", is_flag=True, help="Add the most similar labeled complaints to the prompt.")
@click.option("--model", "model_path", type=click.Path(exists=True, file_okay=False), default=None,
              help="Soft-prompt artifact for the tuned strategy (default: the active one).")
def route(text, strategy, shots, compare, as_json, rag, precedents, model_path):
    """Route a complaint to every department that must act.

    \b
    triage route "Where are the 2 extra sets of sheets that came with my order?"
    Warehouse, Packaging
    """
    complaint = _read_text(text)
    service = get_service(tuned_path=model_path)
    if compare:
        results = [service.route(complaint, s, shots=shots, rag=rag, precedents=precedents) for s in STRATEGIES]
        if as_json:
            click.echo(json.dumps({"strategies": [r.to_json() for r in results]}, indent=1))
        else:
            click.echo(comparison_table(results))
        return
    result = service.route(complaint, strategy, shots=shots, rag=rag, precedents=precedents)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    click.echo(result.label)
    for passage in result.passages:
        click.echo(f"  [{passage.score:.2f}] {passage.title} ({passage.doc_id}): {passage.snippet[:100]}", err=True)
