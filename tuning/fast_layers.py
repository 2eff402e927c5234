"""A late prompt's training layers as plain tensor arithmetic: the same sums, fewer calls.

A training step of a late prompt runs the frozen decoder layers K..L-1 over small batches (8 complaints x ~45
tokens per shard). transformers' decoder layer spends much of such a step outside the matrix products: module
calls, the cache object's update, autocast casting every frozen fp32 weight to bf16 again at every call (it caches
casts only for weights that take gradients). `UpperLayers` reads the frozen weights of layers K..L-1 once, in the
precision the step computes in (bf16 copies of the matrices under bf16 autocast, the model's own tensors in fp32),
and runs Llama's attention and MLP as transformers' eager code does (`tests/test_fast_layers.py` checks the loss and
gradients against it). Measured in a real tune's two-shard steps: ~1.25x (README, Tuning). Compiling the function
with `torch.compile` was measured too and gave nothing more in those steps (1.22x), so it is not compiled.

Llama-architecture models only (SmolLM2, Llama, and others with `model_type` "llama" and no biases); any other
decoder runs transformers' own layers (`tuning.late_prompt.run_layers`).
"""

from __future__ import annotations

import torch


def unsupported(model) -> str | None:
    """Why `model`'s layers cannot run here, or None when they can."""
    config = model.config
    if getattr(config, "model_type", None) != "llama":
        return f"model_type {getattr(config, 'model_type', None)!r} is not llama"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "the model's projections have biases"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) != 1:
        return "the model's MLP is not a plain SiLU-gated one"
    return None


def _rms(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # transformers' LlamaRMSNorm, then the cast autocast makes at the next matrix product
    x = hidden.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * x.to(hidden.dtype)).to(hidden.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def decoder_layer(hidden: torch.Tensor, w: dict[str, torch.Tensor], prefix_keys: torch.Tensor,
                  prefix_values: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                  heads: int, kv_heads: int, eps: float) -> torch.Tensor:
    """One Llama decoder layer over `hidden` [b, t, d] with learned keys/values [1, kv_heads, n, hd] in front."""
    b, t, d = hidden.shape
    hd = w["q"].shape[0] // heads
    x = _rms(hidden, w["input_norm"], eps)
    q = (x @ w["q"].T).view(b, t, heads, hd).transpose(1, 2)
    k = (x @ w["k"].T).view(b, t, kv_heads, hd).transpose(1, 2)
    v = (x @ w["v"].T).view(b, t, kv_heads, hd).transpose(1, 2)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    k = torch.cat((prefix_keys.to(k.dtype).expand(b, -1, -1, -1), k), dim=2)
    v = torch.cat((prefix_values.to(v.dtype).expand(b, -1, -1, -1), v), dim=2)
    groups = heads // kv_heads
    k = k[:, :, None].expand(-1, -1, groups, -1, -1).reshape(b, heads, -1, hd)  # transformers' repeat_kv
    v = v[:, :, None].expand(-1, -1, groups, -1, -1).reshape(b, heads, -1, hd)
    scores = (q @ k.transpose(2, 3)) * hd ** -0.5 + mask
    attended = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v
    hidden = hidden + attended.transpose(1, 2).reshape(b, t, heads * hd) @ w["o"].T
    x = _rms(hidden, w["post_norm"], eps)
    return hidden + (torch.nn.functional.silu(x @ w["gate"].T) * (x @ w["up"].T)) @ w["down"].T


def _weights(layer, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    attn, mlp = layer.self_attn, layer.mlp

    def matrix(linear) -> torch.Tensor:
        return linear.weight.detach().to(dtype)  # the model's own tensor when dtype matches: nothing copied

    return {"q": matrix(attn.q_proj), "k": matrix(attn.k_proj), "v": matrix(attn.v_proj), "o": matrix(attn.o_proj),
            "gate": matrix(mlp.gate_proj), "up": matrix(mlp.up_proj), "down": matrix(mlp.down_proj),
            "input_norm": layer.input_layernorm.weight.detach(), "post_norm": layer.post_attention_layernorm.weight.detach()}


class UpperLayers:
    """Layers first..last-1 of a Llama model, frozen, as `decoder_layer` calls in the compute dtype."""

    def __init__(self, model, layers, first: int, last: int, dtype: torch.dtype):
        config = model.config
        self.first, self.last, self.dtype = first, last, dtype
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.eps = float(config.rms_norm_eps)
        self.weights = {i: _weights(layers[i], dtype) for i in range(first, last)}

    def run(self, hidden: torch.Tensor, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]], cos: torch.Tensor,
            sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states [b, t, d] entering layer `first`, through layers first..last-1 with `prefix`'s keys/values
        (layer -> [1, kv_heads, n, hd]) in front; rotary cos/sin and the additive mask as `layer_inputs` makes them."""
        hidden, cos, sin, mask = hidden.to(self.dtype), cos.to(self.dtype), sin.to(self.dtype), mask.to(self.dtype)
        for i in range(self.first, self.last):
            keys, values = prefix[i]
            hidden = decoder_layer(hidden, self.weights[i], keys, values, cos, sin, mask, self.heads, self.kv_heads,
                                   self.eps)
        return hidden


__all__ = ["UpperLayers", "decoder_layer", "unsupported"]
