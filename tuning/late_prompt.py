"""Late deep prompt: learned keys/values in front of the input at the decoder layers >= K only.

The soft prompt is `n` virtual positions at the start of every sequence. At layers below K
those positions hold the frozen keys/values of a real text (the initialization text, by
default the business instruction): a hard prompt the model reads as it would any text. At
layers K and up they hold learned keys/values, initialized from the same text's own.

Because nothing below layer K depends on a learned weight, the hidden states entering layer
K are computed once per training example (`tuning.layer_cache`) and every training step runs
only layers K..L-1. At serving time the whole prefix is a plain key/value cache, so the frozen
shared base model serves it like any text prefix (`router.artifact`): no second model copy.

Decoder layers are called one by one with the model's rotary embeddings and an explicit
additive mask (prefix columns visible to every position, causal among the sequence); right
padding plus causality keeps pads out of the real tokens' states.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch


@dataclass
class DecoderParts:
    """The pieces of a plain causal LM (Llama-like: embed, layers, norm, rotary, head)."""

    embed: torch.nn.Module
    layers: Sequence[torch.nn.Module]
    norm: torch.nn.Module
    rotary: torch.nn.Module
    head: torch.nn.Module

    @classmethod
    def of(cls, model) -> "DecoderParts":
        body = getattr(model, "model", None)
        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        if body is None or not all(hasattr(body, name) for name in needed) or model.config.is_encoder_decoder:
            raise ValueError(
                "late-prompt tuning needs a decoder-only model with embed_tokens, layers, norm and rotary_emb "
                f"(Llama, Mistral, Qwen, SmolLM); {type(model).__name__} is not one: use --method prompt or lora"
            )
        return cls(body.embed_tokens, list(body.layers), body.norm, body.rotary_emb, model.get_output_embeddings())


class _PrefixOnly:
    """The one method of a transformers Cache an attention layer calls: prepend this layer's prefix."""

    def __init__(self, layers: dict[int, tuple[torch.Tensor, torch.Tensor]], batch: int):
        self.layers, self.batch = layers, batch

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        k, v = self.layers[layer_idx]
        k = k.to(keys.dtype).expand(self.batch, -1, -1, -1)
        v = v.to(values.dtype).expand(self.batch, -1, -1, -1)
        return torch.cat([k, keys], dim=2), torch.cat([v, values], dim=2)


def prefix_mask(prefix: int, width: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 1, width, prefix + width] additive mask: every prefix column visible, causal after it."""
    allowed = torch.ones(width, prefix + width, dtype=torch.bool)
    allowed[:, prefix:] = torch.ones(width, width, dtype=torch.bool).tril()
    mask = torch.zeros(width, prefix + width, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None].to(device)


def layer_inputs(parts: DecoderParts, hidden: torch.Tensor, prefix_length: int, dropout: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor],
                                                                    torch.Tensor]:
    """Positions, rotary (cos, sin) and additive mask of hidden states [b, t, d] after a prefix of `prefix_length`.

    `dropout`: the share of prompt positions hidden from each sequence (the same ones at every layer), a
    regularizer for training only."""
    batch, width = hidden.shape[:2]
    positions = (prefix_length + torch.arange(width, device=hidden.device))[None].expand(batch, -1)
    position_embeddings = parts.rotary(hidden, positions)
    mask = prefix_mask(prefix_length, width, hidden.dtype if hidden.dtype.is_floating_point else torch.float32,
                       hidden.device)
    if dropout > 0:  # drawn on the CPU: the same seed hides the same columns on any device
        hidden_columns = (torch.rand(batch, prefix_length, generator=generator) < dropout).to(hidden.device)
        mask = mask.expand(batch, -1, -1, -1).clone()
        mask[:, 0, :, :prefix_length].masked_fill_(hidden_columns[:, None, :], torch.finfo(mask.dtype).min)
    return positions, position_embeddings, mask


def run_layers(parts: DecoderParts, hidden: torch.Tensor, first: int, last: int,
               prefix: dict[int, tuple[torch.Tensor, torch.Tensor]], prefix_length: int,
               dropout: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hidden states [b, t, d] entering layer `first`, through layers first..last-1 after the prefix.

    `dropout`: the share of prompt positions hidden from each sequence (the same ones at every layer), a
    regularizer for training only.
    """
    batch = hidden.shape[0]
    positions, position_embeddings, mask = layer_inputs(parts, hidden, prefix_length, dropout, generator)
    cache = _PrefixOnly(prefix, batch)
    for layer in parts.layers[first:last]:
        hidden = layer(hidden, attention_mask=mask.to(hidden.dtype), position_ids=positions,
                       past_key_values=cache, position_embeddings=position_embeddings)
    return hidden


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """The model's attention as plain matrix products (transformers' `eager`) inside the block, then as before.

    A late prompt's training step attends over small matrices (~16 complaints x ~40 tokens, 20 prompt
    positions); there PyTorch's fused CPU attention kernel spends more on its backward than the layers' matrix
    products do, and the plain form makes a one-thread step ~1.5x faster (0.37 s against 0.55-0.63 s, layers
    8-29, 8 x 42 tokens); a forward alone over 32 x 42 tokens at two threads is ~1.1x faster (0.52 s against
    0.575 s). Set from one thread only: the setting is the model's, shared by every thread.
    """
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@torch.no_grad()
def text_keys_values(model, ids: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) [1, kv_heads, len(ids), head_dim] of a text run through the frozen model."""
    out = model(input_ids=torch.tensor([list(ids)], device=model.device), use_cache=True)
    return [(k.detach().float().clone(), v.detach().float().clone()) for k, v, *_ in out.past_key_values]


def init_ids(tokenizer, text: str, n: int) -> list[int]:
    """The first `n` tokens of `text` (repeated when it is shorter): the positions the prompt occupies."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the initialization text has no tokens")
    return [ids[i % len(ids)] for i in range(n)]


class LatePrompt(torch.nn.Module):
    """The trainable soft prompt: keys/values for layers >= first_layer; frozen text keys/values below."""

    def __init__(self, text_kv: list[tuple[torch.Tensor, torch.Tensor]], first_layer: int, random_init: bool = False,
                 seed: int = 0):
        super().__init__()
        if not 0 <= first_layer < len(text_kv):
            raise ValueError(f"first_layer {first_layer} is outside 0 to {len(text_kv) - 1} for this model")
        self.first_layer = first_layer
        self.length = text_kv[0][0].shape[-2]
        self.frozen = [(k, v) for k, v in text_kv[:first_layer]]
        keys = torch.stack([k[0] for k, _ in text_kv[first_layer:]])  # [layers, kv_heads, n, head_dim]
        values = torch.stack([v[0] for _, v in text_kv[first_layer:]])
        if random_init:
            generator = torch.Generator().manual_seed(seed)  # on the CPU: the same start on any device
            keys = torch.randn(keys.shape, generator=generator).to(keys.device) * keys.std()
            values = torch.randn(values.shape, generator=generator).to(values.device) * values.std()
        self.keys = torch.nn.Parameter(keys.clone())
        self.values = torch.nn.Parameter(values.clone())

    @property
    def num_layers(self) -> int:
        return len(self.frozen) + self.keys.shape[0]

    def learned(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Layer index -> (keys, values) [1, kv_heads, n, head_dim] for the layers the prompt acts on."""
        return {self.first_layer + i: (self.keys[i][None], self.values[i][None]) for i in range(self.keys.shape[0])}

    @torch.no_grad()
    def load(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Take learned keys/values of this prompt's shape (`read_start` checks it) as the starting point."""
        self.keys.copy_(keys.to(self.keys.device, self.keys.dtype))
        self.values.copy_(values.to(self.values.device, self.values.dtype))

    def all_layers(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        return {**dict(enumerate(self.frozen)), **self.learned()}

    def lower(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        return dict(enumerate(self.frozen))


@dataclass
class Start:
    """A tuned late prompt to continue from: its initialization text and ids, its learned keys/values."""

    init_text: str
    init_ids: list[int]
    keys: torch.Tensor
    values: torch.Tensor


def read_start(base, config, path) -> Start:
    """The late-prompt artifact at `path` as a starting point for `config` (refused: another base model,
    another method, another prompt layer or length)."""
    from router.artifact import ArtifactError, check_base, read_metadata
    from router.soft_prompt import LATE_PROMPT, check_shape, read_late_prompt

    metadata = read_metadata(path)
    if metadata.get("method") != LATE_PROMPT:
        raise ArtifactError(f"{path}: init_prompt must be a late-prompt artifact (this one is {metadata.get('method')!r})")
    check_base(metadata, base, path)
    stored, keys, values = read_late_prompt(path)
    for name, want in (("first_layer", config.prompt_layer), ("num_virtual_tokens", config.num_virtual_tokens)):
        if stored[name] != want:
            raise ArtifactError(f"{path}: its {name} is {stored[name]}, this tune's is {want}; pass "
                                f"--{'prompt-layer' if name == 'first_layer' else 'num-virtual-tokens'} {stored[name]}")
    try:
        check_shape(stored, keys, values, base.model.config, Path(path))  # with the two above: this prompt's shape
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    return Start(stored["init_text"], list(stored["init_ids"]), keys, values)
