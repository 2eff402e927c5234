"""Constrained decoding on tiny models: always a valid department list, confidences from the model."""

from __future__ import annotations

import pytest
import torch

from router.backends import CausalStepper, PrefixCache
from router.codec import LabelCodec
from router.decoding import decode_batch
from router.departments import DEPARTMENTS
from tests.conftest import make_tiny_base


def test_codec_answer_ids_round_trip(tokenizer):
    codec = LabelCodec.for_tokenizer(tokenizer)
    ids = codec.answer_ids(["Warehouse", "Packaging"])
    assert tokenizer.decode(ids[:-1]) == " Warehouse, Packaging"
    assert ids[-1] == tokenizer.eos_token_id
    assert len({ids[0] for ids in codec.name_ids}) == len(DEPARTMENTS), "one step decides the department"


class BiasedModel(torch.nn.Module):
    """Wraps a tiny model and adds a fixed bias to chosen tokens: lets a test steer the decoder."""

    def __init__(self, inner, bias: dict[int, float]):
        super().__init__()
        self.inner, self.bias = inner, bias

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        for token, value in self.bias.items():
            out.logits[..., token] += value
        return out


def test_decoder_never_emits_anything_outside_the_trie(tokenizer):
    codec = LabelCodec.for_tokenizer(tokenizer)
    base = make_tiny_base(tokenizer, seed=3)
    ceo = tokenizer(" CEO", add_special_tokens=False)["input_ids"][0]
    model = BiasedModel(base.model, {ceo: 50.0, tokenizer.eos_token_id: 50.0})  # the model "wants" CEO, then stop
    stepper = CausalStepper(model, PrefixCache.empty(), tokenizer.pad_token_id)
    prompts = [tokenizer("output CEO\nDepartments:", add_special_tokens=False)["input_ids"]]
    decoded = decode_batch(stepper, codec, prompts)[0]
    assert len(decoded.departments) == 1 and decoded.departments[0] in DEPARTMENTS, "never empty, never CEO"


def test_decoder_follows_the_model_and_reports_its_confidence(tokenizer):
    codec = LabelCodec.for_tokenizer(tokenizer)
    base = make_tiny_base(tokenizer, seed=4)
    warehouse, packaging = codec.name_ids[3][0], codec.name_ids[5][0]
    bias = {warehouse: 30.0, packaging: 25.0, codec.sep_ids[0]: 20.0}
    stepper = CausalStepper(BiasedModel(base.model, bias), PrefixCache.empty(), tokenizer.pad_token_id)
    decoded = decode_batch(stepper, codec, [tokenizer("missing sheets", add_special_tokens=False)["input_ids"]])[0]
    # Warehouse first (highest), then Packaging; the separator bias may carry on to Marketing, the only one left.
    assert decoded.departments[:2] == ["Warehouse", "Packaging"]
    assert decoded.departments == [d for d in DEPARTMENTS if d in decoded.departments]
    assert decoded.confidence["Warehouse"] > 0.9 and decoded.confidence["Planning"] < 0.01
    assert decoded.generated_tokens == len(codec.answer_ids(decoded.departments))


def test_prefix_cache_equals_full_prefill(tokenizer):
    from router.backends import text_prefix_cache

    codec = LabelCodec.for_tokenizer(tokenizer)
    base = make_tiny_base(tokenizer, seed=5)
    prefix = tokenizer("Route complaints.\n", add_special_tokens=False)["input_ids"]
    texts = ["my lamp is broken\nDepartments:", "two chairs missing from the order and the box was crushed\nDepartments:"]
    requests = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    cached = decode_batch(CausalStepper(base.model, text_prefix_cache(base.model, prefix), tokenizer.pad_token_id),
                          codec, requests)
    full = [decode_batch(CausalStepper(base.model, PrefixCache.empty(), tokenizer.pad_token_id), codec, [prefix + r])[0]
            for r in requests]
    assert [d.departments for d in cached] == [d.departments for d in full]
    for a, b in zip(cached, full):
        for name in DEPARTMENTS:
            assert a.confidence[name] == pytest.approx(b.confidence[name], abs=1e-4)


def _counting(stepper):
    """Counts the stepper's forward passes."""
    calls = []
    forward = stepper._forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    stepper._forward = counted
    return calls


def test_speculative_draft_changes_nothing_but_the_number_of_forward_passes(tokenizer):
    from router.backends import text_prefix_cache

    codec = LabelCodec.for_tokenizer(tokenizer)
    base = make_tiny_base(tokenizer, seed=6)
    prefix = text_prefix_cache(base.model, tokenizer("Route complaints.\n", add_special_tokens=False)["input_ids"])
    texts = ["lamp broken", "two chairs missing and the box was crushed and nobody on the phone could help",
             "coupon refused", "the ad showed a blue one", "drill stopped after a week, I want a replacement"]
    requests = [tokenizer(t + "\nDepartments:", add_special_tokens=False)["input_ids"] for t in texts]

    def run(drafts):
        stepper = CausalStepper(base.model, prefix, tokenizer.pad_token_id, allowed=codec.token_ids)
        calls = _counting(stepper)
        return decode_batch(stepper, codec, requests, drafts), len(calls)

    plain, plain_calls = run(None)
    answers = [d.departments for d in plain]
    assert plain_calls >= 2
    exact, exact_calls = run(answers)
    assert exact_calls == 1, "a draft the model agrees with is verified in the prefill alone"
    wrong = [list(DEPARTMENTS)] + [["Marketing"], [], ["Planning", "L3"], list(reversed(answers[0]))]
    for drafts in (wrong, answers[:2] + wrong[2:]):
        decoded, _ = run(drafts)
        assert [d.departments for d in decoded] == answers
        for a, b in zip(decoded, plain):
            for name in DEPARTMENTS:
                assert a.confidence[name] == pytest.approx(b.confidence[name], abs=1e-4)
            assert a.generated_tokens == b.generated_tokens
