"""tuning.paired: how sure a comparison on one labeled file is (intervals, and each model against the first)."""

from __future__ import annotations

import pytest

from tuning.paired import exact_mcnemar_p, paired, paired_cell, wilson_interval


def test_wilson_interval_matches_its_closed_forms_and_narrows_with_more_complaints():
    assert wilson_interval(0, 10) == (0.0, pytest.approx(1.96**2 / (10 + 1.96**2)))  # 0.2775
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + 1.96**2)), 1.0)
    low, high = wilson_interval(146, 160)
    assert low < 146 / 160 < high and high - low == pytest.approx(0.087, abs=0.002)
    big_low, big_high = wilson_interval(1715, 1996)
    assert big_high - big_low < (high - low) / 2.5  # 12x the complaints: about a third of the width
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_counts_only_the_complaints_the_two_models_disagree_on():
    assert exact_mcnemar_p(0, 6) == pytest.approx(2 / 64)
    assert exact_mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)
    assert exact_mcnemar_p(3, 3) == 1.0 and exact_mcnemar_p(0, 0) == 1.0
    gold = [["Service"], ["Warehouse", "Packaging"], ["L3"], ["Marketing"], ["Planning"]]
    first = [["Service"], ["Packaging", "Warehouse"], ["Service"], ["Marketing"], ["L3"]]  # order does not matter
    other = [["Service"], ["Warehouse"], ["L3"], ["Planning"], ["Planning"]]
    result = paired(gold, first, other)
    assert result == {"wins": 2, "losses": 2, "p_value": 1.0}  # both right on 1, each alone on 2
    assert paired_cell({"paired_vs_first": result, "exact_set_95ci": [0.1, 0.9]}) == "+2 -2 p=1.00"
    assert paired_cell({"exact_set_95ci": [0.1, 0.9]}) == "(first)" and paired_cell({}) == "–"
    with pytest.raises(ValueError, match="differ in length"):
        paired(gold, first, other[:3])
