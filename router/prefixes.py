"""Key/value prefixes every sequence of a batch is decoded after: one shared prefix, or one per row."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


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

    def to(self, dtype: torch.dtype) -> "PrefixCache":
        """The same prefix with keys/values in `dtype` (the serving model's)."""
        return PrefixCache([(k.to(dtype), v.to(dtype)) for k, v in self.layers], self.length)

    def expand(self, batch: int, dtype: torch.dtype | None = None) -> DynamicCache:
        """A fresh cache for `batch` sequences (keys/values cast to `dtype` if given)."""
        if not self.layers:
            return DynamicCache()

        def grow(t: torch.Tensor) -> torch.Tensor:
            t = t.expand(batch, -1, -1, -1)
            return t.to(dtype).contiguous() if dtype is not None else t.contiguous()

        return DynamicCache([(grow(k), grow(v)) for k, v in self.layers])

    def columns(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """Attention mask [batch, length] over the prefix's columns (None when there is no prefix)."""
        return torch.ones((batch, self.length), dtype=torch.long, device=device) if self.length else None

    def starts(self, batch: int) -> list[int]:
        """Each row's first position after the prefix."""
        return [self.length] * batch


@dataclass
class RowPrefixes:
    """A different prefix per row (several soft prompts in one batch) on one model.

    Each row's prefix fills its first columns; shorter ones are padded with masked-out zeros, and
    each row's text starts at its own prefix's length, so a row attends to exactly what it would alone.
    """

    rows: list[PrefixCache]

    @property
    def length(self) -> int:
        return max(p.length for p in self.rows)

    def expand(self, batch: int, dtype: torch.dtype | None = None) -> DynamicCache:
        if batch != len(self.rows):
            raise ValueError(f"{len(self.rows)} row prefixes for a batch of {batch}")
        width = self.length
        layers = []
        for index in range(len(self.rows[0].layers)):
            keys = [_pad_columns(p.layers[index][0], width, -2) for p in self.rows]
            values = [_pad_columns(p.layers[index][1], width, -2) for p in self.rows]
            k, v = torch.cat(keys), torch.cat(values)
            layers.append((k.to(dtype) if dtype is not None else k, v.to(dtype) if dtype is not None else v))
        return DynamicCache(layers)

    def columns(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        mask = torch.zeros((batch, self.length), dtype=torch.long)
        for row, prefix in enumerate(self.rows):
            mask[row, : prefix.length] = 1
        return mask.to(device)

    def starts(self, batch: int) -> list[int]:
        return [p.length for p in self.rows]


def _pad_columns(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """`t` with zeros appended along `dim` (-1 or -2) up to `width`."""
    missing = width - t.shape[dim]
    if not missing:
        return t
    return torch.nn.functional.pad(t, (0, missing) if dim == -1 else (0, 0, 0, missing))
