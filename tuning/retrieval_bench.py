"""What retrieval adds to a routing: embed + search per complaint, one at a time and for a whole batch.

`triage rag bench` prints it. One at a time is what a single routing pays before the model runs (the
complaint's embedding, then the nearest-neighbour search in each collection); batched is one
`ground_many` call for a batch, as `route_many` makes it: one embedding call per collection.
"""

from __future__ import annotations

import time
from typing import Sequence

from tuning.metrics import percentile


def _timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms of this process): on a shared machine the CPU time is what the work itself costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _stats(samples: Sequence[tuple[float, float]]) -> dict:
    walls, cpus = [w for w, _ in samples], [c for _, c in samples]
    return {"p50": round(percentile(walls, 50), 2), "p99": round(percentile(walls, 99), 2),
            "cpu_p50": round(percentile(cpus, 50), 2)}


def retrieval_numbers(grounder, texts: Sequence[str], *, policy: bool, precedents: bool, batch_size: int = 16,
                      repeats: int = 3) -> dict:
    """Milliseconds per complaint: embedding alone, embed + search one at a time, and batched (median of passes)."""
    from rag.embeddings import load_encoder

    texts = list(texts)
    encoder = load_encoder()
    grounder.ground(texts[0], policy=policy, precedents=precedents)  # warm: model loaded, store opened
    embed = [_timed(lambda t=t: encoder.embed([t])) for t in texts]
    single = [_timed(lambda t=t: grounder.ground(t, policy=policy, precedents=precedents)) for t in texts]
    passes = []
    for _ in range(repeats):
        timings = [_timed(lambda b=texts[i : i + batch_size]: grounder.ground_many(b, policy=policy,
                                                                                  precedents=precedents))
                   for i in range(0, len(texts), batch_size)]
        passes.append((sum(w for w, _ in timings) / len(texts), sum(c for _, c in timings) / len(texts)))
    wall, cpu = sorted(passes)[len(passes) // 2]
    return {
        "n": len(texts), "policy": policy, "precedents": precedents, "batch_size": batch_size,
        "embed_ms": _stats(embed), "single_ms": _stats(single),
        "batched_ms_per_complaint": round(wall, 2), "batched_cpu_ms_per_complaint": round(cpu, 2),
        "batched_passes_ms_per_complaint": [round(w, 2) for w, _ in passes],
    }


def format_retrieval(results: Sequence[dict]) -> str:
    header = (f"{'retrieves':<18} {'n':>4} {'embed p50':>10} {'(cpu)':>7} {'single p50':>11} {'(cpu)':>7} "
              f"{'single p99':>11} {'batched/complaint':>18} {'(cpu)':>7}")
    lines = [header, "-" * len(header)]
    for r in results:
        what = "+".join(name for name in ("policy", "precedents") if r[name])
        e, s = r["embed_ms"], r["single_ms"]
        lines.append(f"{what:<18} {r['n']:>4} {e['p50']:>8.2f}ms {e['cpu_p50']:>7.2f} {s['p50']:>9.2f}ms "
                     f"{s['cpu_p50']:>7.2f} {s['p99']:>9.2f}ms {r['batched_ms_per_complaint']:>16.2f}ms "
                     f"{r['batched_cpu_ms_per_complaint']:>7.2f}")
    lines.append("ms = wall time on this machine as shared; cpu = this process's CPU time (all its threads)")
    return "\n".join(lines)
