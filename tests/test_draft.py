"""The TF-IDF draft for speculative decoding: fitted once, cached on disk, never changes an answer."""

from __future__ import annotations

import pytest

from router.dataset import Example, load_examples
from router.departments import DEPARTMENTS
from router.draft import load_or_fit_draft
from router.engine import Engine, plan_batches

TEXTS = ["my blender died", "three of the four chairs are missing and the box was crushed",
         "rude agent on the phone", "the ad showed a red one but mine is blue"]


def test_draft_is_fitted_once_and_then_read_from_the_cache(tiny_train_file, tmp_path):
    examples = load_examples(tiny_train_file)
    draft = load_or_fit_draft(examples, tmp_path)
    cached = list((tmp_path / "drafts").glob("*.pkl"))
    assert len(cached) == 1
    proposals = draft.propose(TEXTS)
    assert all(p and set(p) <= set(DEPARTMENTS) for p in proposals)
    assert load_or_fit_draft(examples, tmp_path).propose(TEXTS) == proposals
    cached[0].write_bytes(b"not a pickle")  # a damaged cache is refitted, not fatal
    assert load_or_fit_draft(examples, tmp_path).propose(TEXTS) == proposals
    changed = examples[:-1]
    load_or_fit_draft(changed, tmp_path)
    assert len(list((tmp_path / "drafts").glob("*.pkl"))) == 2, "other training data, other draft"


def test_no_draft_without_enough_to_learn_from(tmp_path):
    assert load_or_fit_draft([], tmp_path) is None
    assert load_or_fit_draft([Example("x", ("Service",), 1), Example("y", ("Service",), 2)], tmp_path) is None


@pytest.mark.parametrize("strategy", ["tuned", "zero-shot", "multi-shot"])
def test_routing_with_the_draft_equals_routing_without(tiny_base, tiny_train_file, tiny_artifact, tmp_path, strategy):
    from router.artifact import load_tuned_model

    pool = load_examples(tiny_train_file)
    soft = load_tuned_model(tiny_artifact, tiny_base)
    plain = Engine(tiny_base, pool).route_many(TEXTS, strategy, tuned=soft, batch_size=len(TEXTS))
    drafted = Engine(tiny_base, pool, draft=load_or_fit_draft(pool, tmp_path)).route_many(TEXTS, strategy, tuned=soft, batch_size=len(TEXTS))
    assert [r.departments for r in drafted] == [r.departments for r in plain]
    for a, b in zip(drafted, plain):
        assert a.input_tokens == b.input_tokens and a.generated_tokens == b.generated_tokens
        for name in DEPARTMENTS:
            assert a.confidence[name] == pytest.approx(b.confidence[name], abs=1e-4)


@pytest.mark.parametrize("strategy", ["tuned", "zero-shot", "multi-shot"])
def test_caching_the_prompts_fixed_start_changes_no_answer(tiny_base, tiny_train_file, tiny_artifact, monkeypatch, strategy):
    from router.artifact import load_tuned_model

    pool = load_examples(tiny_train_file)
    soft = load_tuned_model(tiny_artifact, tiny_base)
    cached = Engine(tiny_base, pool)
    routed = cached.route_many(TEXTS, strategy, tuned=soft, batch_size=len(TEXTS))
    prepared = soft.prepared if strategy == "tuned" else cached._prepared  # a tuned model keeps its own
    assert any(p.with_head is not None for p in prepared.values()), "the fixed start is cached"
    monkeypatch.setattr(Engine, "_cache_head", lambda self, prepared: None)
    fresh = load_tuned_model(tiny_artifact, tiny_base)  # nothing prepared yet
    plain = Engine(tiny_base, pool).route_many(TEXTS, strategy, tuned=fresh, batch_size=len(TEXTS))
    assert [r.departments for r in routed] == [r.departments for r in plain]
    for a, b in zip(routed, plain):
        assert a.input_tokens == b.input_tokens, "the cached start still counts as input"
        for name in DEPARTMENTS:
            assert a.confidence[name] == pytest.approx(b.confidence[name], abs=1e-4)


def test_batches_group_similar_lengths_and_keep_padding_small(tiny_base):
    engine = Engine(tiny_base)
    texts = ["short one"] * 5 + ["a much longer complaint about a fridge that stopped cooling after a week " * 3] * 4
    texts += ["medium length complaint about a late parcel and a rude agent"] * 6
    lengths = [len(engine._ids(t)) for t in texts]
    batches = plan_batches(lengths, max_size=4)
    assert sorted(i for b in batches for i in b) == list(range(len(texts))), "every complaint exactly once"
    assert all(len(b) <= 4 for b in batches)
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert len(batch) == 1 or max(widths) * len(batch) <= 1.15 * sum(widths), "little padding in a batch"


def test_a_token_budget_gives_long_inputs_fewer_rows_per_batch():
    lengths = [10] * 8 + [100] * 8 + [500]
    batches = plan_batches(lengths, max_size=16, max_tokens=300)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths))), "every complaint exactly once"
    widths = [[lengths[i] for i in b] for b in batches]
    assert [8] in [[len(w)] for w in widths if w[0] == 10], "short complaints still share one batch"
    assert sorted(len(w) for w in widths if w[0] == 100) == [2, 3, 3], "long ones: at most 300 tokens a batch"
    assert [500] in widths, "one input over the budget still gets a batch of its own"
    assert plan_batches(lengths, max_size=16) == plan_batches(lengths, max_size=16, max_tokens=None)


def test_routing_under_a_token_budget_gives_the_same_answers(tiny_base):
    texts = ["short one", "my parcel is late", "the app crashes when I open the settings page on my phone"] * 3
    contexts = ["Similar past complaints:\nComplaint: the box was crushed\nDepartments: Packaging"] * len(texts)
    unbounded = Engine(tiny_base).route_many(texts, "zero-shot", contexts=contexts, batch_size=16)
    budget = Engine(tiny_base, batch_tokens=40)
    sizes = []
    real_route = budget._route
    budget._route = lambda strategy, batches: sizes.extend(len(b) for b in batches) or real_route(strategy, batches)
    bounded = budget.route_many(texts, "zero-shot", contexts=contexts, batch_size=16)
    assert [r.departments for r in bounded] == [r.departments for r in unbounded]
    assert sum(sizes) == len(texts) and max(sizes) < 3, "with context every row is over 20 tokens: 1 row a batch"
