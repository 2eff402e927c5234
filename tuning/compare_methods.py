"""One table over several tuned artifacts (and the baselines): what each method costs and what it routes.

Per artifact: method, trainable parameters, artifact size, training time (from its triage.json), and,
measured here on one labeled file in one process: exact-set, micro/macro F1, input tokens, p50 latency
(one complaint at a time) and the memory its loaded form holds beside the shared base model (the tensors
it adds: a soft prompt's keys/values, a LoRA adapter's merged model copy); a 95% interval for each exact-set
and each row against the first (`tuning.paired`). Resident-set deltas are no
measure inside one process that loads and frees models in turn; `scripts/prompts_memory.py` and
`triage bench` measure the process.
"""

from __future__ import annotations

import gc
import math
import time

import torch
from pathlib import Path
from typing import Sequence

from router.artifact import read_metadata
from router.dataset import Example
from tuning.evaluate import StrategyReport, evaluate_lm
from tuning.metrics import percentile
from tuning.paired import paired_cell


def artifact_bytes(path: Path) -> int:
    """The files that hold the tuned weights (not the card, the plots or the metadata); a prompt ensemble's
    are in its members' directories."""
    return sum(p.stat().st_size for p in Path(path).rglob("*.safetensors"))


def held_bytes(tuned) -> int:
    """Memory the tuned model's own tensors take: its keys/values, and its model copy if it has one."""
    if tuned.members:
        return sum(held_bytes(member) for member in tuned.members)
    total = sum(k.nbytes + v.nbytes for k, v in tuned.prefix.layers)
    if tuned.model is not None:
        total += sum(t.nbytes for t in tuned.model.parameters()) + sum(t.nbytes for t in tuned.model.buffers())
        for module in tuned.model.modules():
            packed = getattr(module, "packed", None)
            if isinstance(packed, torch.Tensor):
                total += packed.numel() * packed.element_size()
    return int(total)


def evaluate_artifact(service, path: Path, examples: Sequence[Example], *, batch_size: int, latency_n: int = 40,
                      on_progress=None) -> StrategyReport:
    """Route `examples` with the artifact at `path` (batched for the metrics, one at a time for latency)."""
    meta = read_metadata(path)
    service.drop_tuned()  # the previous artifact is released before this one loads
    gc.collect()
    tuned = service.use_tuned(path)
    report = evaluate_lm(service, "tuned", examples, batch_size=batch_size, on_progress=on_progress)
    singles = []
    for ex in examples[:latency_n]:
        began = time.perf_counter()
        service.route(ex.input, "tuned")
        singles.append((time.perf_counter() - began) * 1000)
    report.strategy = f"tuned {meta.get('version') or Path(path).name}"
    report.extra.update({
        "method": meta.get("method"),
        "artifact": str(path),
        "trainable_parameters": meta.get("trainable_parameters") or _count_parameters(path),
        "artifact_bytes": artifact_bytes(path),
        "train_seconds": meta.get("train_seconds"),
        "single_p50_ms": round(percentile(singles, 50), 1),
        "memory_held_bytes": held_bytes(tuned),
    })
    return report


def _count_parameters(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in Path(path).rglob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            total += sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    return total


def format_methods_table(reports: Sequence[StrategyReport]) -> str:
    header = (f"{'model':<40} {'method':<12} {'params':>9} {'size':>9} {'train s':>8} {'exact':>6} {'95% CI':>13} "
              f"{'vs first':>18} {'microF1':>8} {'macroF1':>8} {'in tok':>7} {'p50 ms':>7} {'held MB':>8}")
    lines = [header, "-" * len(header)]
    for r in reports:
        j, e = r.to_json(), r.extra
        size = f"{e['artifact_bytes'] / 1e6:.2f} MB" if "artifact_bytes" in e else "–"
        held = f"{e['memory_held_bytes'] / 2**20:.2f}" if "memory_held_bytes" in e else "–"
        interval = "{:.3f}-{:.3f}".format(*e["exact_set_95ci"]) if "exact_set_95ci" in e else "–"
        lines.append(
            f"{r.strategy:<40} {e.get('method', '–'):<12} {e.get('trainable_parameters', '–')!s:>9} {size:>9} "
            f"{e.get('train_seconds', '–')!s:>8} {j['exact_set_accuracy']:>6.3f} {interval:>13} {paired_cell(e):>18} "
            f"{j['micro_f1']:>8.3f} {j['macro_f1']:>8.3f} "
            f"{j['mean_input_tokens']:>7.1f} {e.get('single_p50_ms', '–')!s:>7} {held:>8}"
        )
    return "\n".join(lines)


def methods_png(reports: Sequence[StrategyReport], path: Path, title: str) -> Path:
    from tuning.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8), dpi=110)
    names = [r.strategy for r in reports]
    values = [r.metrics["exact_set_accuracy"] for r in reports]
    bars = ax.barh(names, values, color=["#4C72B0" if "method" in r.extra else "#999999" for r in reports])
    for bar, r in zip(bars, reports):
        label = f"{r.metrics['exact_set_accuracy']:.3f}"
        if "artifact_bytes" in r.extra:
            label += f"  ({r.extra['method']}, {r.extra['artifact_bytes'] / 1e6:.2f} MB)"
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
    ax.set_xlim(0, 1.25)
    ax.set_xlabel("exact-set accuracy")
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def methods_json(reports: Sequence[StrategyReport]) -> dict:
    return {r.strategy: r.to_json() for r in reports}


__all__ = ["evaluate_artifact", "format_methods_table", "methods_png", "methods_json"]
