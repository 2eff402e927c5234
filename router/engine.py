"""The routing engine: one frozen base model, every strategy on top of it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from router.artifact import TunedModel
from router.backends import CausalStepper, PrefixCache, RowPrefixes, Seq2SeqStepper, extend_prefix, text_prefix_cache
from router.codec import LabelCodec
from router.dataset import Example
from router.decoding import Decoded, decode_batches
from router.draft import Draft
from router.ensemble import route_by_vote
from router.modelio import BaseModel
from router.prompting import PromptParts, instructed_prompt, pick_shots, tuned_prompt
from router.results import Routing


# Cache columns (rows x tokens) unfinished sequences may hold while they wait for shared follow-up steps:
# ~24 MB for SmolLM2 (30 layers x 2 x 3 kv heads x 64 dims x 2 bytes = 23 KB per column).
CARRY_CACHE_COLUMNS = 1024


class StrategyError(ValueError):
    """A strategy that cannot run with what is loaded."""


@dataclass
class _Prepared:
    parts: PromptParts
    prefix_ids: list[int]
    prefix: PrefixCache
    tuned: TunedModel | None = None
    head_ids: list[int] = field(default_factory=list)  # the template's fixed start ("Complaint:"), when cached
    with_head: "_Prepared | None" = None  # the same prompt with head_ids moved into the prefix cache


class Engine:
    """Routes complaints with zero-shot, multi-shot or tuned prompting of one base model."""

    def __init__(self, base: BaseModel, shots_pool: Sequence[Example] = (), threshold: float = 0.6,
                 draft: Draft | None = None, batch_tokens: int | None = None):
        self.base = base
        self.batch_tokens = batch_tokens  # most prefilled tokens per batch (rows x width); None: rows only
        self.draft = draft  # proposes answers for the model to verify (speed only; see router.draft)
        self.tokenizer = base.tokenizer
        self.codec = LabelCodec.for_tokenizer(base.tokenizer)
        self.answer_tokens = self.codec.token_ids  # the only LM-head rows the decoder reads
        self.shots_pool = list(shots_pool)
        self.threshold = threshold
        self._prepared: dict[tuple, _Prepared] = {}
        self._lock = threading.RLock()  # one forward at a time per model: torch uses every core already

    # -- preparation (cached per strategy) -----------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prepare(self, strategy: str, shots: int, tuned: TunedModel | None) -> _Prepared:
        """The strategy's prompt and prefix cache, computed once. A tuned model keeps its own (so a replaced
        one, with its merged copy, is released with it); the engine keeps the instruction prompts'."""
        if strategy == "tuned" and tuned is None:
            raise StrategyError("the tuned strategy needs a tuned artifact (triage tune, or TRIAGE_TUNED_MODEL)")
        store = tuned.prepared if strategy == "tuned" else self._prepared
        key = (strategy, shots if strategy == "multi-shot" else 0)
        if key in store:
            return store[key]
        seq2seq = self.base.is_seq2seq
        if strategy == "tuned":
            prepared = _Prepared(tuned_prompt(seq2seq), [], tuned.prefix, tuned)
        elif strategy in ("zero-shot", "multi-shot"):
            chosen = pick_shots(self.shots_pool, shots) if strategy == "multi-shot" else []
            if strategy == "multi-shot" and shots > 0 and not chosen:
                raise StrategyError("multi-shot needs a training file to pick examples from (TRIAGE_SHOTS_FILE)")
            parts = instructed_prompt(self.tokenizer, chosen, seq2seq)
            ids = self._ids(parts.prefix) if parts.prefix else []
            prefix = PrefixCache.empty() if seq2seq else text_prefix_cache(self.base.model, ids)
            prepared = _Prepared(parts, ids, prefix)
        else:
            raise StrategyError(f"unknown strategy {strategy!r}; choose tuned, zero-shot or multi-shot")
        if not seq2seq:
            self._cache_head(prepared)
        store[key] = prepared
        return prepared

    def _cache_head(self, prepared: _Prepared) -> None:
        """Move the template's fixed start (e.g. "Complaint:") into the prefix cache: fewer tokens per call.

        Only where the tokenizer splits a whole request exactly there, so the model sees the same tokens.
        """
        head = prepared.parts.template.split("{complaint}", 1)[0]
        sample = self._ids(prepared.parts.request("My order never came."))
        for text in dict.fromkeys((head, head.rstrip())):
            ids = self._ids(text) if text else []
            if ids and sample[: len(ids)] == ids and len(sample) > len(ids):
                prefix = extend_prefix(self._model_for(prepared), prepared.prefix, ids)
                prepared.head_ids = ids
                prepared.with_head = _Prepared(prepared.parts, prepared.prefix_ids + ids, prefix, prepared.tuned)
                return

    def shots_for(self, k: int) -> list[Example]:
        return pick_shots(self.shots_pool, k)

    # -- routing ---------------------------------------------------------------
    def _stepper(self, prepared: Sequence[_Prepared]):
        """A stepper for one batch, whose rows were prepared with `prepared` (one per row)."""
        pad = self.tokenizer.pad_token_id
        first = prepared[0]
        if self.base.is_seq2seq:
            soft = first.tuned.embeds if first.tuned is not None else None
            return Seq2SeqStepper(self._model_for(first), soft, pad)
        same = all(p is first for p in prepared)
        prefix = first.prefix if same else RowPrefixes([p.prefix for p in prepared])
        return CausalStepper(self._model_for(first), prefix, pad, allowed=self.answer_tokens)

    def _model_for(self, prepared: _Prepared):
        soft = prepared.tuned
        return soft.model if soft is not None and soft.model is not None else self.base.model

    def route_many(
        self,
        texts: Sequence[str],
        strategy: str = "tuned",
        *,
        shots: int = 3,
        tuned: TunedModel | None = None,
        contexts: Sequence[str] | None = None,
        batch_size: int = 16,
    ) -> list[Routing]:
        """Route texts in batches of similar token length (see plan_batches); results in the input order.

        Each text is tokenized once; a routing's latency runs from the start of its batch to its answer.
        """
        if strategy == "tuned" and tuned is not None and tuned.members:
            mixed = lambda ts, ps, cs: self.route_mixed(ts, ps, contexts=cs, batch_size=batch_size)  # noqa: E731
            return route_by_vote(mixed, texts, contexts, tuned.members, tuned.version, self.threshold)
        prepared, rows = self._requests(strategy, shots, tuned, texts, contexts)
        return self._route_planned(strategy, [(prepared, *row) for row in rows], batch_size)

    def route_mixed(self, texts: Sequence[str], prompts: Sequence[TunedModel], *,
                    contexts: Sequence[str] | None = None, batch_size: int = 16) -> list[Routing]:
        """Route each text with its own soft prompt (tuned strategy), prompts mixed within batches.

        Every prompt must run on the shared base model (a soft prompt; not a merged LoRA copy): rows of
        different prompts then share each forward pass, each row behind its own prompt's keys/values.
        A prompt ensemble's rows are routed by its vote (its prompts' rows share batches in turn).
        """
        if len(prompts) != len(texts):
            raise StrategyError(f"{len(prompts)} prompts for {len(texts)} texts")
        if any(p.model is not None for p in prompts):
            raise StrategyError("only soft prompts (served on the shared base model) can share a batch; "
                                "a LoRA adapter is served from its own merged copy")
        pick = lambda indices: [contexts[i] for i in indices] if contexts else None  # noqa: E731
        results: list = [None] * len(texts)
        rows: list = []
        for prompt, indices in by_prompt(prompts):
            if prompt.members:
                voted = self.route_many([texts[i] for i in indices], "tuned", tuned=prompt, contexts=pick(indices),
                                        batch_size=batch_size)
                for i, routing in zip(indices, voted):
                    results[i] = routing
                continue
            prepared, mine = self._requests("tuned", 0, prompt, [texts[i] for i in indices], pick(indices))
            rows.append([(i, (prepared, *row)) for i, row in zip(indices, mine)])
        # causal rows of different prompts share batches (each behind its own keys/values); a seq2seq batch has
        # one soft prompt in front of every row, so there each prompt's rows get batches of their own
        groups = rows if self.base.is_seq2seq else [[row for group in rows for row in group]]
        for group in (g for g in groups if g):
            for (i, _), routing in zip(group, self._route_planned("tuned", [row for _, row in group], batch_size)):
                results[i] = routing
        return results

    def _requests(self, strategy: str, shots: int, tuned: TunedModel | None, texts: Sequence[str],
                  contexts: Sequence[str] | None) -> tuple[_Prepared, list[tuple[str, list[int], str]]]:
        """The prepared prompt, and per text (text, its token ids after the prefix, context): the prompt is the
        one with the template's fixed start cached when every request starts with it."""
        prepared = self._prepare(strategy, shots, tuned)
        contexts = list(contexts) if contexts else [""] * len(texts)
        prompts = [prepared.parts.request(t, c) for t, c in zip(texts, contexts)]
        requests = [list(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
        head = prepared.head_ids
        if prepared.with_head is not None and all(r[: len(head)] == head and len(r) > len(head) for r in requests):
            prepared, requests = prepared.with_head, [r[len(head) :] for r in requests]
        if self.base.is_seq2seq and prepared.prefix_ids:
            requests = [prepared.prefix_ids + r for r in requests]
        return prepared, list(zip(texts, requests, contexts))

    def _route_planned(self, strategy: str, rows: list[tuple[_Prepared, str, list[int], str]], batch_size: int
                       ) -> list[Routing]:
        plan = plan_batches([len(ids) for _, _, ids, _ in rows], batch_size, max_tokens=self.batch_tokens)
        routed = self._route(strategy, [[rows[i] for i in b] for b in plan])
        results: list[Routing | None] = [None] * len(rows)
        for indices, batch in zip(plan, routed):
            for i, routing in zip(indices, batch):
                results[i] = routing
        return results  # type: ignore[return-value]  # every slot is filled

    def _route(self, strategy: str, batches: list[list[tuple[_Prepared, str, list[int], str]]]) -> list[list[Routing]]:
        """Decode batches of (prepared prompt, text, request ids, context) one after another (see decode_batches:
        unfinished sequences of several batches share their follow-up forward passes)."""
        requests = [[r for _, _, r, _ in batch] for batch in batches]
        drafts = [self.draft.propose([t for _, t, _, _ in batch]) if self.draft is not None and not self.base.is_seq2seq
                  else None for batch in batches]
        started: dict[int, float] = {}

        def timed():
            for b, pair in enumerate(zip(requests, drafts)):
                started[b] = time.perf_counter()
                yield pair

        decoded: dict[tuple[int, int], tuple[Decoded, float]] = {}
        with self._lock, torch.inference_mode():
            carry = self._carry_rows([p for batch in batches for p, *_ in batch], requests)
            open_stepper = lambda b: self._stepper([p for p, *_ in batches[b]])  # noqa: E731
            for key, result in decode_batches(open_stepper, self.codec, timed(), carry):
                decoded[key] = result, (time.perf_counter() - started[key[0]]) * 1000
        return [
            [self._routing(*decoded[b, row], strategy, p, len(r), bool(c)) for row, (p, _, r, c) in enumerate(batch)]
            for b, batch in enumerate(batches)
        ]

    @staticmethod
    def _carry_rows(prepared: Sequence[_Prepared], requests: list[list[list[int]]]) -> int:
        """How many unfinished sequences may wait for shared follow-up steps: a batch's worth, fewer when each
        row's cache (its own copy of the prefix, e.g. a multi-shot prompt's) would make the carry costly."""
        longest = max((len(r) for b in requests for r in b), default=0)
        prefix = max((p.prefix.length for p in prepared), default=0)
        by_memory = CARRY_CACHE_COLUMNS // max(1, prefix + longest)
        return min(max((len(b) for b in requests), default=0), by_memory)

    def _routing(self, d: Decoded, elapsed, strategy, prepared: _Prepared, request_tokens: int, rag: bool) -> Routing:
        low = min(d.confidence[name] for name in d.departments) < self.threshold
        soft = prepared.tuned
        prefix_tokens = 0 if self.base.is_seq2seq else len(prepared.prefix_ids)
        return Routing(
            departments=d.departments,
            confidence=d.confidence,
            strategy=strategy,
            input_tokens=prefix_tokens + request_tokens,
            generated_tokens=d.generated_tokens,
            latency_ms=elapsed,
            virtual_tokens=soft.num_virtual_tokens if soft else 0,
            model_version=soft.version if soft else None,
            needs_review=low,
            rag=rag,
        )


def by_prompt(prompts: Sequence) -> list[tuple[object, list[int]]]:
    """Each distinct prompt (by identity, in first-seen order) with the indices of the rows that name it."""
    groups: dict[int, tuple[object, list[int]]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(id(prompt), (prompt, []))[1].append(i)
    return list(groups.values())


def plan_batches(lengths: Sequence[int], max_size: int, max_padding: float = 0.15,
                 max_tokens: int | None = None) -> list[list[int]]:
    """Indices of sequences with these token lengths, grouped into batches of similar length.

    Sorted by length, a batch is closed when it holds `max_size` sequences, when one more
    would make padding exceed `max_padding` of its real tokens (the prefill, most of a
    batch's cost, then computes little padding, whatever the spread of lengths), or when one
    more would make it prefill over `max_tokens` (rows x width; a single longer sequence
    still gets a batch of its own).
    """
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        width = lengths[i]  # the longest so far: the batch's width if i joins
        over_budget = max_tokens is not None and width * (len(current) + 1) > max_tokens
        if current and (len(current) >= max_size or over_budget
                        or width * (len(current) + 1) > (1 + max_padding) * (real + width)):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
    if current:
        batches.append(current)
    return batches
