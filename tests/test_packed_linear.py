"""Pre-packed linear layers in the tuned model's merged copy: faster, and the same numbers bit for bit."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from router.artifact import load_tuned_model, merged_lora_model
from router.engine import Engine
from router.packed_linear import PackedLinear, pack_linears
from tests.test_precision import _served_base
from tests.test_tuning_methods import TEXTS, _tune

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


def _linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_packing_never_changes_a_logit(tokenizer, precision):
    """Layers are packed only where the product stays bit-identical (bf16 here); the rest keep nn.Linear."""
    model = _served_base(tokenizer, precision).model
    packed_model = copy.deepcopy(model)
    count = pack_linears(packed_model)
    ids = torch.tensor([tokenizer("the parcel came crushed and nobody answers the phone")["input_ids"]] * 3)
    with torch.inference_mode():
        assert torch.equal(packed_model(input_ids=ids).logits, model(input_ids=ids).logits)
    assert count == sum(isinstance(m, PackedLinear) for m in packed_model.modules())
    assert type(packed_model.lm_head) is torch.nn.Linear, "the output head (tied to the embeddings) stays as it is"
    assert packed_model.lm_head.weight is packed_model.model.embed_tokens.weight


@needs_onednn
def test_bf16_packs_every_decoder_linear_layer(tokenizer):
    model = _served_base(tokenizer, "bf16").model
    decoder_layers = len(_linears(model)) - 1  # all but the LM head
    assert pack_linears(model) == decoder_layers
    assert _linears(model) == [model.lm_head]


@needs_onednn
def test_lora_artifact_serves_packed_with_the_same_answers_and_leaves_the_base_alone(
    tokenizer, tiny_base, tiny_train_file, tmp_path
):
    artifact, _ = _tune(tiny_base, tiny_train_file, tmp_path, "lora")
    base = _served_base(tokenizer, "bf16")
    linears_before = len(_linears(base.model))
    soft = load_tuned_model(artifact, base)
    assert any(isinstance(m, PackedLinear) for m in soft.model.modules())
    assert len(_linears(base.model)) == linears_before, "the shared base model is never packed"

    plain = dataclasses.replace(soft, model=merged_lora_model(base, artifact))  # the same merge, unpacked
    engine = Engine(base)
    got = engine.route_many(TEXTS, "tuned", tuned=soft, batch_size=len(TEXTS))
    want = engine.route_many(TEXTS, "tuned", tuned=plain, batch_size=len(TEXTS))
    assert [(r.departments, r.confidence) for r in got] == [(r.departments, r.confidence) for r in want]
    assert load_tuned_model(artifact, base).model is not soft.model, "the base can be merged into again"
