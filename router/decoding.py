"""Constrained decoding over the trie of department names.

Every answer is a valid, non-empty, canonical-order department list without
repeats. A department costs about one model step: once its first token is
chosen, the rest of its name and the separator are forced and fed in one
forward pass; the logits at the name's last token decide continue-or-stop and
the logits at the separator rank the next department. Per-department
confidence comes from the same steps (see ``Decoded.confidence``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator, Protocol, Sequence

import torch

from router.codec import LabelCodec
from router.departments import DEPARTMENTS

Feed = list[int]
Logits = torch.Tensor


class Stepper(Protocol):
    """A model with a (prefix) cache that can be fed tokens, many sequences at once.

    A stepper whose `speculates` is true also takes draft tokens in `start` (prefilled after
    each request; their logits follow the request's) and `take_back` counts in `feed`.
    """

    speculates: bool

    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        """Prefill each request; logits at each request's last token ([1, vocab], or [vocab])."""

    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        """Append tokens to the pending sequences; logits at every fed position ([len, vocab])."""


@dataclass
class Decoded:
    departments: list[str]
    confidence: dict[str, float]
    generated_tokens: int
    model_steps: int = 1
    trace: list[str] = field(default_factory=list)


def _restricted_softmax(logits: Logits, token_ids: Sequence[int]) -> torch.Tensor:
    return torch.softmax(logits[list(token_ids)].float(), dim=-1)


def _choose_name(codec: LabelCodec, logits: Logits, candidates: list[int]):
    """Walk the name trie from `logits`; returns (department, tokens not yet fed, per-candidate prob)."""
    part = {c: 1.0 for c in candidates}
    depth, unfed = 0, []
    while True:
        groups: dict[int, list[int]] = {}
        for c in candidates:
            groups.setdefault(codec.name_ids[c][depth], []).append(c)
        tokens = list(groups)
        probs = _restricted_softmax(logits, tokens)
        for token, p in zip(tokens, probs.tolist()):
            for c in groups[token]:
                part[c] *= p
        best = tokens[int(torch.argmax(probs))]
        candidates, depth = groups[best], depth + 1
        unfed.append(best)
        while len(candidates) > 1 and len({codec.name_ids[c][depth] for c in candidates}) == 1:
            unfed.append(codec.name_ids[candidates[0]][depth])
            depth += 1
        if len(candidates) == 1:
            chosen = candidates[0]
            unfed.extend(codec.name_ids[chosen][depth:])
            return chosen, unfed, part
        out = yield unfed  # a branch inside names sharing a prefix: one more step
        logits, unfed = out[-1], []


def decide(codec: LabelCodec, logits: Logits) -> Generator[Feed, Logits, Decoded]:
    """One sequence's decoding, as a coroutine: yields tokens to feed, receives their logits."""
    n = len(DEPARTMENTS)
    confidence = [0.0] * n
    chosen: list[int] = []
    reach, steps = 1.0, 1
    cont_id, stop_id = codec.sep_ids[0], codec.eos_id
    while True:
        candidates = [d for d in range(n) if not chosen or d > chosen[-1]]
        department, unfed, part = yield from _choose_name(codec, logits, candidates)
        for c in candidates:
            confidence[c] = max(confidence[c], reach * part[c])
        chosen.append(department)
        if department == n - 1:  # nothing can follow the last department
            break
        out = yield unfed + list(codec.sep_ids)
        steps += 1
        p_continue = float(_restricted_softmax(out[len(unfed) - 1], [cont_id, stop_id])[0])
        logits = out[-1]
        if p_continue < 0.5:
            rest = [d for d in range(n) if d > department]
            firsts = _restricted_softmax(logits, [codec.name_ids[d][0] for d in rest]).tolist()
            for d, p in zip(rest, firsts):
                confidence[d] = max(confidence[d], reach * p_continue * p)
            break
        reach *= p_continue
    names = [DEPARTMENTS[d] for d in chosen]
    conf = {DEPARTMENTS[d]: round(confidence[d], 4) for d in range(n)}
    return Decoded(names, conf, len(codec.answer_ids(names)), steps)


@dataclass
class _Sequence:
    """One sequence's decoder, plus the draft tokens prefilled after its prompt and their logits."""

    decoder: Generator[Feed, Logits, Decoded]
    draft: list[int]
    ahead: Logits  # [len(draft), vocab]
    used: int = 0

    def advance(self, value) -> Feed | Decoded:
        """Send `value`; answer from the draft's logits while the decoder asks for exactly the draft's next tokens.

        Returns the next tokens the model must really be fed, or the finished result.
        """
        while True:
            try:
                feed = self.decoder.send(value)
            except StopIteration as done:
                return done.value
            if feed and self.draft[self.used : self.used + len(feed)] == feed:
                value = self.ahead[self.used : self.used + len(feed)]
                self.used += len(feed)
                continue
            return feed

    def withdraw(self) -> int:
        """Give up the rest of the draft; how many fed tokens that takes back."""
        count = len(self.draft) - self.used
        self.draft = self.draft[: self.used]
        return count


def _split_first(logits: Logits) -> tuple[Logits, Logits]:
    """(logits at the prompt's last token, logits at each draft token)."""
    if logits.dim() == 1:
        return logits, logits[:0]
    return logits[0], logits[1:]


def decode_batch(
    stepper: Stepper, codec: LabelCodec, requests: Sequence[Sequence[int]], drafts: Sequence[Sequence[str]] | None = None
) -> list[Decoded]:
    """Decode many prompts together; each finishes on its own step.

    With `drafts` (a proposed department list per prompt) and a stepper that can speculate,
    the draft's tokens are prefilled with the prompt and accepted as far as the model's own
    choices agree: the result is exactly the non-speculative one, in fewer forward passes.
    """
    speculate = drafts is not None and stepper.speculates
    draft_ids = [codec.draft_ids(d) for d in drafts] if speculate else [[] for _ in requests]
    firsts = stepper.start(requests, draft_ids) if speculate else stepper.start(requests)
    sequences = []
    for logits, draft in zip(firsts, draft_ids):
        first, ahead = _split_first(logits)
        sequences.append(_Sequence(decide(codec, first), list(draft), ahead))
    results: dict[int, Decoded] = {}
    pending: dict[int, Feed] = {}
    value_for: dict[int, object] = {i: None for i in range(len(requests))}
    while value_for:
        take_back: dict[int, int] = {}
        for i, value in value_for.items():
            step = sequences[i].advance(value)
            if isinstance(step, Decoded):
                results[i] = step
            else:
                pending[i] = step
                take_back[i] = sequences[i].withdraw()
        if not pending:
            break
        outputs = stepper.feed(pending, take_back) if speculate else stepper.feed(pending)
        value_for, pending = dict(outputs), {}
    return [results[i] for i in range(len(requests))]
