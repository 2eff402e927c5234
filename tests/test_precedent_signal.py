"""scripts/precedent_signal.py: what the nearest precedents' vote gets right, and what it could fix or break.

Real MiniLM embeddings and an in-memory Chroma index over a hand-built pool whose neighbours are unambiguous.
"""

from __future__ import annotations

import json

from scripts.precedent_signal import main, vote
from test_retrain_helpers import write_jsonl
from tests.conftest import TINY_TRAIN


def test_vote_keeps_departments_named_by_a_majority():
    found = [frozenset({"Warehouse", "Packaging"}), frozenset({"Warehouse"}), frozenset({"Service"})]
    assert vote(found) == frozenset({"Warehouse"})
    assert vote(found[:1]) == found[0]


def test_reports_the_vote_and_what_it_fixes_and_breaks(tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN)
    judged = write_jsonl(tmp_path / "judged.jsonl", [
        ("The coffee grinder broke after three days.", "Development"),  # nearest: the blender (Development)
        ("A rude agent shouted at me.", "Service, L3"),  # nearest: the rude agent (Service)
    ])
    routed = tmp_path / "routed.jsonl"  # a model that got the first wrong and the second right
    routed.write_text(json.dumps({"departments": ["Service"]}) + "\n" + json.dumps({"departments": ["Service", "L3"]}) + "\n")
    assert main(["--data", str(judged), "--train", str(train), "--k", "1", "--routed", str(routed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    assert report["pool"] == len(TINY_TRAIN) and report["n"] == 2
    assert row["vote_exact"] == 0.5 and row["gold_among_k"] == 0.5
    assert row["model_wrong"] == 1
    assert row["vote_right_where_model_wrong"] == 1  # the precedent would fix the grinder
    assert row["among_k_where_model_wrong"] == 1
    assert row["vote_wrong_where_model_right"] == 1  # and break the rude agent


def test_refuses_routings_of_another_file(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", TINY_TRAIN)
    judged = write_jsonl(tmp_path / "judged.jsonl", TINY_TRAIN[:2])
    routed = tmp_path / "routed.jsonl"
    routed.write_text(json.dumps({"departments": ["Service"]}) + "\n")
    try:
        main(["--data", str(judged), "--train", str(train), "--routed", str(routed)])
    except SystemExit as exc:
        assert "1 routings for 2 complaints" in str(exc)
    else:
        raise AssertionError("routings of another file were accepted")
