"""Knowledge distillation for a late prompt: a tuned teacher's probabilities for each decoder decision.

A label says only which token each decision should pick. A teacher that routes well (the LoRA
adapter) also says how sure it is and which wrong department comes closest; mixed into each
decision's target, that richer signal is what the student soft prompt learns from, the way
distilled students learn from soft targets (Hinton et al., 2015). The teacher reads every
training example once, teacher-forced along the labelled answer, before the first step; it is
a merged copy of the base (`router.artifact.merged_lora_model`), dropped afterwards, so the
shared base model is never touched.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from tuning.decisions import decision_logits
from tuning.layer_cache import CachedExample, decision_reads, input_ids, length_batches, padded


def load_teacher(base, path: str | Path) -> torch.nn.Module:
    """The teacher artifact as a model of its own (a LoRA adapter merged into a copy of the base)."""
    from router.artifact import ArtifactError, check_base, merged_lora_model, read_metadata

    path = Path(path)
    metadata = read_metadata(path)
    check_base(metadata, base, path)
    if metadata.get("method") != "lora":
        raise ArtifactError(f"{path}: a teacher must be a LoRA artifact (this one is {metadata.get('method')!r})")
    return merged_lora_model(base, path)


@torch.no_grad()
def teacher_probabilities(teacher: torch.nn.Module, items: Sequence[CachedExample], pad_id: int, autocast,
                          batch_size: int = 32, on_progress: Callable[[int, int, float], None] | None = None
                          ) -> list[list[tuple[float, ...]]]:
    """For each example, for each of its decisions, the teacher's softmax over the tokens the decision compares.
    Right padding with causal attention keeps the pads out of every real position, as in the layer cache."""
    head = teacher.get_output_embeddings()
    out: list[list[tuple[float, ...]]] = [[] for _ in items]
    started, done = time.perf_counter(), 0
    for chunk in length_batches([input_ids(item.encoded) for item in items], batch_size):
        batch = [items[i] for i in chunk]
        ids = padded([input_ids(item.encoded) for item in batch], pad_id).to(head.weight.device)
        with autocast:
            hidden = teacher.model(input_ids=ids).last_hidden_state
        rows, positions, decisions = decision_reads(batch)
        logits, tokens = decision_logits(hidden, rows, positions, decisions, head.weight, head.bias)
        probabilities = torch.softmax(logits, dim=-1)  # 0 where a decision does not compare the token
        column = {t: c for c, t in enumerate(tokens)}
        for row, (n, d) in enumerate(zip(rows, decisions)):
            out[chunk[n]].append(tuple(float(probabilities[row, column[t]]) for t in d.allowed))
        done += len(chunk)
        if on_progress:
            on_progress(done, len(items), time.perf_counter() - started)
    return out


def with_teacher(items: Sequence[CachedExample], probabilities: Sequence[Sequence[tuple[float, ...]]],
                 weight: float) -> list[CachedExample]:
    """The examples with each decision's target = (1 - weight) x its label + weight x the teacher's probabilities."""
    out = []
    for item, per_decision in zip(items, probabilities):
        decisions = []
        for d, probs in zip(item.decisions, per_decision):
            label = [1.0 if t == d.target else 0.0 for t in d.allowed]
            decisions.append(replace(d, soft=tuple((1 - weight) * a + weight * b for a, b in zip(label, probs))))
        out.append(CachedExample(item.encoded, decisions, item.states))
    return out


__all__ = ["load_teacher", "teacher_probabilities", "with_teacher"]
