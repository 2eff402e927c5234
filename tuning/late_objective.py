"""The training objective of a late prompt: upper layers over cached states, loss on the decoder's decisions."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from tuning.decisions import decision_losses, target_entropy
from tuning.fast_layers import UpperLayers
from tuning.late_prompt import DecoderParts, LatePrompt, layer_inputs, run_layers
from tuning.layer_cache import CachedExample, decision_reads


def _stack_states(items: Sequence[CachedExample]) -> torch.Tensor:
    width = max(i.states.shape[0] for i in items)
    first = items[0].states
    out = torch.zeros(len(items), width, first.shape[1], dtype=first.dtype, device=first.device)
    for n, item in enumerate(items):
        out[n, : item.states.shape[0]] = item.states
    return out


def upper_hidden(parts: DecoderParts, prompt: LatePrompt, items: Sequence[CachedExample], autocast,
                 dropout: float = 0.0, upper: UpperLayers | None = None) -> torch.Tensor:
    """Final-norm hidden states [b, t, d] of a batch, from its cached layer-K states through the learned prompt.
    `upper`: the same layers as plain arithmetic (`tuning.fast_layers`); None: transformers' own layers."""
    with autocast:
        hidden = _stack_states(items)
        compute = torch.bfloat16 if hidden.dtype == torch.bfloat16 else torch.float32
        hidden = hidden.to(compute)
        if upper is None:
            hidden = run_layers(parts, hidden, prompt.first_layer, len(parts.layers), prompt.learned(), prompt.length,
                                dropout)
        else:
            _, (cos, sin), mask = layer_inputs(parts, hidden, prompt.length, dropout)
            with torch.autocast(hidden.device.type, enabled=False):  # its weights are already in the compute dtype
                hidden = upper.run(hidden, prompt.learned(), cos, sin, mask)
        return parts.norm(hidden)


def late_prompt_loss(parts: DecoderParts, prompt: LatePrompt, items: Sequence[CachedExample], loss: str,
                     autocast, dropout: float = 0.0, upper: UpperLayers | None = None,
                     report: Callable[[list[float]], None] | None = None) -> torch.Tensor:
    """`decisions`: cross-entropy of each choice the constrained decoder makes (restricted softmax);
    `lm`: the causal LM loss on every answer token (full vocabulary). `report`: called with each example's
    mean loss above what its targets allow (`per_example_excess`), e.g. for selective backprop."""
    hidden = upper_hidden(parts, prompt, items, autocast, dropout, upper)
    weight = parts.head.weight
    bias = getattr(parts.head, "bias", None)
    if loss == "decisions":
        rows, positions, decisions = decision_reads(items)
        with autocast:
            terms = decision_losses(hidden, rows, positions, decisions, weight, bias)
    else:
        rows, positions, targets = [], [], []
        for n, item in enumerate(items):
            start = len(item.encoded.prompt) - 1
            for j, token in enumerate(item.encoded.answer):
                rows.append(n)
                positions.append(start + j)
                targets.append(token)
        device = hidden.device
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
        with autocast:
            logits = torch.nn.functional.linear(picked, weight, bias).float()
        terms = torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=device), reduction="none")
    if report is not None:  # only then: the floors are a Python loop over the batch's decisions
        floors = [target_entropy(d) for d in decisions] if loss == "decisions" else [0.0] * len(rows)
        report(per_example_excess(terms.detach(), floors, rows, len(items)))
    return terms.mean()


def per_example_excess(terms: torch.Tensor, floors: Sequence[float], rows: Sequence[int], n: int) -> list[float]:
    """Each example's mean over its loss terms of (term - its floor); 0 for an example without terms."""
    excess = terms.float().cpu() - torch.tensor(floors, dtype=torch.float32)
    index = torch.tensor(list(rows), dtype=torch.long)
    sums = torch.zeros(n).index_add_(0, index, excess)
    counts = torch.zeros(n).index_add_(0, index, torch.ones(len(rows)))
    return (sums / counts.clamp(min=1)).tolist()


def loss_terms(item: CachedExample, loss: str) -> int:
    """How many terms an example adds to a batch's mean `loss` (its decisions, or its answer tokens)."""
    return len(item.decisions) if loss == "decisions" else len(item.encoded.answer)


__all__ = ["late_prompt_loss", "loss_terms", "per_example_excess", "upper_hidden"]
