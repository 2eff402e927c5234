"""Gradients through the answer positions only: a cheaper, approximate backward for a late prompt.

A late prompt's training step runs layers K..L-1 over every position of a batch (the complaint, ~40 tokens, then
its answer, a few) and backpropagates through all of them, although its loss is read at the answer's positions only.
With `answer_gradient_epochs` (the first N epochs of a tune) a step runs those layers twice:

1. over every position without gradients, keeping each layer's keys/values (the current prompt in front: the values
   are those of the full forward);
2. over each row's answer window only (from where its first loss term is read to the row's end), with gradients:
   the window's queries attend to the learned prefix, to the kept keys/values of the positions before the window
   (detached) and causally to the window's own.

The loss has the full step's value. Its gradient keeps every path from the prompt to the loss that runs through
the answer's positions (at every layer they read the prompt's keys/values and pass their states up) and drops the
paths through the complaint's positions (how the prompt changes what the complaint's tokens become at one layer,
which the answer reads at the next). Backward and saved activations shrink to the window's size (~1/8 of the
positions); the first pass keeps no activations.
"""

from __future__ import annotations

from typing import Sequence

import torch

from tuning.fast_layers import UpperLayers, decoder_layer


def answer_windows(prompt_lengths: Sequence[int], lengths: Sequence[int], width_of_batch: int) -> tuple[list[int], int]:
    """Each row's window start and the windows' common width. A row's window starts where its answer's first term is
    read (its prompt's last position) and reaches its end; a start is moved earlier where the common width would run
    past the batch's padded width (a longer window only keeps more paths)."""
    starts = [max(0, p - 1) for p in prompt_lengths]
    width = max(n - s for n, s in zip(lengths, starts))
    return [min(s, width_of_batch - width) for s in starts], width


def window_mask(base_mask: torch.Tensor, starts: torch.Tensor, width: int, sequence: int, prefix: int) -> torch.Tensor:
    """[b, 1, width, prefix + sequence + width] additive mask for the window's queries: the prefix's columns as
    `base_mask` has them (prompt dropout included), a kept position only before the row's window, the window
    causally."""
    b = starts.shape[0]
    dtype, device = base_mask.dtype, base_mask.device
    prefix_part = base_mask[:, :, :1, :prefix].expand(b, 1, width, prefix)
    before = torch.arange(sequence, device=device)[None] < starts.to(device)[:, None]  # [b, sequence]
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    allowed = torch.cat((before[:, None, :].expand(b, width, sequence), causal[None].expand(b, width, width)), dim=2)
    rest = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return torch.cat((prefix_part, rest[:, None]), dim=3)


def answer_gradient_run(upper: UpperLayers, hidden: torch.Tensor, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]],
                        cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor, starts: Sequence[int],
                        width: int) -> torch.Tensor:
    """What `upper.run` returns (hidden states [b, t, d] after layers first..last-1, in its compute dtype), with
    gradients flowing to `prefix` through positions starts[n]..starts[n]+width-1 of each row only."""
    hidden, cos, sin, mask = (x.to(upper.dtype) for x in (hidden, cos, sin, mask))
    b, t, _ = hidden.shape
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        full = hidden
        for i in range(upper.first, upper.last):
            keys, values = prefix[i]
            full = decoder_layer(full, upper.weights[i], keys.detach(), values.detach(), cos, sin, mask, upper.heads,
                                 upper.kv_heads, upper.eps, keep=kept)
    start = torch.tensor(list(starts), dtype=torch.long, device=hidden.device)
    index = start[:, None] + torch.arange(width, device=hidden.device)[None]  # [b, width]
    rows = torch.arange(b, device=hidden.device)[:, None]
    window = hidden[rows, index]
    cos_w, sin_w = cos.expand(b, -1, -1)[rows, index], sin.expand(b, -1, -1)[rows, index]
    prefix_length = next(iter(prefix.values()))[0].shape[-2]
    mask_w = window_mask(mask, start, width, t, prefix_length)
    for n, i in enumerate(range(upper.first, upper.last)):
        keys, values = prefix[i]
        window = decoder_layer(window, upper.weights[i], keys, values, cos_w, sin_w, mask_w, upper.heads,
                               upper.kv_heads, upper.eps, between=kept[n])
    out = full.clone()
    out[rows, index] = window  # the window's values carry the gradients; the rest are the first pass's
    return out


__all__ = ["answer_gradient_run", "answer_windows", "window_mask"]
