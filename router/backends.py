"""Steppers: feed tokens to a frozen model on top of a reusable prefix cache.

A prefix (soft prompt, or instruction + shots) is run once per loaded model;
its keys/values are copied into every batch, so each call only prefills the
complaint's own tokens. Padding inside a batch is masked and positions are
tracked per sequence, so a batch gives the same answers as one-at-a-time.
The LM head (hidden x vocabulary, the largest matrix of a small model) is applied
only at the positions the decoder reads, not at every fed token.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import DynamicLayer

from router.decoding import Feed, Logits
from router.devices import device_of
from router.prefixes import PrefixCache, RowPrefixes, _pad_columns  # noqa: F401  (PrefixCache: callers import it here)


# Configs whose models post-process logits after the LM head: those keep the full forward.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def split_lm_head(model) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(decoder body, LM head) of a plain causal LM, or None when the structure is not known to be that."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    if any(getattr(config, name, None) not in (None, 1.0) for name in _LOGIT_POSTPROCESSING):
        return None
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, torch.nn.Module):
        return None
    get_body = getattr(model, "get_decoder", None)
    try:
        body = get_body() if callable(get_body) else None
    except (AttributeError, NotImplementedError):
        body = None
    body = body if body is not None else getattr(model, "model", None)
    if not isinstance(body, torch.nn.Module) or body is model:
        return None
    return body, head


@torch.no_grad()
def text_prefix_cache(model, ids: Sequence[int]) -> PrefixCache:
    if not ids:
        return PrefixCache.empty()
    out = model(input_ids=torch.tensor([list(ids)], device=device_of(model)), use_cache=True)
    return PrefixCache.from_cache(out.past_key_values)


@torch.no_grad()
def embeds_prefix_cache(model, embeds: torch.Tensor) -> PrefixCache:
    """Keys/values of a soft prompt given as input embeddings [n_virtual, hidden]."""
    embeds = embeds.to(device_of(model), model.dtype)
    out = model(inputs_embeds=embeds[None], use_cache=True)
    return PrefixCache.from_cache(out.past_key_values)


@torch.no_grad()
def extend_prefix(model, prefix: PrefixCache, ids: Sequence[int]) -> PrefixCache:
    """`prefix` followed by the tokens `ids`: their keys/values computed on top of the cached prefix."""
    if not ids:
        return prefix
    start, count, device = prefix.length, len(ids), device_of(model)
    out = model(
        input_ids=torch.tensor([list(ids)], device=device),
        attention_mask=torch.ones((1, start + count), dtype=torch.long, device=device),
        position_ids=torch.arange(start, start + count, device=device)[None],
        past_key_values=prefix.expand(1, _float_dtype(model)),
        use_cache=True,
    )
    return PrefixCache.from_cache(out.past_key_values)


def _float_dtype(model) -> torch.dtype | None:
    """The dtype the model computes keys/values in (None when it does not say)."""
    dtype = getattr(model, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None


class CausalStepper:
    """Many sequences over one prefix cache; logits only where the decoder reads them.

    `allowed` (token ids the decoder can ever read: department names, separators, end)
    restricts the LM head to those rows; other logits are -inf, which changes nothing
    for a decoder that only compares allowed tokens. Finished sequences leave the
    batch, and tokens fed speculatively can be taken back (masked out) per sequence.
    """

    def __init__(self, model, prefix: "PrefixCache | RowPrefixes", pad_id: int, *, full_logits: bool = False,
                 allowed: Sequence[int] | None = None):
        self.model, self.prefix, self.pad_id = model, prefix, pad_id
        self.device = device_of(model)  # every tensor fed to the model is made there
        self.split = None if full_logits else split_lm_head(model)
        self.head_rows = self._head_rows(allowed) if self.split is not None and allowed else None
        self.cache = None
        self.mask: torch.Tensor | None = None
        self.next_pos: list[int] = []
        self.columns: list[list[int]] = []  # per row: the cache columns of its accepted tokens
        self.ids: list[int] = []  # the caller's sequence index of each row

    def _head_rows(self, allowed: Sequence[int]):
        head = self.split[1]
        weight, bias = getattr(head, "weight", None), getattr(head, "bias", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            return None  # e.g. a quantized head: keep the full product
        index = torch.tensor(sorted(set(allowed)), dtype=torch.long, device=weight.device)
        return index, weight[index], (bias[index] if isinstance(bias, torch.Tensor) else None), weight.shape[0]

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head_rows is None:
            return self.split[1](hidden)
        index, weight, bias, vocab = self.head_rows
        part = torch.nn.functional.linear(hidden, weight, bias)
        full = torch.full((hidden.shape[0], vocab), float("-inf"), dtype=part.dtype, device=part.device)
        full[:, index] = part
        return full

    def _forward(self, rows: list[list[int]], lengths: list[int], reads: list[list[int]]) -> list[torch.Tensor]:
        """Feed `rows` (padded); logits [len(reads[i]), vocab] at positions `reads[i]` of each row."""
        width = max(len(r) for r in rows)
        # built on the CPU (many small writes) and moved to the model's device in one copy each
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        first_column = 0 if self.mask is None else self.mask.shape[1]
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            new_mask[i, : lengths[i]] = 1
            positions[i] = self.next_pos[i] + torch.arange(width)
            self.columns[i].extend(range(first_column, first_column + lengths[i]))
        ids, new_mask, positions = (t.to(self.device) for t in (ids, new_mask, positions))
        self.mask = new_mask if self.mask is None else torch.cat([self.mask, new_mask], dim=1)
        inputs = dict(input_ids=ids, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache,
                      use_cache=True)
        for i, length in enumerate(lengths):
            self.next_pos[i] += length
        if self.split is None:
            out = self.model(**inputs)
            self.cache = out.past_key_values
            return [out.logits[i, r] for i, r in enumerate(reads)]
        body = self.split[0]
        out = body(**inputs)
        self.cache = out.past_key_values
        rows_idx = torch.tensor([i for i, r in enumerate(reads) for _ in r], dtype=torch.long, device=self.device)
        cols_idx = torch.tensor([p for r in reads for p in r], dtype=torch.long, device=self.device)
        logits = self._logits(out.last_hidden_state[rows_idx, cols_idx])
        # each sequence gets its own storage: one waiting in a carry batch must not keep its whole batch's logits
        return [part.clone() for part in torch.split(logits, [len(r) for r in reads])]

    @torch.no_grad()
    def start(self, requests: Sequence[Sequence[int]], drafts: Sequence[Sequence[int]] | None = None) -> list[Logits]:
        """Prefill each request followed by its draft tokens; logits at the request's last token and at each draft token."""
        batch = len(requests)
        drafts = drafts or [[] for _ in requests]
        self.cache = self.prefix.expand(batch, _float_dtype(self.model))
        self.mask = self.prefix.columns(batch, self.device)
        self.next_pos = self.prefix.starts(batch)
        self.columns = [[] for _ in range(batch)]
        self.ids = list(range(batch))
        rows = [list(r) + list(d) for r, d in zip(requests, drafts)]
        reads = [list(range(len(r) - 1, len(r) + len(d))) for r, d in zip(requests, drafts)]
        return self._forward(rows, [len(r) for r in rows], reads)

    def keep_rows(self, keep: list[int]) -> None:
        """Drop finished sequences from the batch (their cache rows cost compute on every step)."""
        if keep == self.ids:
            return
        rows = [self.ids.index(i) for i in keep]
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.next_pos = [self.next_pos[r] for r in rows]
        self.columns = [self.columns[r] for r in rows]
        self.ids = list(keep)

    def start_drafted(self, requests: Sequence[Sequence[int]], drafts: Sequence[Sequence[int]]) -> list[Logits]:
        return self.start(requests, drafts)

    def feed_drafted(self, pending: dict[int, Feed], take_back: dict[int, int]) -> dict[int, Logits]:
        return self.feed(pending, take_back)

    def absorbable(self) -> bool:
        """Whether rows of another stepper can join this one: a cache whose columns may be padded."""
        layers = getattr(self.cache, "layers", None)
        return self.mask is not None and bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def absorb(self, other: "CausalStepper", offset: int) -> None:
        """Take in `other`'s rows (same model and prefix), their ids shifted by `offset`.

        Both caches are padded to the longer one's columns with masked-out zeros; positions and
        accepted columns stay each row's own, so every row attends to exactly what it did before.
        """
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_columns(mine.keys, width, -2), _pad_columns(theirs.keys, width, -2)])
            mine.values = torch.cat([_pad_columns(mine.values, width, -2), _pad_columns(theirs.values, width, -2)])
        self.mask = torch.cat([_pad_columns(self.mask, width, -1), _pad_columns(other.mask, width, -1)])
        self.next_pos += other.next_pos
        self.columns += other.columns
        self.ids += [i + offset for i in other.ids]

    def _take_back(self, row: int, count: int) -> None:
        """Forget the last `count` accepted tokens of a row (a rejected draft): masked, positions reused."""
        for column in self.columns[row][-count:]:
            self.mask[row, column] = 0
        del self.columns[row][-count:]
        self.next_pos[row] -= count

    @torch.no_grad()
    def feed(self, pending: dict[int, Feed], take_back: dict[int, int] | None = None) -> dict[int, Logits]:
        """Append tokens to the pending sequences (all others are finished); logits at every fed position.

        `take_back[i]` tokens at the end of sequence i are withdrawn first.
        """
        self.keep_rows(sorted(pending))
        for i, count in (take_back or {}).items():
            if count:
                self._take_back(self.ids.index(i), count)
        rows = [pending[i] for i in self.ids]
        lengths = [len(r) for r in rows]
        logits = self._forward(rows, lengths, [list(range(n)) for n in lengths])
        return dict(zip(self.ids, logits))


class Seq2SeqStepper:
    """Encoder once per batch (soft prompt prepended to its input); decoder per sequence."""

    def __init__(self, model, soft_prompt: torch.Tensor | None, pad_id: int):
        self.model, self.soft_prompt, self.pad_id = model, soft_prompt, pad_id
        self.device = device_of(model)
        self.states: list[dict] = []

    @torch.no_grad()
    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        width = max(len(r) for r in requests)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(requests):
            ids[i, : len(row)] = torch.tensor(list(row))
            mask[i, : len(row)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        if self.soft_prompt is not None:
            soft = self.soft_prompt.to(embeds.device, embeds.dtype)[None].expand(len(requests), -1, -1)
            embeds = torch.cat([soft, embeds], dim=1)
            mask = torch.cat([torch.ones(len(requests), soft.shape[1], dtype=torch.long, device=self.device), mask], dim=1)
        encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        start_id = self.model.config.decoder_start_token_id
        self.states, firsts = [], []
        for i in range(len(requests)):
            state = {"enc": encoded.last_hidden_state[i : i + 1], "mask": mask[i : i + 1], "cache": None}
            self.states.append(state)
            firsts.append(self._decode(state, [start_id])[-1:])
        return firsts

    def _decode(self, state: dict, tokens: list[int]) -> torch.Tensor:
        out = self.model(
            encoder_outputs=(state["enc"],),
            attention_mask=state["mask"],
            decoder_input_ids=torch.tensor([tokens], device=self.device),
            past_key_values=state["cache"],
            use_cache=True,
        )
        state["cache"] = out.past_key_values
        return out.logits[0]

    @torch.no_grad()
    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        return {i: self._decode(self.states[i], tokens) for i, tokens in pending.items()}
