"""A whole evaluation run, as `triage eval` asks for it: every strategy (and variant) on one labeled file,
the classical baselines beside them, retrieval recall, written to metrics.json and a PNG.

The CLI only parses options and prints; `progress(label, total)` is a context manager yielding an
`advance(done, total)` callback (the CLI's progress bars).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Sequence

from router.dataset import Example, normalize
from tuning.baselines import BASELINES
from tuning.compare_methods import evaluate_artifact, methods_json, methods_png
from tuning.evaluate import evaluate_baseline, evaluate_lm
from tuning.paired import add_uncertainty
from tuning.plots import f1_png

Progress = Callable[[str, int], ContextManager[Callable[[int, int], None]]]


def _no_progress(label: str, total: int):
    return nullcontext(lambda done, total: None)


def overlap_lines(examples: Sequence[Example], train: Sequence[Example]) -> list[int]:
    """Lines of `examples` whose complaint is also in the training file (never evaluate on those)."""
    seen = {normalize(ex.input) for ex in train}
    return [ex.line for ex in examples if normalize(ex.input) in seen]


def evaluate_strategies(service, examples: Sequence[Example], train: Sequence[Example], strategies: Sequence[str], *,
                        rag: bool = False, precedents: bool = False, shots: int | None = None, batch_size: int = 16,
                        progress: Progress = _no_progress) -> tuple[dict, list]:
    """Each LM strategy (plus its +rag / +precedents variants when asked) and each baseline; (result, reports)."""
    reports = []
    variants = [(False, False)] + ([(True, False)] if rag else []) + ([(False, True)] if precedents else [])
    for strategy in strategies:
        if strategy in BASELINES:
            reports.append(evaluate_baseline(strategy, train, examples))
            continue
        for use_rag, use_precedents in variants:
            label = strategy + ("+rag" if use_rag else "") + ("+precedents" if use_precedents else "")
            with progress(label, len(examples)) as advance:
                reports.append(evaluate_lm(service, strategy, examples, batch_size=batch_size, rag=use_rag,
                                           precedents=use_precedents, shots=shots, on_progress=advance))
    result = {"n": len(examples), "strategies": {r.strategy: r.to_json() for r in reports}}
    if rag:
        result["retrieval"] = retrieval(service, examples)
    return result, reports


def retrieval(service, examples: Sequence[Example]) -> dict | None:
    """Recall@k of the labeling rule's passage, on the examples that name their rule."""
    if service.grounder is None:
        return None
    try:
        from rag.evaluate import retrieval_recall
    except ModuleNotFoundError:
        return None
    return retrieval_recall(service.grounder, [ex for ex in examples if ex.rule], service.settings.rag_top_k)


def compare_artifacts(service, artifacts: Sequence[Path], examples: Sequence[Example], train: Sequence[Example],
                      baselines: Sequence[str], *, batch_size: int = 16,
                      progress: Progress = _no_progress) -> tuple[dict, list]:
    """Several tuned artifacts on one base model, one table, the baselines beside them; (result, reports).
    Each row has a 95% interval for its exact-set and, after the first, a paired count against the first."""
    reports = []
    for path in artifacts:
        with progress(Path(path).name, len(examples)) as advance:
            reports.append(evaluate_artifact(service, Path(path), examples, batch_size=batch_size, on_progress=advance))
    reports += [evaluate_baseline(name, train, examples) for name in baselines]
    add_uncertainty(reports, [ex.departments for ex in examples])  # intervals, and each against the first model
    return {"n": len(examples), "methods": methods_json(reports)}, reports


def write_run(result: dict, reports: list, out: Path, data_path: Path) -> list[Path]:
    """metrics.json plus the chart (methods.png for a method comparison, else per-department f1.png)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"data": str(data_path), **result}, indent=1))
    if "methods" in result:
        chart = out / "methods.png"
        methods_png(reports, chart, f"exact-set accuracy on {Path(data_path).name} ({result['n']})")
    else:
        chart = out / "f1.png"
        f1_png(result["strategies"], chart, f"per-department F1 on {Path(data_path).name}")
    return [out / "metrics.json", chart]
