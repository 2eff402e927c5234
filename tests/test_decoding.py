"""Constrained decoding on tiny models: always a valid department list, confidences from the model."""

from __future__ import annotations

import pytest
import torch

from router.backends import CausalStepper, PrefixCache
from router.codec import LabelCodec
from router.decoding import CarryingStepper, SpeculativeStepper, decode_batch
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


def test_batches_share_follow_up_steps_and_answer_as_if_decoded_alone(tokenizer):
    """Unfinished sequences of several batches (of different widths) wait in one carry batch."""
    from router.backends import text_prefix_cache
    from router.decoding import decode_batches

    codec = LabelCodec.for_tokenizer(tokenizer)
    base = make_tiny_base(tokenizer, seed=6)  # answers of 1-3 departments: several steps
    prefix = text_prefix_cache(base.model, tokenizer("Route complaints.\n", add_special_tokens=False)["input_ids"])
    batches = [["lamp broken", "two chairs missing and the box was crushed and nobody on the phone could help"],
               ["coupon refused"],
               ["the ad showed a blue one", "drill stopped after a week, I want a replacement", "late again"]]
    requests = [[tokenizer(t + "\nDepartments:", add_special_tokens=False)["input_ids"] for t in b] for b in batches]
    drafts = [[["Marketing"], ["Warehouse", "Packaging"]], [list(DEPARTMENTS)], [[], ["Service"], ["Planning"]]]
    calls: list[list[int]] = []  # per opened stepper, its forward passes

    def open_stepper(batch):
        stepper = CausalStepper(base.model, prefix, tokenizer.pad_token_id, allowed=codec.token_ids)
        calls.append(_counting(stepper))
        return stepper

    def forwards():
        return sum(len(c) for c in calls)

    alone = {}
    for b, (reqs, drs) in enumerate(zip(requests, drafts)):
        alone.update({(b, r): d for (_, r), d in decode_batches(open_stepper, codec, [(reqs, drs)])})
    alone_forwards, calls[:] = forwards(), []
    shared = dict(decode_batches(open_stepper, codec, list(zip(requests, drafts)), carry_rows=8))
    assert shared.keys() == alone.keys()
    for key, decoded in shared.items():
        assert decoded.departments == alone[key].departments
        for name in DEPARTMENTS:
            assert decoded.confidence[name] == pytest.approx(alone[key].confidence[name], abs=1e-6)
    assert forwards() < alone_forwards, "the batches' follow-up steps are shared"


def test_absorbed_rows_see_exactly_what_they_saw_before(tokenizer):
    """Rows moved into another stepper (different cache widths) get the logits they would have got alone."""
    from router.backends import text_prefix_cache

    base = make_tiny_base(tokenizer, seed=8)
    prefix = text_prefix_cache(base.model, tokenizer("Route complaints.\n", add_special_tokens=False)["input_ids"])

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def stepper(requests):
        s = CausalStepper(base.model, prefix, tokenizer.pad_token_id)
        s.start([ids(r) for r in requests])
        return s

    short, long = ["lamp broken", "late"], ["two chairs missing and the box was crushed, nobody answered the phone"]
    feeds = {0: ids(" Service,"), 1: ids(" Warehouse")}
    alone = [stepper(short).feed(feeds), stepper(long).feed({0: ids(" L3,")})]
    carry, other = stepper(short), stepper(long)
    assert isinstance(carry, CarryingStepper) and isinstance(carry, SpeculativeStepper) and carry.absorbable()
    carry.absorb(other, offset=10)
    together = carry.feed({**feeds, 10: ids(" L3,")})
    for row in (0, 1):
        torch.testing.assert_close(together[row], alone[0][row], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[10], alone[1][0], atol=1e-5, rtol=1e-5)


def test_the_stepper_protocols_say_what_each_stepper_can_do():
    from router.backends import Seq2SeqStepper
    from router.reference import UncachedStepper

    plain = UncachedStepper(lambda ids: torch.zeros(len(ids), 8))
    assert not isinstance(plain, SpeculativeStepper) and not isinstance(plain, CarryingStepper)
    seq2seq = Seq2SeqStepper(torch.nn.Linear(1, 1), None, 0)
    assert not isinstance(seq2seq, SpeculativeStepper) and not isinstance(seq2seq, CarryingStepper)
