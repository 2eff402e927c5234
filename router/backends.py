"""Steppers: feed tokens to a frozen model on top of a reusable prefix cache.

A prefix (soft prompt, or instruction + shots) is run once per loaded model;
its keys/values are copied into every batch, so each call only prefills the
complaint's own tokens. Padding inside a batch is masked and positions are
tracked per sequence, so a batch gives the same answers as one-at-a-time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache

from router.decoding import Feed, Logits


@dataclass
class PrefixCache:
    """Per-layer (key, value) tensors of a shared prefix, batch size 1."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    length: int

    @classmethod
    def empty(cls) -> "PrefixCache":
        return cls([], 0)

    @classmethod
    def from_cache(cls, cache) -> "PrefixCache":
        layers = [(k.detach(), v.detach()) for k, v, *_ in cache]
        return cls(layers, layers[0][0].shape[-2] if layers else 0)

    def expand(self, batch: int) -> DynamicCache:
        if not self.layers:
            return DynamicCache()
        return DynamicCache([(k.expand(batch, -1, -1, -1).contiguous(), v.expand(batch, -1, -1, -1).contiguous()) for k, v in self.layers])


@torch.no_grad()
def text_prefix_cache(model, ids: Sequence[int]) -> PrefixCache:
    if not ids:
        return PrefixCache.empty()
    out = model(input_ids=torch.tensor([list(ids)]), use_cache=True)
    return PrefixCache.from_cache(out.past_key_values)


@torch.no_grad()
def embeds_prefix_cache(model, embeds: torch.Tensor) -> PrefixCache:
    """Keys/values of a soft prompt given as input embeddings [n_virtual, hidden]."""
    embeds = embeds.to(model.dtype)
    out = model(inputs_embeds=embeds[None], use_cache=True)
    return PrefixCache.from_cache(out.past_key_values)


class CausalStepper:
    def __init__(self, model, prefix: PrefixCache, pad_id: int):
        self.model, self.prefix, self.pad_id = model, prefix, pad_id
        self.cache = None
        self.mask: torch.Tensor | None = None
        self.next_pos: list[int] = []

    def _forward(self, rows: list[list[int]], lengths: list[int]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            new_mask[i, : lengths[i]] = 1
            positions[i] = self.next_pos[i] + torch.arange(width)
        self.mask = new_mask if self.mask is None else torch.cat([self.mask, new_mask], dim=1)
        out = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache, use_cache=True
        )
        self.cache = out.past_key_values
        for i, length in enumerate(lengths):
            self.next_pos[i] += length
        return out.logits

    @torch.no_grad()
    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        batch = len(requests)
        self.cache = self.prefix.expand(batch)
        self.mask = torch.ones((batch, self.prefix.length), dtype=torch.long) if self.prefix.length else None
        self.next_pos = [self.prefix.length] * batch
        rows = [list(r) for r in requests]
        logits = self._forward(rows, [len(r) for r in rows])
        return [logits[i, len(r) - 1] for i, r in enumerate(rows)]

    @torch.no_grad()
    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        batch = len(self.next_pos)
        rows = [pending.get(i, [self.pad_id]) for i in range(batch)]
        lengths = [len(pending[i]) if i in pending else 0 for i in range(batch)]
        logits = self._forward(rows, lengths)
        return {i: logits[i, : len(tokens)] for i, tokens in pending.items()}


class Seq2SeqStepper:
    """Encoder once per batch (soft prompt prepended to its input); decoder per sequence."""

    def __init__(self, model, soft_prompt: torch.Tensor | None, pad_id: int):
        self.model, self.soft_prompt, self.pad_id = model, soft_prompt, pad_id
        self.states: list[dict] = []

    @torch.no_grad()
    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        width = max(len(r) for r in requests)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(requests):
            ids[i, : len(row)] = torch.tensor(list(row))
            mask[i, : len(row)] = 1
        embeds = self.model.get_input_embeddings()(ids)
        if self.soft_prompt is not None:
            soft = self.soft_prompt.to(embeds.dtype)[None].expand(len(requests), -1, -1)
            embeds = torch.cat([soft, embeds], dim=1)
            mask = torch.cat([torch.ones(len(requests), soft.shape[1], dtype=torch.long), mask], dim=1)
        encoded = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        start_id = self.model.config.decoder_start_token_id
        self.states, firsts = [], []
        for i in range(len(requests)):
            state = {"enc": encoded.last_hidden_state[i : i + 1], "mask": mask[i : i + 1], "cache": None}
            self.states.append(state)
            firsts.append(self._decode(state, [start_id])[-1])
        return firsts

    def _decode(self, state: dict, tokens: list[int]) -> torch.Tensor:
        out = self.model(
            encoder_outputs=(state["enc"],),
            attention_mask=state["mask"],
            decoder_input_ids=torch.tensor([tokens]),
            past_key_values=state["cache"],
            use_cache=True,
        )
        state["cache"] = out.past_key_values
        return out.logits[0]

    @torch.no_grad()
    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        return {i: self._decode(self.states[i], tokens) for i, tokens in pending.items()}
