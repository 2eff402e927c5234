"""triage eval: metrics per strategy on a labeled file, with the classical baselines beside them."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from router.cli.common import get_service, get_settings
from router.dataset import load_examples
from router.results import STRATEGIES
from tuning.baselines import BASELINES


@click.command("eval")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default="data/dev.jsonl", show_default=True,
              help="Labeled file to evaluate on (never one the model or shots came from).")
@click.option("--strategy", "-s", "strategies", multiple=True,
              type=click.Choice([*STRATEGIES, *BASELINES]),
              help="Repeatable; default: all of them.")
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Training file for the baselines (default: the shots file, data/complaints.jsonl).")
@click.option("--model", "model_paths", type=click.Path(exists=True, file_okay=False), multiple=True,
              help="Tuned artifact for the tuned strategy; repeat it to compare methods in one table (method, "
              "parameters, size, training time, accuracy, tokens, latency, memory it holds) beside the baselines.")
@click.option("--shots", type=click.IntRange(0, 32), default=None, help="Examples in the multi-shot prompt.")
@click.option("--rag", is_flag=True, help="Also run each LM strategy with policy passages (and report retrieval recall).")
@click.option("--precedents", is_flag=True, help="Also run each LM strategy with retrieved labeled precedents.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N examples.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Complaints per forward pass; 1 measures single-call latency.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where metrics.json and f1.png go (default: <data_dir>/evals/<time>).")
@click.option("--plot/--no-plot", default=True, help="Draw the per-department F1 chart in the terminal.")
def eval_command(data_path, strategies, train_path, model_paths, shots, rag, precedents, limit, batch_size, as_json,
                 out_dir, plot):
    """Exact-set accuracy, per-department P/R/F1, micro/macro F1, tokens and latency per strategy."""
    from tuning.compare_methods import format_methods_table
    from tuning.evaluate import ALL_STRATEGIES, format_table
    from tuning.evaluation_run import compare_artifacts, evaluate_strategies, overlap_lines, write_run
    from tuning.plots import f1_terminal

    settings = get_settings()
    examples = load_examples(data_path, settings.max_input_chars)[:limit]
    train = load_examples(train_path or settings.resolved_shots_file, settings.max_input_chars)
    overlap = overlap_lines(examples, train)
    if overlap:
        raise click.ClickException(f"{data_path}: {len(overlap)} complaint(s) also in the training file (lines "
                                   f"{overlap[:10]}); evaluate on held-out complaints only")
    if len(model_paths) > 1:
        baselines = [s for s in (strategies or BASELINES) if s in BASELINES]
        result, reports = compare_artifacts(get_service(), model_paths, examples, train, baselines,
                                            batch_size=batch_size, progress=_bar)
        table = format_methods_table(reports)
    else:
        service = get_service(tuned_model=model_paths[0] if model_paths else None)
        result, reports = evaluate_strategies(service, examples, train, list(strategies) or list(ALL_STRATEGIES),
                                              rag=rag, precedents=precedents, shots=shots, batch_size=batch_size,
                                              progress=_bar)
        table = format_table(reports)
    out = Path(out_dir) if out_dir else settings.data_dir / "evals" / datetime.now().strftime("%Y%m%d-%H%M%S")
    written = write_run(result, reports, out, Path(data_path))
    if as_json:
        single = "strategies" in result and len(reports) == 1
        click.echo(json.dumps(next(iter(result["strategies"].values())) if single else {"data": str(data_path), **result},
                              indent=1))
        return
    click.echo(table)
    if result.get("retrieval"):
        click.echo(f"\nretrieval: {json.dumps(result['retrieval'])}")
    if plot and "strategies" in result:
        click.echo(f1_terminal(result["strategies"]))
    click.echo(f"\nwritten: {', '.join(str(p) for p in written)}")


@contextmanager
def _bar(label: str, total: int):
    with click.progressbar(length=total, label=f"{label:<22}", file=click.get_text_stream("stderr")) as bar:
        yield lambda done, _total: bar.update(done - bar.pos)
