"""Every tuning method on the tiny model: trains, saves a PEFT artifact, serves, and agrees with PEFT's own forward."""

from __future__ import annotations

import pytest
import torch

from router.artifact import load_tuned_model
from router.departments import DEPARTMENTS
from router.engine import Engine
from router.reference import load_reference, route_uncached

TEXTS = ["my blender died", "three of the four chairs are missing and the box was crushed", "rude agent on the phone"]


def _tune(tiny_base, tiny_train_file, tmp_path, method):
    from router.dataset import load_examples
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    lr = 0.005 if method == "lora" else 0.3
    extra = {"prompt_layer": 1} if method == "late-prompt" else {}
    config = TuningConfig(method=method, epochs=3, num_virtual_tokens=4, learning_rate=lr, val_fraction=0.0, batch_size=4,
                          **extra)
    result = train(tiny_base, load_examples(tiny_train_file), config)
    out = tmp_path / method
    return save_artifact(result, build_metadata(tiny_base, config, result, tiny_train_file, method), out), result


@pytest.mark.parametrize("method", ["late-prompt", "prompt", "prefix", "lora"])
def test_method_trains_serves_and_matches_uncached_peft(tiny_base, tiny_train_file, tmp_path, method):
    before = {k: v.clone() for k, v in tiny_base.model.state_dict().items()}
    engine = Engine(tiny_base)
    zero_before = [r.departments for r in engine.route_many(TEXTS, "zero-shot", batch_size=len(TEXTS))]
    artifact, result = _tune(tiny_base, tiny_train_file, tmp_path, method)
    assert result.epoch_losses[-1] < result.epoch_losses[0], "loss goes down"
    soft = load_tuned_model(artifact, tiny_base)
    fast = engine.route_many(TEXTS, "tuned", tuned=soft, batch_size=len(TEXTS))
    slow = route_uncached(tiny_base, load_reference(tiny_base, artifact), TEXTS)
    assert [r.departments for r in fast] == [d.departments for d in slow]
    for f, s in zip(fast, slow):
        for name in DEPARTMENTS:
            assert f.confidence[name] == pytest.approx(s.confidence[name], abs=1e-3)
    after = tiny_base.model.state_dict()
    assert set(after) == set(before), "no adapter layers left in the shared base model"
    assert all(torch.equal(before[k], after[k]) for k in before), "the base model's weights never change"
    assert [r.departments for r in Engine(tiny_base).route_many(TEXTS, "zero-shot", batch_size=len(TEXTS))] == zero_before


def test_lora_learning_rate_range_differs_from_prompt_tuning():
    from pydantic import ValidationError

    from tuning.config import TuningConfig

    TuningConfig(method="lora", learning_rate=0.001)
    with pytest.raises(ValidationError, match="outside the range 0.01 to 0.5 for prefix tuning"):
        TuningConfig(method="prefix", learning_rate=0.001)
    with pytest.raises(ValidationError, match="for lora tuning"):
        TuningConfig(method="lora", learning_rate=0.3)


@pytest.mark.parametrize("method", ["late-prompt", "prompt", "prefix", "lora"])
def test_plain_peft_generate_gives_the_fast_path_answer(tiny_base, tiny_train_file, tmp_path, method):
    from router.reference import generate_reference

    artifact, _ = _tune(tiny_base, tiny_train_file, tmp_path, method)
    fast = Engine(tiny_base).route_many(TEXTS, "tuned", tuned=load_tuned_model(artifact, tiny_base), batch_size=len(TEXTS))
    reference = generate_reference(tiny_base, load_reference(tiny_base, artifact), TEXTS)
    assert [r.departments for r in fast] == [names for names, _ in reference]


@pytest.mark.parametrize("method", ["prompt", "prefix", "lora"])
def test_answer_only_loss_equals_the_models_own_loss(tiny_base, tiny_train_file, method):
    """Training applies the LM head only where answer tokens are predicted; the loss must not change."""
    from contextlib import nullcontext

    from router.codec import LabelCodec
    from router.dataset import load_examples
    from router.prompting import tuned_prompt
    from tuning.batches import answer_loss, causal_batch, encode_examples, keeps_logits_subset, virtual_tokens
    from tuning.config import TuningConfig
    from tuning.peft_setup import build_peft_model

    config = TuningConfig(method=method, num_virtual_tokens=4, learning_rate=0.005 if method == "lora" else 0.3)
    model = build_peft_model(tiny_base, config)
    torch.manual_seed(0)
    with torch.no_grad():  # move the trainable weights off their init so every path is exercised
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    codec = LabelCodec.for_tokenizer(tiny_base.tokenizer)
    items = encode_examples(load_examples(tiny_train_file)[:6], tiny_base.tokenizer, codec, tuned_prompt(), 64)
    batch = causal_batch(items, tiny_base.tokenizer.pad_token_id)
    assert keeps_logits_subset(model)
    model.eval()
    with torch.no_grad():
        full = model(**batch).loss
        fast = answer_loss(model, batch, virtual_tokens(model), nullcontext())
    assert float(fast) == pytest.approx(float(full), rel=1e-5)
