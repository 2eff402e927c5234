"""triage route: route one complaint (or compare every strategy on it)."""

from __future__ import annotations

import json
import sys

import click

from router.cli.common import get_application
from router.results import STRATEGIES, Routing


def _read_text(words: tuple[str, ...]) -> str:
    if not words or words == ("-",):
        if sys.stdin.isatty() and not words:
            raise click.UsageError("give the complaint as an argument, or '-' to read it from standard input")
        return sys.stdin.read()
    return " ".join(words)


def _route_file(service, source, output, **options) -> None:
    from router.bulk import route_backlog

    summary = route_backlog(service, source, output, **options)
    resumed = f", {summary.resumed} already in {output}" if summary.resumed else ""
    workers = f" with {options['workers']} workers" if options.get("workers", 1) > 1 else ""
    skipped = f", {len(summary.bad)} bad line(s) skipped" if summary.bad else ""
    click.echo(f"routed {summary.routed} complaints in {summary.seconds:.1f} s ({summary.rate:.1f}/s){workers}{resumed}"
               f"{skipped}", err=True)


class ModelRef(click.ParamType):
    """An artifact directory, or a version name under the models directory or the shipped artifacts."""

    name = "DIR|VERSION"

    def convert(self, value, param, ctx):
        from router.cli.common import get_settings
        from router.settings import SHIPPED_ARTIFACTS
        from router.tuned_models import UnknownModel, resolve_artifact

        try:
            return resolve_artifact(value, [get_settings(ctx).models_dir, SHIPPED_ARTIFACTS])
        except UnknownModel as exc:
            self.fail(str(exc), param, ctx)


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
@click.option("--model", "model_path", type=ModelRef(), default=None,
              help="Tuned model for the tuned strategy: an artifact directory or a version name (default: the active one).")
@click.option("--input", "-i", "input_path", default=None,
              help="Route every complaint of this file (JSONL, CSV or text lines; '-' = standard input).")
@click.option("--output", "-o", "output_path", default="-", show_default=True,
              help="With --input: JSONL output, continued if it exists ('-' = standard output).")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "csv", "text"]), default="auto", show_default=True,
              help="With --input: the input's format (auto: by file name, else by its first line).")
@click.option("--column", default=None, help="With --input: the CSV column holding the complaint (default: text).")
@click.option("--id-column", default=None, help="With --input: the CSV column holding the id (default: id, if any).")
@click.option("--on-error", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="With --input: skip bad lines (each reported with its line number) or route nothing if any.")
@click.option("--batch-size", type=click.IntRange(1, 64), default=None, help="With --input: complaints per forward pass.")
@click.option("--quiet", "-q", is_flag=True, help="With --input: no progress bar.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --input: routing processes, each with its own model and cores/N threads (for machines "
                   "with many cores; the output is the same).")
def route(text, strategy, shots, compare, as_json, rag, precedents, model_path, input_path, output_path, fmt, column,
          id_column, on_error, batch_size, quiet, workers):
    """Route a complaint to every department that must act.

    \b
    triage route "Where are the 2 extra sets of sheets that came with my order?"
    Warehouse, Packaging
    triage route --input backlog.jsonl --output routed.jsonl
    """
    if input_path is None and workers != 1:
        raise click.UsageError("--workers applies to --input (routing a file)")
    if input_path is not None:
        if text or compare or rag or precedents or as_json:
            raise click.UsageError("--input routes a file: give no complaint text, --compare, --json, --rag or --precedents")
        _route_file(get_application(tuned_model=model_path).service, input_path, output_path, fmt=fmt, column=column,
                    id_column=id_column, strategy=strategy, shots=shots, batch_size=batch_size, on_error=on_error,
                    progress=not quiet, workers=workers)
        return
    complaint = _read_text(text)
    core = get_application(tuned_model=model_path)
    if compare:
        results = core.compare(complaint, shots=shots, rag=rag, precedents=precedents)
        if as_json:
            click.echo(json.dumps({"strategies": [r.to_json() for r in results]}, indent=1))
        else:
            click.echo(comparison_table(results))
        return
    result = core.route(complaint, strategy, shots=shots, rag=rag, precedents=precedents)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
        return
    click.echo(result.label)
    for passage in result.passages:
        click.echo(f"  [{passage.score:.2f}] {passage.title} ({passage.origin}): {passage.snippet[:100]}", err=True)
