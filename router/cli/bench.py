"""triage bench: speed, tokens and memory of every strategy on the real model."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from router.cli.common import get_service, get_settings
from router.dataset import load_examples
from router.results import STRATEGIES


@click.command()
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default="data/dev.jsonl", show_default=True)
@click.option("--n", "n", type=click.IntRange(1), default=100, show_default=True, help="How many complaints.")
@click.option("--strategy", "-s", "strategies", multiple=True, type=click.Choice(STRATEGIES),
              help="Repeatable; default all three.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--rag/--no-rag", default=False, help="Also measure each strategy with RAG.")
@click.option("--cold/--no-cold", default=True, help="Measure cold start in fresh processes (with and without cache).")
@click.option("--reference/--no-reference", default=True, help="Time the plain peft + generate() path too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="JSON file (default <data_dir>/bench/<time>.json).")
def bench(data_path, n, strategies, batch_size, rag, cold, reference, as_json, out_path):
    """Latency p50/p99, batched throughput, tokens, peak memory, cold start; the plain PEFT path as reference."""
    from tuning.bench import dump, format_report, run_benchmark

    settings = get_settings()
    examples = load_examples(data_path, settings.max_input_chars)[:n]
    service = get_service()
    log = (lambda msg: click.echo(msg, err=True))
    result = run_benchmark(service, examples, strategies=list(strategies) or list(STRATEGIES),
                           batch_size=batch_size, rag=rag, cold=cold, reference=reference, log=log)
    out = Path(out_path) if out_path else settings.data_dir / "bench" / f"{datetime.now():%Y%m%d-%H%M%S}.json"
    dump(result, out)
    click.echo(json.dumps(result, indent=1) if as_json else format_report(result))
    if not as_json:
        click.echo(f"written: {out}", err=True)
