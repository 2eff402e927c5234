"""Hidden states entering the first prompted layer, computed once per training example.

Below layer K the late prompt is a frozen text prefix, so what those layers make of a training
example never changes while the prompt learns: they are run once (no gradients), and each
training step starts from the stored states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from router.codec import LabelCodec
from tuning.batches import Encoded
from tuning.decisions import Decision, decisions_for
from tuning.late_prompt import DecoderParts, LatePrompt, run_layers


@dataclass
class CachedExample:
    """One training example: its tokens, the decoder's decisions on its answer, and its states at layer K."""

    encoded: Encoded
    decisions: list[Decision]
    states: torch.Tensor  # [len(inputs), hidden] entering layer K

    @property
    def prompt(self) -> list[int]:
        return self.encoded.prompt


def input_ids(item: Encoded) -> list[int]:
    """Prompt and answer but its last token: every position a decision or an answer token is read at."""
    return item.prompt + item.answer[:-1]


def padded(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for n, row in enumerate(rows):
        ids[n, : len(row)] = torch.tensor(list(row))
    return ids


def length_batches(rows: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of `rows` in batches of similar length, shortest first (little padding in each batch)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def decision_reads(items: Sequence["CachedExample"]) -> tuple[list[int], list[int], list[Decision]]:
    """Each decision of a batch with where it is read: its row, and its position (after the example's prompt)."""
    rows, positions, decisions = [], [], []
    for n, item in enumerate(items):
        start = len(item.encoded.prompt) - 1
        for d in item.decisions:
            rows.append(n)
            positions.append(start + d.offset)
            decisions.append(d)
    return rows, positions, decisions


@torch.no_grad()
def lower_states(parts: DecoderParts, prompt: LatePrompt, ids: torch.Tensor, autocast) -> torch.Tensor:
    """Hidden states [b, t, d] entering layer K for right-padded token ids, after the frozen text prefix."""
    with autocast:
        hidden = parts.embed(ids.to(parts.embed.weight.device))
        return run_layers(parts, hidden, 0, prompt.first_layer, prompt.lower(), prompt.length)


def cache_examples(parts: DecoderParts, prompt: LatePrompt, items: Sequence[Encoded], codec: LabelCodec,
                   departments: Sequence[Sequence[str]], pad_id: int, autocast, dtype: torch.dtype,
                   batch_size: int = 32, on_progress: Callable[[int, int, float], None] | None = None
                   ) -> list[CachedExample]:
    """Run layers 0..K-1 once over every example (batched by length); states kept in `dtype`."""
    out: list[CachedExample | None] = [None] * len(items)
    started, done = time.perf_counter(), 0
    for chunk in length_batches([input_ids(item) for item in items], batch_size):
        rows = [input_ids(items[i]) for i in chunk]
        states = lower_states(parts, prompt, padded(rows, pad_id), autocast)
        for n, i in enumerate(chunk):
            out[i] = CachedExample(items[i], decisions_for(codec, departments[i]),
                                   states[n, : len(rows[n])].to(dtype).clone())
        done += len(chunk)
        if on_progress:
            on_progress(done, len(items), time.perf_counter() - started)
    return out  # type: ignore[return-value]  # every slot is filled
