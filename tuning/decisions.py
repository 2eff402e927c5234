"""The decisions the constrained decoder makes for an answer, as training targets.

`router.decoding` never samples the whole vocabulary: at each department it compares only the
first tokens of the departments that may still follow (canonical order, no repeats; deeper trie
levels where names share tokens), and after each name only the separator against the end token.
A loss over exactly those choices (a softmax restricted to the tokens compared) teaches the prompt
what decoding reads and nothing else; forced tokens (the rest of a name, the separator) carry no loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from router.codec import LabelCodec
from router.departments import DEPARTMENTS


@dataclass(frozen=True)
class Decision:
    offset: int  # logits at (answer start - 1 + offset) predict answer token `offset`
    allowed: tuple[int, ...]  # token ids compared
    target: int  # the right one
    soft: tuple[float, ...] | None = None  # a target distribution over `allowed` (distillation); None: `target` alone


def decisions_for(codec: LabelCodec, departments: Sequence[str]) -> list[Decision]:
    """Every choice the decoder makes while producing `departments` (canonical) after the answer cue."""
    chosen = sorted(DEPARTMENTS.index(d) for d in departments)
    out: list[Decision] = []
    offset, previous = 0, -1
    for position, index in enumerate(chosen):
        if position:
            offset += len(codec.sep_ids)
        candidates = [d for d in range(len(DEPARTMENTS)) if d > previous]
        name = codec.name_ids[index]
        for depth, token in enumerate(name):
            tokens = tuple(sorted({codec.name_ids[c][depth] for c in candidates if len(codec.name_ids[c]) > depth}))
            if len(tokens) > 1:
                out.append(Decision(offset + depth, tokens, token))
            candidates = [c for c in candidates if len(codec.name_ids[c]) > depth and codec.name_ids[c][depth] == token]
        offset += len(name)
        previous = index
        if index == len(DEPARTMENTS) - 1:
            break  # nothing can follow the last department: the decoder stops without asking
        last = position == len(chosen) - 1
        out.append(Decision(offset, (codec.sep_ids[0], codec.eos_id), codec.eos_id if last else codec.sep_ids[0]))
    return out


def decision_logits(hidden: torch.Tensor, rows: Sequence[int], positions: Sequence[int],
                    decisions: Sequence[Decision], head_weight: torch.Tensor, head_bias: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, list[int]]:
    """[len(decisions), T] fp32 logits over the union of the compared tokens, -inf where a decision does not compare
    that token, and the token id of each column. Decision i is read at hidden[rows[i], positions[i]]."""
    tokens = sorted({t for d in decisions for t in d.allowed})
    column = {t: i for i, t in enumerate(tokens)}
    device = hidden.device
    index = torch.tensor(tokens, dtype=torch.long, device=head_weight.device)
    picked = hidden[torch.tensor(list(rows), device=device), torch.tensor(list(positions), device=device)]
    logits = torch.nn.functional.linear(picked, head_weight[index], None if head_bias is None else head_bias[index]).float()
    allowed = torch.zeros(len(decisions), len(tokens), dtype=torch.bool)
    for i, d in enumerate(decisions):
        allowed[i, [column[t] for t in d.allowed]] = True
    return logits.masked_fill(~allowed.to(device), float("-inf")), tokens


def decision_losses(hidden: torch.Tensor, rows: Sequence[int], positions: Sequence[int], decisions: Sequence[Decision],
                    head_weight: torch.Tensor, head_bias: torch.Tensor | None = None) -> torch.Tensor:
    """[len(decisions)] cross-entropy of each decision, over the tokens it compares only (against its `soft`
    distribution where it has one, else its target).

    `hidden` [b, t, d] after the final norm; decision i is read at hidden[rows[i], positions[i]].
    """
    logits, tokens = decision_logits(hidden, rows, positions, decisions, head_weight, head_bias)
    column = {t: i for i, t in enumerate(tokens)}
    if all(d.soft is None for d in decisions):
        targets = torch.tensor([column[d.target] for d in decisions], device=logits.device)
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    wanted = torch.zeros(len(decisions), len(tokens))
    for i, d in enumerate(decisions):
        if d.soft is None:
            wanted[i, column[d.target]] = 1.0
        else:
            wanted[i, [column[t] for t in d.allowed]] = torch.tensor(d.soft)
    log_p = torch.log_softmax(logits, dim=-1).masked_fill(torch.isinf(logits), 0.0)
    return -(wanted.to(logits.device) * log_p).sum(-1)


def decision_loss(hidden: torch.Tensor, rows: Sequence[int], positions: Sequence[int], decisions: Sequence[Decision],
                  head_weight: torch.Tensor, head_bias: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of `decision_losses`."""
    return decision_losses(hidden, rows, positions, decisions, head_weight, head_bias).mean()


def target_entropy(decision: Decision) -> float:
    """The lowest cross-entropy a decision's target allows (0 for a hard target): its loss minus this is how far
    the model is from the target (the KL divergence)."""
    if decision.soft is None:
        return 0.0
    return -sum(p * math.log(p) for p in decision.soft if p > 0)
