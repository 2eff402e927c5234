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

from tuning.layer_cache import CachedExample, input_ids, padded


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
    """For each example, for each of its decisions, the teacher's softmax over the tokens the decision compares."""
    body, head = teacher.model, teacher.get_output_embeddings()
    device = head.weight.device
    order = sorted(range(len(items)), key=lambda i: len(input_ids(items[i].encoded)))
    out: list[list[tuple[float, ...]]] = [[] for _ in items]
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [input_ids(items[i].encoded) for i in chunk]
        ids = padded(rows, pad_id).to(device)
        mask = torch.zeros_like(ids)
        for n, row in enumerate(rows):
            mask[n, : len(row)] = 1
        with autocast:
            hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
        for n, i in enumerate(chunk):
            first = len(items[i].encoded.prompt) - 1
            for d in items[i].decisions:
                tokens = torch.tensor(d.allowed, device=device)
                logits = torch.nn.functional.linear(hidden[n, first + d.offset].float(), head.weight[tokens].float(),
                                                    None if head.bias is None else head.bias[tokens].float())
                out[i].append(tuple(float(p) for p in torch.softmax(logits, dim=-1)))
        if on_progress:
            on_progress(min(start + batch_size, len(order)), len(order), time.perf_counter() - started)
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
