"""Multi-label routing metrics: exact-set accuracy, per-department and micro/macro F1."""

from __future__ import annotations

from typing import Sequence

from router.departments import DEPARTMENTS


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


def exact_hits(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> list[bool]:
    """For each complaint, whether the predicted departments are exactly the gold ones (in any order)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    return [set(g) == set(p) for g, p in zip(gold, predicted)]


def routing_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Exact-set accuracy and per-department precision/recall/F1 for department lists."""
    n = len(gold)
    exact = sum(exact_hits(gold, predicted))
    per_department, totals = {}, [0, 0, 0]
    for d in DEPARTMENTS:
        tp = sum(d in g and d in p for g, p in zip(gold, predicted))
        fp = sum(d not in g and d in p for g, p in zip(gold, predicted))
        fn = sum(d in g and d not in p for g, p in zip(gold, predicted))
        precision, recall, f1 = _prf(tp, fp, fn)
        per_department[d] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                             "support": tp + fn}
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
    supported = [v["f1"] for v in per_department.values() if v["support"]]
    return {
        "n": n,
        "exact_set_accuracy": round(exact / n, 4) if n else 0.0,
        "micro_f1": round(_prf(*totals)[2], 4),
        "macro_f1": round(sum(supported) / len(supported), 4) if supported else 0.0,
        "per_department": per_department,
    }
