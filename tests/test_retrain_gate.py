"""The evaluation gate's decision: not worse on every gated set, by the margin; nothing to compare = stays candidate."""

from __future__ import annotations

from tuning.gate import decide, format_decision


def scores(exact: float, macro: float, n: int = 10) -> dict:
    return {"n": n, "exact_set_accuracy": exact, "micro_f1": macro, "macro_f1": macro}


def test_equal_scores_promote_and_a_drop_on_any_gated_set_does_not():
    equal = decide({"dev": (scores(0.5, 0.4), scores(0.5, 0.4))}, candidate_version="new", active_version="old")
    assert equal.promote and "not worse than old on dev" in equal.reasons[0]
    mixed = decide({"dev": (scores(0.9, 0.8), scores(0.5, 0.4)), "holdout": (scores(0.5, 0.3, 2), scores(0.5, 0.4, 2))},
                   candidate_version="new", active_version="old")
    assert not mixed.promote and mixed.reasons == ["holdout: macro_f1 0.3000 is below the active model's 0.4000"]


def test_ungated_sets_are_reported_but_never_block():
    decision = decide({"dev": (scores(0.5, 0.5), scores(0.5, 0.5)), "corrections": (scores(0.0, 0.0), scores(1.0, 1.0))},
                      candidate_version="new", active_version="old")
    assert decision.promote and decision.sets["corrections"]["gated"] is False
    assert decision.version_metrics()["compared_with"] == {"version": "old", **scores(0.5, 0.5)}


def test_a_margin_demands_an_improvement_and_a_negative_one_tolerates_a_drop():
    results = {"dev": (scores(0.52, 0.41), scores(0.5, 0.4))}
    assert not decide(results, candidate_version="n", active_version="o", margin=0.05).promote
    assert decide(results, candidate_version="n", active_version="o", margin=0.01).promote
    assert decide({"dev": (scores(0.48, 0.39), scores(0.5, 0.4))}, candidate_version="n", active_version="o",
                  margin=-0.02).promote


def test_without_an_active_model_or_evaluation_data_it_stays_a_candidate():
    alone = decide({"dev": (scores(0.9, 0.9), None)}, candidate_version="n", active_version=None,
                   active_problem="the active model x cannot be evaluated (gone): promote it by hand")
    assert not alone.promote and alone.reasons == ["the active model x cannot be evaluated (gone): promote it by hand"]
    nothing = decide({}, candidate_version="n", active_version="o")
    assert not nothing.promote and "no evaluation data" in nothing.reasons[0]
    text = format_decision(alone.to_json())
    assert "stays a candidate" in text and "0.900" in text and "dev" in text
    compared = decide({"dev": (scores(0.6, 0.5), scores(0.5, 0.5))}, candidate_version="n", active_version="o")
    compared.sets["dev"]["paired"] = {"wins": 3, "losses": 2, "p_value": 1.0}
    assert "+3 -2 p=1.00" in format_decision(compared.to_json())
