"""A late prompt's training layers as plain arithmetic (`tuning.fast_layers`) give transformers' sums."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from tests.test_late_prompt import _config, _deep_tiny, cached_tiny_prompt


def _setup(tokenizer, tiny_train_file, dtype=torch.float32):
    return cached_tiny_prompt(tokenizer, tiny_train_file, first_layer=1, dtype=dtype)


def _autocast(dtype):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()


def _loss_and_grads(base, parts, prompt, cached, loss_name, upper, dtype, dropout=0.0):
    from tuning.late_objective import late_prompt_loss
    from tuning.late_prompt import eager_attention

    torch.manual_seed(11)  # prompt dropout draws the hidden columns from the global generator
    with eager_attention(base.model):  # as a training step runs transformers' layers
        loss = late_prompt_loss(parts, prompt, cached, loss_name, _autocast(dtype), dropout, upper)
    return float(loss.detach()), torch.autograd.grad(loss, [prompt.keys, prompt.values])


@pytest.mark.parametrize("loss_name,dropout,dtype", [("decisions", 0.0, torch.float32), ("lm", 0.0, torch.float32),
                                                     ("decisions", 0.3, torch.float32),
                                                     ("decisions", 0.0, torch.bfloat16)])
def test_plain_arithmetic_gives_the_loss_and_gradients_of_transformers_layers(tokenizer, tiny_train_file, loss_name,
                                                                              dropout, dtype):
    from tuning.objectives import upper_layers

    base, parts, prompt, cached = _setup(tokenizer, tiny_train_file, dtype)
    upper = upper_layers(base.model, parts, prompt.first_layer, dtype)
    assert upper is not None, "a Llama model on the CPU trains through it"
    reference, reference_grads = _loss_and_grads(base, parts, prompt, cached, loss_name, None, dtype, dropout)
    fast, fast_grads = _loss_and_grads(base, parts, prompt, cached, loss_name, upper, dtype, dropout)
    # fp32: the same sums up to summation order; bf16: the same roundings but where a fused kernel rounds elsewhere
    rel, atol = (1e-6, 1e-7) if dtype == torch.float32 else (1e-2, 1e-3)
    assert fast == pytest.approx(reference, rel=rel)
    for a, b in zip(fast_grads, reference_grads):
        assert float((a - b).abs().max()) <= atol + rel * float(b.abs().max())


def test_a_tune_through_it_learns_and_other_models_keep_transformers_layers(tokenizer, tiny_train_file):
    from router.dataset import load_examples
    from tuning.fast_layers import unsupported
    from tuning.late_prompt import DecoderParts
    from tuning.objectives import upper_layers
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    result = train(base, load_examples(tiny_train_file), _config(prompt_layer=2))
    assert result.trained.upper is not None and result.epoch_losses[-1] < result.epoch_losses[0]
    parts = DecoderParts.of(base.model)
    base.model.config.attention_bias = True
    assert "biases" in unsupported(base.model)
    assert upper_layers(base.model, parts, 2, torch.float32) is None, "transformers' own layers then"
    base.model.config.attention_bias = False
    base.model.config.model_type = "qwen2"
    assert "qwen2" in unsupported(base.model) and upper_layers(base.model, parts, 2, torch.float32) is None
