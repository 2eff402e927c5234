"""triage eval: metrics per strategy on a labeled file, with the classical baselines beside them."""

from __future__ import annotations

import json
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
    from tuning.evaluate import ALL_STRATEGIES, evaluate_baseline, evaluate_lm, format_table
    from tuning.plots import f1_png, f1_terminal

    settings = get_settings()
    examples = load_examples(data_path, settings.max_input_chars)[:limit]
    strategies = list(strategies) or list(ALL_STRATEGIES)
    train = load_examples(train_path or settings.resolved_shots_file, settings.max_input_chars)
    _refuse_overlap(examples, train, data_path)
    if len(model_paths) > 1:
        return _compare_methods(model_paths, strategies, train, examples, data_path, batch_size, as_json, out_dir, settings)
    service = get_service(tuned_model=model_paths[0] if model_paths else None)
    reports = []
    variants = [(False, False)] + ([(True, False)] if rag else []) + ([(False, True)] if precedents else [])
    for strategy in strategies:
        if strategy in ("tfidf", "embedding"):
            reports.append(evaluate_baseline(strategy, train, examples))
            continue
        for use_rag, use_precedents in variants:
            label = strategy + ("+rag" if use_rag else "") + ("+precedents" if use_precedents else "")
            with click.progressbar(length=len(examples), label=f"{label:<22}", file=click.get_text_stream("stderr")) as bar:
                def advance(done, total, bar=bar):
                    bar.update(done - bar.pos)
                reports.append(evaluate_lm(service, strategy, examples, batch_size=batch_size, rag=use_rag,
                                           precedents=use_precedents, shots=shots, on_progress=advance))
    result = {"data": str(data_path), "n": len(examples), "strategies": {r.strategy: r.to_json() for r in reports}}
    if rag:
        result["retrieval"] = _retrieval(service, examples, settings)
    out = Path(out_dir) if out_dir else settings.data_dir / "evals" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    f1_png(result["strategies"], out / "f1.png", f"per-department F1 on {Path(data_path).name}")
    if as_json:
        single = len(reports) == 1
        click.echo(json.dumps(next(iter(result["strategies"].values())) if single else result, indent=1))
        return
    click.echo(format_table(reports))
    if rag and result.get("retrieval"):
        click.echo(f"\nretrieval: {json.dumps(result['retrieval'])}")
    if plot:
        click.echo(f1_terminal(result["strategies"]))
    click.echo(f"\nwritten: {out / 'metrics.json'}, {out / 'f1.png'}")


def _compare_methods(model_paths, strategies, train, examples, data_path, batch_size, as_json, out_dir, settings):
    from tuning.compare_methods import evaluate_artifact, format_methods_table, methods_json, methods_png
    from tuning.evaluate import evaluate_baseline

    service = get_service()
    reports = []
    for path in model_paths:
        with click.progressbar(length=len(examples), label=f"{Path(path).name:<22}", file=click.get_text_stream("stderr")) as bar:
            def advance(done, total, bar=bar):
                bar.update(done - bar.pos)
            reports.append(evaluate_artifact(service, Path(path), examples, batch_size=batch_size, on_progress=advance))
    for name in [s for s in (strategies or ("tfidf", "embedding")) if s in ("tfidf", "embedding")]:
        reports.append(evaluate_baseline(name, train, examples))
    result = {"data": str(data_path), "n": len(examples), "methods": methods_json(reports)}
    out = Path(out_dir) if out_dir else settings.data_dir / "evals" / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    methods_png(reports, out / "methods.png", f"exact-set accuracy on {Path(data_path).name} ({len(examples)})")
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(format_methods_table(reports))
    click.echo(f"\nwritten: {out / 'metrics.json'}, {out / 'methods.png'}")


def _refuse_overlap(examples, train, data_path) -> None:
    from router.dataset import normalize

    seen = {normalize(ex.input) for ex in train}
    overlap = [ex.line for ex in examples if normalize(ex.input) in seen]
    if overlap:
        raise click.ClickException(
            f"{data_path}: {len(overlap)} complaint(s) also in the training file (lines {overlap[:10]}); "
            "evaluate on held-out complaints only"
        )


def _retrieval(service, examples, settings) -> dict | None:
    if service.grounder is None:
        return None
    try:
        from rag.evaluate import retrieval_recall
    except ModuleNotFoundError:
        return None
    return retrieval_recall(service.grounder, [ex for ex in examples if ex.rule], settings.rag_top_k)
