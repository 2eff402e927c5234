"""A seq2seq base model (tiny random T5) works through the same strategies, tuning and artifacts."""

from __future__ import annotations

import hashlib

import pytest
import torch

from router.departments import DEPARTMENTS


@pytest.fixture
def tiny_t5(tokenizer):
    return make_tiny_t5(tokenizer)


def make_tiny_t5(tokenizer):
    """A tiny random T5 behind the real tokenizer."""
    from transformers import T5Config, T5ForConditionalGeneration

    from router.modelio import BaseModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    model = T5ForConditionalGeneration(config).eval()
    model.requires_grad_(False)
    return BaseModel(model, tokenizer, "tiny-t5", hashlib.sha256(b"tiny-t5").hexdigest(), True, 0.0, False)


def test_seq2seq_model_routes_with_every_strategy_after_tuning(tiny_t5, tiny_train_file, tmp_path):
    from router.service import RouterService
    from router.settings import Settings
    from tests.conftest import tune_tiny

    artifact, result = tune_tiny(tiny_t5, tiny_train_file, tmp_path / "t5-prompt", epochs=2, method="prompt")
    assert result.epoch_losses[-1] == result.epoch_losses[-1]  # a real number, training ran
    service = RouterService(Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, tuned_model=artifact),
                            base=tiny_t5)
    for strategy in ("zero-shot", "multi-shot", "tuned"):
        routed = service.route_many(["the box was crushed", "agent was rude"], strategy)
        for r in routed:
            assert r.departments and set(r.departments) <= set(DEPARTMENTS)
    assert service.route("box crushed", "tuned").virtual_tokens == 4


def test_prefix_method_is_refused_for_seq2seq_with_a_clear_message(tiny_t5, tiny_train_file, tmp_path):
    from tests.conftest import tune_tiny

    with pytest.raises(ValueError, match="prefix is supported for causal models"):
        tune_tiny(tiny_t5, tiny_train_file, tmp_path / "x", method="prefix")
