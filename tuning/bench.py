"""The benchmark: latency, throughput, tokens, memory and cold start on the real embedded model.

Prints one table and writes JSON. Every speed-up is shown as a ratio measured in the
same run: to the plain PEFT + generate() path, and to the tuned fast path without its
speculative draft.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from router.dataset import Example
from tuning.metrics import percentile

COLD_START_SCRIPT = (
    "import time; t=time.perf_counter();"
    "from router.settings import Settings; from router.service import RouterService;"
    "s=RouterService(Settings()); s.route('my blender stopped working', 'tuned');"
    "print(time.perf_counter()-t)"
)


THROUGHPUT_PASSES = 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """The process's resident memory now (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cold_start(data_dir: Path, env: dict) -> float:
    """Seconds from a new process's start to its first routing (includes Python and torch import)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD_START_SCRIPT], check=True, capture_output=True,
                   env={**env, "TRIAGE_DATA_DIR": str(data_dir)})
    return time.perf_counter() - started


def measure_cold_starts(settings) -> dict:
    env = {k: v for k, v in os.environ.items()}
    with tempfile.TemporaryDirectory() as fresh:
        without_cache = cold_start(Path(fresh), env)  # dequantizes the GGUF and writes the cache
        with_cache = cold_start(Path(fresh), env)
    return {"cold_start_s": round(with_cache, 2), "cold_start_no_cache_s": round(without_cache, 2)}


def strategy_numbers(service, strategy: str, texts: Sequence[str], batch_size: int, rag: bool = False) -> dict:
    service.route(texts[0], strategy, rag=rag)  # warm: prefix cache built, code paths compiled
    singles = [service.route(t, strategy, rag=rag) for t in texts]
    latencies = [r.latency_ms for r in singles]
    rates = []
    for _ in range(THROUGHPUT_PASSES):  # the median of a few passes: one pass of a few seconds is noisy
        started = time.perf_counter()
        batched = service.route_many(texts, strategy, rag=rag, batch_size=batch_size)
        rates.append(len(texts) / (time.perf_counter() - started))
    return {
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1),
                       "mean": round(sum(latencies) / len(latencies), 1)},
        "throughput_per_s": round(sorted(rates)[len(rates) // 2], 1),
        "throughput_passes_per_s": [round(r, 1) for r in rates],
        "mean_input_tokens": round(sum(r.input_tokens for r in singles) / len(singles), 1),
        "mean_generated_tokens": round(sum(r.generated_tokens for r in singles) / len(singles), 1),
        "batch_matches_single": [r.departments for r in batched] == [r.departments for r in singles],
        "_departments": [r.departments for r in singles],
    }


def reference_numbers(service, texts: Sequence[str]) -> dict:
    from router.reference import generate_reference, load_reference

    base = service.engine.base
    if base.precision == "int8":  # PEFT cannot wrap int8 layers: the reference runs in fp32
        from dataclasses import replace

        from router.modelio import float_copy

        base = replace(base, model=float_copy(base.model), precision="fp32")
    peft_model = load_reference(base, service.tuned_path())
    generate_reference(base, peft_model, texts[:1])  # warm
    results = generate_reference(base, peft_model, texts)
    latencies = [ms for _, ms in results]
    return {"latency_ms": {"p50": round(percentile(latencies, 50), 1), "p99": round(percentile(latencies, 99), 1),
                           "mean": round(sum(latencies) / len(latencies), 1)},
            "_departments": [names for names, _ in results]}


def run_benchmark(service, examples: Sequence[Example], *, strategies: Sequence[str], batch_size: int, rag: bool,
                  cold: bool, reference: bool, log=print) -> dict:
    texts = [ex.input for ex in examples]
    import torch

    result: dict = {"n": len(texts), "threads": torch.get_num_threads(), "precision": service.settings.precision,
                    "base_model": service.settings.base_model, "tuned_model": str(service.tuned_path()), "strategies": {}}
    load_started = time.perf_counter()
    service.engine  # noqa: B018 - loads the base model
    result["model_load_s"] = round(time.perf_counter() - load_started, 2)
    result["threads"] = torch.get_num_threads()  # as set by loading (TRIAGE_TORCH_THREADS)
    for strategy in strategies:
        log(f"  {strategy} ...")
        result["strategies"][strategy] = strategy_numbers(service, strategy, texts, batch_size)
        if rag and service.grounder is not None:
            log(f"  {strategy}+rag ...")
            result["strategies"][strategy + "+rag"] = strategy_numbers(service, strategy, texts, batch_size, rag=True)
    engine = service.engine
    if "tuned" in result["strategies"] and engine.draft is not None:
        log("  tuned without the speculative draft ...")
        draft, engine.draft = engine.draft, None
        try:
            plain = strategy_numbers(service, "tuned", texts, batch_size)
        finally:
            engine.draft = draft
        tuned = result["strategies"]["tuned"]
        plain["same_departments_as_drafted"] = sum(a == b for a, b in zip(plain["_departments"], tuned["_departments"]))
        plain["speedup_p50"] = round(plain["latency_ms"]["p50"] / max(1e-9, tuned["latency_ms"]["p50"]), 2)
        plain["speedup_throughput"] = round(tuned["throughput_per_s"] / max(1e-9, plain["throughput_per_s"]), 2)
        result["strategies"]["tuned (no draft)"] = plain
    result["peak_rss_serving_mb"] = round(peak_rss_mb(), 1)  # before the reference loads its own PEFT model
    gold = [list(ex.departments) for ex in examples]
    for numbers in result["strategies"].values():
        numbers["exact_set_accuracy"] = round(sum(p == g for p, g in zip(numbers["_departments"], gold)) / len(gold), 4)
    if reference and "tuned" in result["strategies"]:
        log("  reference: plain peft + generate() ...")
        ref = reference_numbers(service, texts)
        tuned = result["strategies"]["tuned"]
        ref["same_departments_as_fast_path"] = sum(a == b for a, b in zip(ref["_departments"], tuned["_departments"]))
        ref["speedup_p50"] = round(ref["latency_ms"]["p50"] / max(1e-9, tuned["latency_ms"]["p50"]), 1)
        result["reference"] = ref
    if "tuned" in result["strategies"]:
        meta = service.tuned_model.metadata
        result["tuning_seconds_per_epoch"] = meta.get("seconds_per_epoch")
        result["tuning_seconds"] = meta.get("train_seconds")
    if cold:
        log("  cold starts ...")
        result.update(measure_cold_starts(service.settings))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    for numbers in list(result["strategies"].values()) + ([result["reference"]] if "reference" in result else []):
        numbers.pop("_departments", None)
    return result


def format_report(result: dict) -> str:
    header = f"{'strategy':<16} {'p50 ms':>8} {'p99 ms':>8} {'batch/s':>8} {'in tok':>7} {'gen tok':>8} {'exact':>6}"
    lines = [f"n={result['n']} threads={result['threads']} precision={result['precision']}", header, "-" * len(header)]
    for name, s in result["strategies"].items():
        lines.append(f"{name:<16} {s['latency_ms']['p50']:>8.1f} {s['latency_ms']['p99']:>8.1f} {s['throughput_per_s']:>8.1f} "
                     f"{s['mean_input_tokens']:>7.1f} {s['mean_generated_tokens']:>8.1f} {s['exact_set_accuracy']:>6.3f}")
    plain = result["strategies"].get("tuned (no draft)")
    if plain:
        lines.append(f"{'':<16} (the draft makes tuned {plain['speedup_p50']}x faster at p50 and "
                     f"{plain['speedup_throughput']}x in throughput; same departments on "
                     f"{plain['same_departments_as_drafted']}/{result['n']})")
    if "reference" in result:
        ref = result["reference"]
        lines.append(f"{'peft generate()':<16} {ref['latency_ms']['p50']:>8.1f} {ref['latency_ms']['p99']:>8.1f}"
                     f"   (tuned fast path is {ref['speedup_p50']}x faster at p50; same departments on "
                     f"{ref['same_departments_as_fast_path']}/{result['n']})")
    extras = [f"{k}={result[k]}" for k in ("cold_start_s", "cold_start_no_cache_s", "model_load_s",
                                            "peak_rss_serving_mb", "peak_rss_mb",
                                            "tuning_seconds_per_epoch") if k in result]
    lines.append(" ".join(extras))
    return "\n".join(lines)


def dump(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
