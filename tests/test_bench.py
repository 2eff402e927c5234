"""The benchmark on the tiny model: numbers for every strategy, the reference agrees with the fast path."""

from __future__ import annotations

from router.dataset import Example
from tests.conftest import TINY_TRAIN
from tuning.bench import format_report, run_benchmark


def test_benchmark_reports_every_strategy_and_the_reference(tiny_service):
    examples = [Example(text, tuple(d.strip() for d in label.split(","))) for text, label in TINY_TRAIN[:6]]
    result = run_benchmark(tiny_service, examples, strategies=["tuned", "zero-shot"], batch_size=4, rag=False,
                           cold=False, reference=True, log=lambda _: None)
    assert set(result["strategies"]) == {"tuned", "zero-shot", "tuned (no draft)"}
    plain = result["strategies"]["tuned (no draft)"]
    assert plain["same_departments_as_drafted"] == len(examples), "the draft never changes an answer"
    assert plain["speedup_p50"] > 0 and plain["speedup_throughput"] > 0
    assert tiny_service.engine.draft is not None, "the draft is back after the comparison"
    for numbers in result["strategies"].values():
        assert numbers["batch_matches_single"] is True
        assert 0 < numbers["latency_ms"]["p50"] <= numbers["latency_ms"]["p99"]
        assert numbers["throughput_per_s"] > 0 and "_departments" not in numbers
    assert result["reference"]["same_departments_as_fast_path"] == len(examples), "plain PEFT generate() agrees"
    assert 0 < result["peak_rss_serving_mb"] <= result["peak_rss_mb"]
    report = format_report(result)
    assert "peft generate()" in report and "peak_rss_serving_mb=" in report and "the draft makes tuned" in report
