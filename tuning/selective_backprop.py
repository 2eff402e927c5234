"""Selective backprop: after the first epoch, each epoch trains on a share of the examples, mostly those the
prompt still gets most wrong.

Jiang et al. 2019 ("Accelerating Deep Learning by Focusing on the Biggest Losers"), in its stale form: an
example's loss is the one recorded the last time it was trained on (no extra forward pass), measured above what
its target allows (its KL divergence from a teacher's soft target, its cross-entropy for a label). Examples are
drawn without replacement with weight = the loss's percentile among all examples, so every example keeps a chance,
and one that was skipped keeps its older, usually higher, loss and comes back. An epoch after the first then costs
`share` of a full one: in the same time, the examples still being learned get 1/share as many passes.
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence, TypeVar

Item = TypeVar("Item")


def epoch_sizes(n: int, epochs: int, share: float) -> list[int]:
    """How many examples each epoch trains on: all in the first, round(share x n) (at least 1) after."""
    later = n if share >= 1 else max(1, min(n, round(share * n)))
    return [n] + [later] * (epochs - 1) if epochs > 0 else []


def epoch_examples(items: Sequence[Item], losses: Mapping[int, float], size: int, rng: random.Random) -> list[Item]:
    """`size` of `items`, drawn without replacement with weight = the percentile of each one's last loss
    (`losses[id(item)]`; one never trained on counts as the highest), in their original order."""
    if size >= len(items):
        return list(items)
    order = sorted(range(len(items)), key=lambda i: losses.get(id(items[i]), math.inf))
    percentile = {index: (rank + 1) / len(items) for rank, index in enumerate(order)}
    # Efraimidis-Spirakis: the `size` largest u ** (1 / weight) are a weighted sample without replacement
    keys = sorted(((rng.random() ** (1 / percentile[i]), i) for i in range(len(items))), reverse=True)
    return [items[i] for i in sorted(i for _, i in keys[:size])]


__all__ = ["epoch_examples", "epoch_sizes"]
