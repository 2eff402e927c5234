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
from typing import Callable, Generator, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import torch

from router.codec import LabelCodec
from router.departments import DEPARTMENTS

Feed = list[int]
Logits = torch.Tensor


class Stepper(Protocol):
    """A model with a (prefix) cache that can be fed tokens, many sequences at once."""

    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        """Prefill each request; logits at each request's last token ([1, vocab], or [vocab])."""

    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        """Append tokens to the pending sequences; logits at every fed position ([len, vocab])."""


@runtime_checkable
class SpeculativeStepper(Stepper, Protocol):
    """A stepper that also verifies draft tokens: prefilled after each request, taken back where wrong."""

    def start_drafted(self, requests: Sequence[Sequence[int]], drafts: Sequence[Sequence[int]]) -> list[Logits]:
        """As `start`, with each request's draft prefilled after it; its logits follow the request's."""

    def feed_drafted(self, pending: dict[int, Feed], take_back: dict[int, int]) -> dict[int, Logits]:
        """As `feed`, first taking back (masking out) `take_back[i]` rejected draft tokens of sequence i."""


@runtime_checkable
class CarryingStepper(Stepper, Protocol):
    """A stepper whose unfinished rows can join another's, so that several batches share forward passes."""

    def absorbable(self) -> bool:
        """Whether rows can move in or out now (a cache whose columns may be padded)."""

    def keep_rows(self, ids: Sequence[int]) -> None:
        """Drop every row but `ids`."""

    def absorb(self, other: "CarryingStepper", offset: int) -> None:
        """Take in `other`'s rows (same model and prefix), their ids shifted by `offset`."""


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


Key = tuple[int, int]  # (batch, row) of a sequence in decode_batches


class _Running:
    """Sequences decoding over one stepper: each step feeds every pending sequence at once."""

    def __init__(self, stepper: Stepper):
        self.stepper = stepper
        self.sequences: dict[int, _Sequence] = {}  # by the stepper's row id
        self.keys: dict[int, Key] = {}
        self.pending: dict[int, Feed] = {}
        self.take_back: dict[int, int] = {}
        self.next_id = 0

    @classmethod
    def start(cls, stepper: Stepper, codec: LabelCodec, batch: int, requests, drafts) -> tuple["_Running", list]:
        """Prefill a batch (with its drafts where the stepper is a SpeculativeStepper); finished results come back at once."""
        running = cls(stepper)
        speculate = drafts is not None and isinstance(stepper, SpeculativeStepper)
        draft_ids = [codec.draft_ids(d) for d in drafts] if speculate else [[] for _ in requests]
        firsts = stepper.start_drafted(requests, draft_ids) if speculate else stepper.start(requests)
        for row, (logits, draft) in enumerate(zip(firsts, draft_ids)):
            first, ahead = _split_first(logits)
            running.sequences[row] = _Sequence(decide(codec, first), list(draft), ahead)
            running.keys[row] = (batch, row)
        running.next_id = len(requests)
        return running, list(running._send({row: None for row in range(len(requests))}))

    def _send(self, values: dict) -> Iterator[tuple[Key, Decoded]]:
        for i, value in values.items():
            step = self.sequences[i].advance(value)
            if isinstance(step, Decoded):
                del self.sequences[i]
                yield self.keys.pop(i), step
            else:
                self.pending[i] = step
                self.take_back[i] = self.sequences[i].withdraw()

    def step(self) -> Iterator[tuple[Key, Decoded]]:
        pending, take_back = self.pending, self.take_back
        self.pending, self.take_back = {}, {}
        stepper = self.stepper
        outputs = stepper.feed_drafted(pending, take_back) if isinstance(stepper, SpeculativeStepper) else \
            stepper.feed(pending)
        yield from self._send(outputs)

    def finish(self) -> Iterator[tuple[Key, Decoded]]:
        while self.pending:
            yield from self.step()

    def absorb(self, other: "_Running") -> None:
        """Take over `other`'s unfinished sequences (their stepper rows move into this stepper)."""
        offset = self.next_id
        self.stepper.keep_rows(sorted(self.pending))
        other.stepper.keep_rows(sorted(other.pending))
        self.stepper.absorb(other.stepper, offset)
        for name in ("sequences", "keys", "pending", "take_back"):
            getattr(self, name).update({i + offset: v for i, v in getattr(other, name).items()})
        self.next_id += other.next_id


def decode_batches(
    open_stepper: Callable[[int], Stepper],
    codec: LabelCodec,
    batches: Iterable[tuple[Sequence[Sequence[int]], Sequence[Sequence[str]] | None]],
    carry_rows: int = 0,
) -> Iterator[tuple[Key, Decoded]]:
    """Decode batches of (requests, drafts) one after another; yields ((batch, row), result) as each finishes.

    `open_stepper(b)` gives the stepper for batch b.

    With `carry_rows` and steppers that can `absorb` one another, the sequences a batch's prefill
    (and draft) did not finish wait in a carry batch, and the carry takes its follow-up steps only
    once it holds `carry_rows` sequences or the batches run out: a follow-up step costs a read of
    every weight however few sequences it feeds, so several batches share each one. Results are
    those of decoding each batch alone.
    """
    carry: _Running | None = None
    for b, (requests, drafts) in enumerate(batches):
        running, finished = _Running.start(open_stepper(b), codec, b, requests, drafts)
        yield from finished
        if not running.pending:
            continue
        if not (carry_rows and isinstance(running.stepper, CarryingStepper) and running.stepper.absorbable()):
            yield from running.finish()
            continue
        if carry is None:
            carry = running
        else:
            carry.absorb(running)
        if len(carry.pending) >= carry_rows:
            yield from carry.finish()
            carry = None
    if carry is not None:
        yield from carry.finish()


def decode_batch(
    stepper: Stepper, codec: LabelCodec, requests: Sequence[Sequence[int]], drafts: Sequence[Sequence[str]] | None = None
) -> list[Decoded]:
    """Decode many prompts together; each finishes on its own step.

    With `drafts` (a proposed department list per prompt) and a stepper that can speculate,
    the draft's tokens are prefilled with the prompt and accepted as far as the model's own
    choices agree: the result is exactly the non-speculative one, in fewer forward passes.
    """
    results = {row: decoded for (_, row), decoded in decode_batches(lambda b: stepper, codec, [(requests, drafts)])}
    return [results[i] for i in range(len(requests))]
