"""triage data: check a labeled JSONL file and show its label distribution."""

from __future__ import annotations

import json

import click

from router.cli.common import get_settings
from router.dataset import check_file
from router.report import format_distribution, label_distribution


@click.group()
def data():
    """Labeled complaint files (watsonx JSONL: {"input": ..., "output": ...})."""


@data.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print problems and distribution as JSON.")
def check(path, as_json):
    """Validate every line (with line numbers) and print the label distribution.

    Exit status 1 when any line is invalid.
    """
    settings = get_settings()
    result = check_file(path, settings.max_input_chars)
    dist = label_distribution(result.examples)
    if as_json:
        click.echo(json.dumps({
            "path": str(result.path), "valid": result.ok, "examples": len(result.examples),
            "errors": [{"line": p.line, "message": p.message} for p in result.errors],
            "warnings": [{"line": p.line, "message": p.message} for p in result.warnings],
            "distribution": dist.to_json(),
        }, indent=1))
    else:
        for problem in result.problems:
            click.echo(f"{path}:{problem.line}: {problem.severity}: {problem.message}", err=True)
        click.echo(format_distribution(dist))
        verdict = "OK" if result.ok else f"{len(result.errors)} invalid line(s)"
        click.echo(f"\n{path}: {len(result.examples)} valid examples; {verdict}")
    if not result.ok:
        raise SystemExit(1)
