"""A late prompt's training layers as plain compiled arithmetic (`tuning.fast_layers`) give transformers' sums."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from router.codec import LabelCodec
from tests.test_late_prompt import _deep_tiny


def _setup(tokenizer, tiny_train_file, dtype=torch.float32):
    from router.dataset import load_examples
    from router.prompting import tuned_prompt
    from tuning.batches import encode_examples
    from tuning.late_prompt import DecoderParts, LatePrompt, init_ids, text_keys_values
    from tuning.layer_cache import cache_examples

    base = _deep_tiny(tokenizer)
    codec = LabelCodec.for_tokenizer(tokenizer)
    examples = load_examples(tiny_train_file)[:6]
    items = encode_examples(examples, tokenizer, codec, tuned_prompt(), 64)
    prompt = LatePrompt(text_keys_values(base.model, init_ids(tokenizer, "Route this complaint.", 5)), first_layer=1)
    with torch.no_grad():
        prompt.keys.add_(torch.randn_like(prompt.keys) * 0.3)
        prompt.values.add_(torch.randn_like(prompt.values) * 0.3)
    parts = DecoderParts.of(base.model)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()
    cached = cache_examples(parts, prompt, items, codec, [e.departments for e in examples], tokenizer.pad_token_id,
                            autocast, dtype)
    return base, parts, prompt, cached


def _loss_and_grads(base, parts, prompt, cached, loss_name, upper, dtype, dropout=0.0):
    from tuning.late_objective import late_prompt_loss
    from tuning.late_prompt import eager_attention

    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()
    torch.manual_seed(11)  # prompt dropout draws the hidden columns from the global generator
    with eager_attention(base.model):  # as a training step runs transformers' layers
        loss = late_prompt_loss(parts, prompt, cached, loss_name, autocast, dropout, upper)
    return float(loss.detach()), torch.autograd.grad(loss, [prompt.keys, prompt.values])


def _upper(base, parts, prompt, dtype, compile):
    from tuning.fast_layers import UpperLayers
    from tuning.late_prompt import prefix_mask

    upper = UpperLayers(base.model, parts.layers, prompt.first_layer, len(parts.layers), dtype, compile=compile)

    def rotary(hidden):
        return parts.rotary(hidden, (prompt.length + torch.arange(hidden.shape[1]))[None].expand(hidden.shape[0], -1))

    upper.prepare(prompt.learned(), prompt.length, rotary, lambda b, t: prefix_mask(prompt.length, t, dtype))
    assert prompt.keys.grad is None, "compiling leaves the prompt's gradients alone"
    return upper


@pytest.mark.parametrize("loss_name,dropout", [("decisions", 0.0), ("lm", 0.0), ("decisions", 0.3)])
def test_plain_arithmetic_gives_the_loss_and_gradients_of_transformers_layers(tokenizer, tiny_train_file, loss_name,
                                                                              dropout):
    base, parts, prompt, cached = _setup(tokenizer, tiny_train_file)
    upper = _upper(base, parts, prompt, torch.float32, compile=False)
    assert not upper.compiled
    reference, reference_grads = _loss_and_grads(base, parts, prompt, cached, loss_name, None, torch.float32, dropout)
    fast, fast_grads = _loss_and_grads(base, parts, prompt, cached, loss_name, upper, torch.float32, dropout)
    assert fast == pytest.approx(reference, rel=1e-6)
    for a, b in zip(fast_grads, reference_grads):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-5)


def test_compiled_layers_give_the_same_loss_and_gradients(tokenizer, tiny_train_file):
    """What a real tune runs: compiled once (one graph for every batch shape), fp32 and bf16."""
    for dtype, rel, atol in ((torch.float32, 1e-5, 1e-6), (torch.bfloat16, 2e-2, 2e-3)):
        base, parts, prompt, cached = _setup(tokenizer, tiny_train_file, dtype)
        upper = _upper(base, parts, prompt, dtype, compile=True)
        assert upper.compiled, "this machine compiles (a C++ compiler is part of its image)"
        reference, reference_grads = _loss_and_grads(base, parts, prompt, cached, "decisions", None, dtype)
        fast, fast_grads = _loss_and_grads(base, parts, prompt, cached, "decisions", upper, dtype)
        assert fast == pytest.approx(reference, rel=rel), dtype
        for a, b in zip(fast_grads, reference_grads):
            scale = float(b.abs().max())
            assert float((a - b).abs().max()) <= atol + rel * scale, dtype
        # another batch shape runs through the same compiled function
        shorter = [item for item in cached if item.states.shape[0] < max(i.states.shape[0] for i in cached)][:3]
        fast, _ = _loss_and_grads(base, parts, prompt, shorter, "decisions", upper, dtype)
        reference, _ = _loss_and_grads(base, parts, prompt, shorter, "decisions", None, dtype)
        assert fast == pytest.approx(reference, rel=rel)


def test_a_failed_compile_runs_uncompiled_and_says_so(tokenizer, tiny_train_file, monkeypatch, caplog):
    import tuning.fast_layers as fast_layers

    def no_compiler(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(fast_layers.torch, "compile", lambda fn, **kw: no_compiler)
    base, parts, prompt, cached = _setup(tokenizer, tiny_train_file)
    upper = _upper(base, parts, prompt, torch.float32, compile=True)
    assert not upper.compiled
    assert "runs uncompiled" in caplog.text and "No working C++ compiler" in caplog.text
    reference, _ = _loss_and_grads(base, parts, prompt, cached, "decisions", None, torch.float32)
    fast, _ = _loss_and_grads(base, parts, prompt, cached, "decisions", upper, torch.float32)
    assert fast == pytest.approx(reference, rel=1e-6)


def test_only_plain_llama_layers_run_as_arithmetic(tokenizer):
    from tuning.fast_layers import unsupported
    from tuning.objectives import upper_layers
    from tuning.late_prompt import DecoderParts

    base = _deep_tiny(tokenizer)
    parts = DecoderParts.of(base.model)
    assert unsupported(base.model) is None
    upper = upper_layers(base.model, parts, 2, torch.float32)
    assert upper is not None and upper._want_compile is False, "a tiny model is not worth compiling"
    base.model.config.attention_bias = True
    assert "biases" in unsupported(base.model)
    assert upper_layers(base.model, parts, 2, torch.float32) is None, "transformers' own layers then"
    base.model.config.attention_bias = False
    base.model.config.model_type = "qwen2"
    assert "qwen2" in unsupported(base.model)
