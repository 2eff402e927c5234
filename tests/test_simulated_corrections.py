"""Simulated rule changes for a precedents tune (rag.simulated_corrections) and how corrections are shown.

The rewriting is checked on hand-built precedents; the tune and the store use real MiniLM embeddings, real
Chroma and a tiny random model.
"""

from __future__ import annotations

import json

import pytest

from rag.grounding import CORRECTED, ChromaGrounder
from rag.simulated_corrections import kind_of, simulate_corrections
from router.dataset import Example
from router.departments import parse_departments
from router.results import Passage
from tests.test_context_tuning import encoder, precedent_store, tune_with_context  # noqa: F401  (fixtures)

POOL = [
    Example("Points from my fridge purchase never showed up.", ("Marketing",), 1, (14,)),
    Example("The sale price was not applied at checkout.", ("Marketing",), 2, (14,)),
    Example("My voucher was not accepted in the shop.", ("Marketing",), 3, (14,)),
    Example("The box was crushed and the lamp dented.", ("Packaging",), 4, (11,)),
    Example("Box crushed and two chairs missing.", ("Warehouse", "Packaging"), 5, (11, 12, 16)),
    Example("The agent hung up on me.", ("Service",), 6, (5,)),
    Example("Support could not fix my router.", ("Service", "L3"), 7, (6,)),
]


def candidates(order: list[int]) -> list[Passage]:
    return [Passage(f"train:{i}", POOL[i].output, POOL[i].input, 0.9 - 0.05 * n, "precedent")
            for n, i in enumerate(order)]


QUERIES = [
    (Example("My reward points expired without notice.", ("Marketing",), 10, (14,)), [5, 0, 3, 1, 2]),
    (Example("A dented lamp in a crushed box.", ("Packaging",), 11, (11,)), [4, 3, 5, 6]),
    (Example("Nobody could fix my modem.", ("Service", "L3"), 12, (6,)), [5, 3, 0, 1]),  # no precedent of rule 6
]


def test_a_simulated_change_relabels_the_example_and_precedents_of_its_rule_alike():
    examples = [q for q, _ in QUERIES]
    made = simulate_corrections(examples, [candidates(o) for _, o in QUERIES], POOL, k=3, rate=1.0, seed=3)
    assert made.applied == 2 and made.not_applied == 0
    for original, target, shown in zip(examples, made.examples, made.precedents):
        assert len(shown) == 3
        corrected = [p for p in shown if p.corrected]
        if original.line == 12:  # nothing of its rule to correct: left as it was
            assert target == original and not corrected
            continue
        added = set(target.departments) - set(original.departments)
        assert len(added) == 1 and set(original.departments) < set(target.departments)
        assert corrected, "the nearest precedent of the changed rule is a correction"
        for p in corrected:  # every correction is of the example's rule, with the same department added
            source = POOL[int(p.doc_id.split(":")[1])]
            assert kind_of(source) & kind_of(original)
            assert set(parse_departments(p.title)) == set(source.departments) | added
        for p in shown:
            if not p.corrected:
                assert p.title == POOL[int(p.doc_id.split(":")[1])].output  # the others keep their labels
    # the loyalty complaint's nearest rule-14 precedent (pool 0, second place) is the one surely corrected
    assert made.precedents[0][1].corrected and made.precedents[0][0].title == "Service"


def test_a_precedent_of_the_rule_found_below_the_top_k_takes_the_last_place():
    example = Example("Nobody could fix my modem.", ("Service", "L3"), 13, (6,))
    made = simulate_corrections([example], [candidates([5, 3, 0, 6, 1])], POOL, k=3, rate=1.0, seed=0)
    shown = made.precedents[0]
    assert [p.doc_id for p in shown] == ["train:5", "train:3", "train:6"]
    assert [p.corrected for p in shown] == [False, False, True]
    added = set(made.examples[0].departments) - {"Service", "L3"}
    assert len(added) == 1 and set(parse_departments(shown[2].title)) == {"Service", "L3"} | added


def test_untagged_complaints_are_of_one_kind_when_their_labels_are():
    untagged = [Example(e.input, e.departments, e.line) for e in POOL]
    example = Example("Reward points expired.", ("Marketing",), 10)
    made = simulate_corrections([example] * 30, [candidates([5, 0, 3, 1, 2])] * 30, untagged, k=3, rate=0.6, seed=1)
    for target, shown in zip(made.examples, made.precedents):
        for p in shown:
            if p.corrected and target == example:  # a correction that does not apply: never one of its label
                assert untagged[int(p.doc_id.split(":")[1])].output != "Marketing"
            if p.corrected and target != example:
                assert untagged[int(p.doc_id.split(":")[1])].output == "Marketing"
    assert made.applied and made.not_applied


def test_a_correction_that_does_not_apply_leaves_the_target_alone():
    examples = [q for q, _ in QUERIES] * 20
    found = [candidates(o) for _, o in QUERIES] * 20
    made = simulate_corrections(examples, found, POOL, k=3, rate=0.6, seed=0)  # 60% apply, 30% do not
    assert made.applied and made.not_applied
    for original, target, shown in zip(examples, made.examples, made.precedents):
        if target == original:
            for p in shown:
                if p.corrected:  # a correction of another kind of complaint
                    assert not (kind_of(POOL[int(p.doc_id.split(":")[1])]) & kind_of(original))


def test_no_share_changes_nothing_and_a_seed_repeats_itself():
    examples = [q for q, _ in QUERIES]
    found = [candidates(o) for _, o in QUERIES]
    none = simulate_corrections(examples, found, POOL, k=3, rate=0.0, seed=0)
    assert none.examples == examples and none.precedents == [f[:3] for f in found]
    assert simulate_corrections(examples, found, POOL, 3, 0.5, 7) == simulate_corrections(examples, found, POOL, 3, 0.5, 7)


def test_a_saved_correction_is_marked_as_one_in_the_prompt(precedent_store):  # noqa: F811
    from rag.precedents import add_precedent

    add_precedent(precedent_store, "My loyalty points were never credited to my account.", "Service, Marketing",
                  "ticket-7")
    grounding = ChromaGrounder(precedent_store).ground("Loyalty points never credited.", policy=False, precedents=True)
    first = grounding.passages[0]
    assert first.corrected and first.source == "ticket-7" and first.title == "Service, Marketing"
    assert f"{CORRECTED}: My loyalty points were never credited" in grounding.context
    assert all(not p.corrected for p in grounding.passages[1:])
    assert grounding.context.count(CORRECTED) == 1


def test_a_tune_with_simulated_corrections_trains_on_them_and_records_them(tiny_base, tiny_train_file, tmp_path,
                                                                          precedent_store, monkeypatch):  # noqa: F811
    import tuning.train
    from router.dataset import load_examples

    encoded = []
    real = tuning.train.encode_examples
    monkeypatch.setattr(tuning.train, "encode_examples",
                        lambda examples, *a: encoded.append(list(examples)) or real(examples, *a))
    artifact, seen = tune_with_context(tiny_base, tiny_train_file, tmp_path / "sim", precedent_store,
                                       simulated_corrections=0.5)
    made = json.loads((artifact / "triage.json").read_text())["context"]["simulated_corrections"]
    assert made["share"] == 0.5 and made["train"]["applies"] >= 1
    marked = [c for c in seen["train"] if CORRECTED in c]
    assert len(marked) == made["train"]["applies"] + made["train"]["does_not_apply"]
    original = {e.input: e for e in load_examples(tiny_train_file)}
    trained = encoded[0]  # what the loss was computed on: the targets the corrections call for
    relabeled = [e for e in trained if e.departments != original[e.input].departments]
    assert len(relabeled) == made["train"]["applies"]
    for example, context in zip(trained, seen["train"]):
        if example in relabeled:
            assert set(example.departments) > set(original[example.input].departments)
            added = (set(example.departments) - set(original[example.input].departments)).pop()
            corrected = [line for line in context.split("\n") if line.startswith("Departments:")]
            assert CORRECTED in context and any(added in line for line in corrected)


def test_simulated_corrections_need_precedents_in_the_context():
    from pydantic import ValidationError

    from tuning.config import TuningConfig

    with pytest.raises(ValidationError, match="use it with --context precedents or both"):
        TuningConfig(method="lora", context="policy", simulated_corrections=0.3)
    with pytest.raises(ValidationError, match="less than or equal to 0.5"):
        TuningConfig(method="lora", context="precedents", simulated_corrections=0.8)
