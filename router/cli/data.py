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


@data.command("build")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="JSONL file to write.")
@click.option("--base", "base_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Training file the corrections apply to (default: TRIAGE_SHOTS_FILE or data/complaints.jsonl).")
@click.option("--provenance", "provenance_path", type=click.Path(dir_okay=False), default=None,
              help="Also write where each example comes from (base file line or correction), one JSON line each.")
def build(out_path, base_path, provenance_path):
    """Write the set the next retrain trains on: the training file plus every correction.

    The latest correction of a complaint wins and replaces the training file's label;
    ~20% of the new corrections are held out for evaluation (not written). Prints the
    distribution, with a warning when the mix drifts toward single-department answers.
    """
    from router.cli.common import get_engine
    from router.cli.db import db_errors
    from router.dataset import write_examples
    from router.db.engine import session_scope
    from tuning.assemble import assemble_from_store, format_report, write_provenance

    settings = get_settings()
    with db_errors():
        engine = get_engine()
        with session_scope(engine) as session:
            assembled, base = assemble_from_store(settings, session, base_path)
    write_examples(assembled.examples, out_path)
    if provenance_path:
        write_provenance(assembled, provenance_path)
    report, _warnings = format_report(assembled, base)
    click.echo(report)
    click.echo(f"\nwrote {len(assembled.examples)} examples to {out_path}")
