"""Serving precision and the LM-head-at-read-positions path, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from router.artifact import load_tuned_model
from router.backends import CausalStepper, PrefixCache, split_lm_head, text_prefix_cache
from router.departments import DEPARTMENTS
from router.engine import Engine
from router.modelio import apply_precision
from tests.conftest import make_tiny_base
from tests.test_tuning_methods import TEXTS, _tune


def _ids(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_logits_at_read_positions_equal_full_logits(tokenizer):
    base = make_tiny_base(tokenizer, seed=7)
    assert split_lm_head(base.model) is not None, "a Llama splits into decoder body and LM head"
    prefix = text_prefix_cache(base.model, _ids(tokenizer, ["Route complaints.\n"])[0])
    requests = _ids(tokenizer, ["short", "a much longer complaint about a fridge that stopped cooling"])
    fast = CausalStepper(base.model, prefix, tokenizer.pad_token_id)
    full = CausalStepper(base.model, prefix, tokenizer.pad_token_id, full_logits=True)
    assert fast.split is not None and full.split is None
    for a, b in zip(fast.start(requests), full.start(requests)):
        assert a.shape == b.shape == (1, len(tokenizer))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    pending = {0: [11, 12, 13], 1: [14]}
    fed_fast, fed_full = fast.feed(pending), full.feed(pending)
    for i, tokens in pending.items():
        assert fed_fast[i].shape == (len(tokens), len(tokenizer))
        torch.testing.assert_close(fed_fast[i], fed_full[i], atol=1e-5, rtol=1e-5)


def test_head_restricted_to_answer_tokens_gives_their_logits_and_nothing_else(tokenizer):
    from router.codec import LabelCodec

    base = make_tiny_base(tokenizer, seed=9)
    allowed = LabelCodec.for_tokenizer(tokenizer).token_ids
    requests = _ids(tokenizer, ["the kettle leaks", "two of the four chairs never came"])
    narrow = CausalStepper(base.model, PrefixCache.empty(), tokenizer.pad_token_id, allowed=allowed)
    full = CausalStepper(base.model, PrefixCache.empty(), tokenizer.pad_token_id, full_logits=True)
    for a, b in zip(narrow.start(requests), full.start(requests)):
        torch.testing.assert_close(a[:, allowed], b[:, allowed], atol=1e-5, rtol=1e-5)
        others = torch.ones(len(tokenizer), dtype=torch.bool)
        others[allowed] = False
        assert torch.isneginf(a[:, others]).all()


def test_unknown_model_structure_falls_back_to_full_logits(tokenizer):
    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    base = make_tiny_base(tokenizer, seed=8)
    stepper = CausalStepper(Wrapped(base.model), PrefixCache.empty(), tokenizer.pad_token_id)
    assert stepper.split is None
    reference = CausalStepper(base.model, PrefixCache.empty(), tokenizer.pad_token_id)
    torch.testing.assert_close(stepper.start(_ids(tokenizer, ["my lamp"]))[0], reference.start(_ids(tokenizer, ["my lamp"]))[0])


def _served_base(tokenizer, precision):
    base = make_tiny_base(tokenizer)  # same seed and fingerprint as the `tiny_base` the artifacts are tuned on
    base.model = apply_precision(base.model, precision)
    base.precision = precision
    return base


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("method", ["prompt", "prefix", "lora"])
def test_reduced_precision_serves_every_method(tokenizer, tiny_base, tiny_train_file, tmp_path, precision, method):
    artifact, _ = _tune(tiny_base, tiny_train_file, tmp_path, method)
    fp32 = Engine(tiny_base).route_many(TEXTS, "tuned", tuned=load_tuned_model(artifact, tiny_base), batch_size=len(TEXTS))
    base = _served_base(tokenizer, precision)
    soft = load_tuned_model(artifact, base)
    if method == "lora":
        linear = soft.model.get_output_embeddings()
        if precision == "bf16":
            assert soft.model.dtype == torch.bfloat16, "the merged LoRA model is served in bf16"
        else:
            assert type(linear).__module__.startswith("torch.ao.nn.quantized"), "the merged LoRA model is int8"
    engine = Engine(base)
    reduced = engine.route_many(TEXTS, "tuned", tuned=soft, batch_size=len(TEXTS))
    singles = [engine.route_many([t], "tuned", tuned=soft, batch_size=1)[0] for t in TEXTS]
    for r in reduced:
        assert r.departments and r.departments == [d for d in DEPARTMENTS if d in r.departments]
    if precision == "bf16":  # dynamic int8 scales activations per batch, so only bf16 promises batch == single
        assert [r.departments for r in reduced] == [r.departments for r in singles], "batched == one at a time"
    for a, b in zip(reduced, fp32):  # close to the fp32 answer's confidences (bf16 has ~3 significant digits)
        for name in DEPARTMENTS:
            assert a.confidence[name] == pytest.approx(b.confidence[name], abs=0.08)
    for strategy in ("zero-shot", "multi-shot"):
        assert all(r.departments for r in engine.route_many(TEXTS, strategy, shots=0, batch_size=len(TEXTS)))


def test_route_many_keeps_input_order_across_length_sorted_batches(tiny_service):
    texts = ["a much longer complaint about a fridge that stopped cooling after a week of use", "hi",
             "the box was crushed", "rude agent", "two of the four chairs are missing and nobody calls me back", "ok"]
    batched = tiny_service.route_many(texts, "tuned", batch_size=2)
    singles = [tiny_service.route(t, "tuned") for t in texts]
    assert [r.departments for r in batched] == [r.departments for r in singles]
    assert [r.input_tokens for r in batched] == [r.input_tokens for r in singles], "each result is its own text's"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_lora_merge_equals_peft_merge_in_fp32_without_an_fp32_copy(tokenizer, tiny_train_file, tmp_path, precision):
    """Adapters folded one layer at a time give exactly PEFT's fp32 merge rounded to the served precision."""
    from peft import PeftModel

    from router.artifact import merged_lora_model
    from router.modelio import float_copy

    tiny = make_tiny_base(tokenizer)
    artifact, _ = _tune(tiny, tiny_train_file, tmp_path, "lora")
    base = _served_base(tokenizer, precision)
    merged = merged_lora_model(base, artifact)
    expected = apply_precision(PeftModel.from_pretrained(float_copy(base.model), str(artifact)).merge_and_unload(), precision)
    got, want = merged.state_dict(), expected.state_dict()
    assert set(got) == set(want) and not any("lora" in k for k in got)
    assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(got[k], base.model.state_dict()[k]) for k in want), "the adapters changed something"
