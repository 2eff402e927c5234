"""One training step split across the CPU's cores: data parallelism inside one process.

A late prompt's step multiplies small matrices (16 complaints x ~50 tokens), where one process's
intra-op threads scale poorly (on 2 cores a step took 1.08-1.25 s at two threads, 0.74 s as two
one-thread shards). So a batch is split into one shard per core; each shard runs its forward and
backward in its own thread with one intra-op thread, and the gradients of the shared prompt add up
in `.grad` as one batch's would (each shard's mean loss is weighted by its share of the batch's loss
terms, so the sum is the batch's mean). With two shards and an empty `.grad` (no accumulation steps)
the sum is bit-identical whichever shard finishes first (a + b == b + a); with more shards, gradient
accumulation or prompt dropout (random draws from threads) the last bits can differ between runs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

Item = TypeVar("Item")


def split_batch(items: Sequence[Item], shards: int) -> list[list[Item]]:
    """`items` in at most `shards` contiguous, near-equal parts (none empty)."""
    shards = max(1, min(shards, len(items)))
    size, extra = divmod(len(items), shards)
    out, start = [], 0
    for n in range(shards):
        end = start + size + (1 if n < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return out


def plain_backward(loss: torch.Tensor, scale: float = 1.0) -> float:
    """Add scale x the gradients of `loss` to `.grad`; its value."""
    (loss * scale).backward()
    return float(loss.detach())


class ShardedBackward:
    """`run(items, scale) -> the batch's mean loss`, after adding scale x its gradients to the parameters' `.grad`."""

    def __init__(self, loss: Callable[[Sequence], torch.Tensor], terms: Callable[[object], int], shards: int):
        self.loss, self.terms, self.shards = loss, terms, max(1, shards)

    def run(self, items: Sequence, scale: float = 1.0) -> float:
        parts = split_batch(items, self.shards)
        if len(parts) == 1:
            return plain_backward(self.loss(items), scale)
        weights = [sum(self.terms(i) for i in part) for part in parts]
        total = sum(weights)
        threads = torch.get_num_threads()

        def shard(part: list, weight: int) -> float:
            torch.set_num_threads(1)
            return plain_backward(self.loss(part), scale * weight / total) * weight / total

        try:  # threads of this step only (starting them costs ~0.1 ms against a step's ~0.7 s): nothing outlives it
            with ThreadPoolExecutor(len(parts), thread_name_prefix="tune-shard") as pool:
                return sum(pool.map(shard, parts, weights))
        finally:
            torch.set_num_threads(threads)  # the setting is process-wide: give evaluation its threads back
