"""Evaluating strategies on a labeled file: the product's LM strategies beside the classical baselines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from router.dataset import Example
from router.results import STRATEGIES
from tuning.baselines import BASELINES, run_baseline
from tuning.metrics import percentile, routing_metrics

ALL_STRATEGIES = STRATEGIES + BASELINES
PROGRESS_BATCHES = 4  # batches routed per progress report (they share follow-up forward passes)


@dataclass
class StrategyReport:
    strategy: str
    metrics: dict
    predictions: list[list[str]]
    input_tokens: list[int]
    generated_tokens: list[int]
    latencies_ms: list[float]
    extra: dict

    def to_json(self) -> dict:
        n = max(1, len(self.predictions))
        return {
            "strategy": self.strategy,
            **self.metrics,
            "mean_input_tokens": round(sum(self.input_tokens) / n, 2),
            "mean_generated_tokens": round(sum(self.generated_tokens) / n, 2),
            "latency_ms": {"p50": round(percentile(self.latencies_ms, 50), 2),
                           "p99": round(percentile(self.latencies_ms, 99), 2)},
            **self.extra,
        }


def evaluate_lm(service, strategy: str, examples: Sequence[Example], *, batch_size: int, rag: bool = False,
                precedents: bool = False, shots: int | None = None,
                on_progress: Callable[[int, int], None] | None = None) -> StrategyReport:
    predictions, inputs, generated, latencies = [], [], [], []
    step = batch_size * PROGRESS_BATCHES
    for start in range(0, len(examples), step):
        chunk = examples[start : start + step]
        began = time.perf_counter()
        routed = service.route_many([ex.input for ex in chunk], strategy, shots=shots, rag=rag, precedents=precedents,
                                    exclude_self=True, batch_size=batch_size)
        amortized = (time.perf_counter() - began) * 1000 / len(chunk)
        for r in routed:
            predictions.append(r.departments)
            inputs.append(r.input_tokens)
            generated.append(r.generated_tokens)
            latencies.append(r.latency_ms if batch_size == 1 else amortized)
        if on_progress:
            on_progress(min(start + step, len(examples)), len(examples))
    metrics = routing_metrics([ex.departments for ex in examples], predictions)
    name = strategy + ("+rag" if rag else "") + ("+precedents" if precedents else "")
    extra = {"latency_mode": "single" if batch_size == 1 else f"batched x{batch_size}, amortized per complaint"}
    if strategy == "tuned":
        extra["model_version"] = service.tuned_model.version
        extra["virtual_tokens"] = service.tuned_model.num_virtual_tokens
    return StrategyReport(name, metrics, predictions, inputs, generated, latencies, extra)


def evaluate_baseline(name: str, train: Sequence[Example], examples: Sequence[Example]) -> StrategyReport:
    started = time.perf_counter()
    predictions, latencies = run_baseline(name, train, [ex.input for ex in examples])
    metrics = routing_metrics([ex.departments for ex in examples], predictions)
    extra = {"fit_and_predict_seconds": round(time.perf_counter() - started, 1), "latency_mode": "single"}
    return StrategyReport(name, metrics, predictions, [0] * len(examples), [0] * len(examples), latencies, extra)


def format_table(reports: Sequence[StrategyReport]) -> str:
    header = f"{'strategy':<24} {'n':>4} {'exact':>6} {'microF1':>8} {'macroF1':>8} {'in tok':>7} {'gen tok':>8} {'p50 ms':>8} {'p99 ms':>8}"
    lines = [header, "-" * len(header)]
    for r in reports:
        j = r.to_json()
        lines.append(
            f"{r.strategy:<24} {j['n']:>4} {j['exact_set_accuracy']:>6.3f} {j['micro_f1']:>8.3f} {j['macro_f1']:>8.3f} "
            f"{j['mean_input_tokens']:>7.1f} {j['mean_generated_tokens']:>8.1f} {j['latency_ms']['p50']:>8.1f} {j['latency_ms']['p99']:>8.1f}"
        )
    return "\n".join(lines)
