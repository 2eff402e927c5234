"""Training-set assembly: corrections applied to the training file, deduplicated, held out, traceable;
and `triage data build`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from click.testing import CliRunner
from sqlmodel import Session

from conftest import TINY_TRAIN
from router.cli import cli
from router.dataset import Example, load_examples, normalize
from router import store
from router.report import label_distribution
from router.settings import Settings
from test_retrain_helpers import correct, migrated, write_jsonl
from tuning.assemble import (
    CorrectionRow,
    assemble,
    assemble_from_store,
    drift_warnings,
    format_report,
    load_corrections,
    read_provenance,
    write_training_files,
)

T0 = datetime(2026, 1, 1, 9, 0)


def row(cid: int, text: str, departments: tuple[str, ...], minutes: int = 0, used: str | None = None,
        who: str = "boss") -> CorrectionRow:
    return CorrectionRow(cid, 100 + cid, text, departments, who, T0 + timedelta(minutes=minutes), used)


def base_examples(tmp_path):
    path = write_jsonl(tmp_path / "base.jsonl", TINY_TRAIN)
    return load_examples(path), path


def test_latest_correction_of_a_complaint_wins_and_duplicates_collapse(tmp_path):
    base, path = base_examples(tmp_path)
    corrections = [
        row(1, "My fridge hums all night.", ("Service",), minutes=1),
        row(2, "  my FRIDGE hums   all night. ", ("Development",), minutes=5),  # same complaint, later
        row(3, "My fridge hums all night.", ("Development", "L3"), minutes=3),  # in between
    ]
    out = assemble(base, path, corrections, holdout_fraction=0.0)
    fridge = [ex for ex in out.examples if normalize(ex.input) == "my fridge hums all night."]
    assert len(fridge) == 1 and fridge[0].departments == ("Development",)
    record = out.provenance[out.examples.index(fridge[0])]
    assert record["correction_id"] == 2 and sorted(record["supersedes"]) == [1, 3]
    assert out.trained_correction_ids == [1, 2, 3], "superseded corrections count as used too"
    assert len(out.examples) == len(base) + 1 and out.counts["added"] == 1 and out.counts["superseded"] == 2


def test_a_correction_replaces_the_contradicting_base_example(tmp_path):
    base, path = base_examples(tmp_path)
    kettle = "The kettle I want is out of stock."  # base line 11: Warehouse
    blender = "The blender stopped working after two days."  # base line 1: Development
    out = assemble(base, path, [row(7, kettle.upper(), ("Planning", "Warehouse")), row(8, blender, ("Development",))],
                   holdout_fraction=0.0)
    assert len(out.examples) == len(base), "a relabelled or confirmed complaint is not added twice"
    by_key = {normalize(ex.input): (ex, p) for ex, p in zip(out.examples, out.provenance)}
    ex, prov = by_key[normalize(kettle)]
    assert ex.departments == ("Planning", "Warehouse")
    assert prov["source"] == "correction" and prov["correction_id"] == 7 and prov["who"] == "boss"
    assert prov["replaces"] == {"file": str(path), "line": 11, "output": "Warehouse"}
    ex, prov = by_key[normalize(blender)]
    assert ex.departments == ("Development",) and prov["confirms"]["line"] == 1
    assert out.counts["replaced"] == 1 and out.counts["confirmed"] == 1


def test_holdout_is_deterministic_about_a_fifth_and_each_correction_is_held_out_once(tmp_path):
    base, path = base_examples(tmp_path)
    corrections = [row(i, f"complaint number {i} about my order", ("Warehouse",), minutes=i) for i in range(1, 11)]
    first = assemble(base, path, corrections)
    again = assemble(base, path, list(reversed(corrections)))
    assert len(first.holdout) == 2 and first.holdout_correction_ids == again.holdout_correction_ids
    held = {normalize(ex.input) for ex in first.holdout}
    assert not held & {normalize(ex.input) for ex in first.examples}, "held-out complaints are not trained on"
    assert set(first.holdout_correction_ids).isdisjoint(first.trained_correction_ids)
    assert len(first.examples) == len(base) + 8
    later = assemble(base, path, corrections, held_out_before=first.holdout_correction_ids)
    assert set(first.holdout_correction_ids) <= set(later.trained_correction_ids), "held out once, trained next time"
    assert set(later.holdout_correction_ids).isdisjoint(first.holdout_correction_ids)


def test_a_held_out_correction_also_removes_the_stale_base_label(tmp_path):
    base, path = base_examples(tmp_path)
    texts = [ex.input for ex in base[:5]]
    out = assemble(base, path, [row(i, t, ("Marketing",)) for i, t in enumerate(texts, start=1)])
    assert len(out.holdout) == 1 and out.counts["base_held_out"] == 1
    held = normalize(out.holdout[0].input)
    assert held not in {normalize(ex.input) for ex in out.examples}


def test_corrections_trained_before_stay_in_the_set_but_are_not_new(tmp_path):
    base, path = base_examples(tmp_path)
    out = assemble(base, path, [row(1, "The lamp flickers.", ("Development",), used="retrain-0001"),
                                row(2, "The sofa came in the wrong color.", ("Warehouse",))], holdout_fraction=0.0)
    texts = {ex.input for ex in out.examples}
    assert {"The lamp flickers.", "The sofa came in the wrong color."} <= texts
    assert out.trained_correction_ids == [2]
    assert [ex.input for ex in out.new_examples] == ["The sofa came in the wrong color."]
    old = next(p for p in out.provenance if p.get("correction_id") == 1)
    assert old["first_trained_in"] == "retrain-0001" and old["new"] is False


def test_every_training_example_traces_back_to_its_file_line_or_correction(tmp_path):
    base, path = base_examples(tmp_path)
    out = assemble(base, path, [row(i, f"new complaint {i}", ("Service", "L3"), minutes=i) for i in range(1, 6)]
                   + [row(9, base[2].input, ("Warehouse",))])
    meta = write_training_files(out, tmp_path / "artifact")
    assert meta["train_file"] == "train.jsonl" and meta["n_train"] == len(out.examples) and meta["n_holdout"] == 1
    trained = load_examples(tmp_path / "artifact" / "train.jsonl")
    records = read_provenance(tmp_path / "artifact")
    train_records = [r for r in records if r["split"] == "train"]
    assert len(train_records) == len(trained) and [r for r in records if r["split"] == "holdout"]
    base_lines = path.read_text().splitlines()
    for ex, record in zip(trained, train_records):
        assert record["input"] == ex.input and record["output"] == ex.output
        if record["source"] == "base":
            assert json.loads(base_lines[record["line"] - 1])["input"] == ex.input
        else:
            assert record["correction_id"] in {1, 2, 3, 4, 5, 9} and record["who"] == "boss" and record["created"]


def test_drift_toward_single_department_answers_is_warned(tmp_path):
    base, path = base_examples(tmp_path)  # 6 of 12 are multi-department
    multi = [ex for ex in base if len(ex.departments) > 1]
    singles = [row(i, ex.input, (ex.departments[0],)) for i, ex in enumerate(multi, start=1)]
    out = assemble(base, path, singles[:4], holdout_fraction=0.0)
    report, warnings = format_report(out, base)
    assert any("fell from 50%" in w and "single-department" in w for w in warnings)
    assert "warning: the share of complaints routed to more than one department fell" in report
    one = assemble(base, path, singles[:1], holdout_fraction=0.0)
    assert drift_warnings(label_distribution(base), label_distribution(one.examples)) == [], "8 points: no warning"


def test_data_build_writes_the_assembled_set_and_its_report(tmp_path, monkeypatch):
    base_file = write_jsonl(tmp_path / "base.jsonl", TINY_TRAIN)
    settings = Settings()
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        for i, (text, _out) in enumerate(TINY_TRAIN[2:10]):
            if "," in _out:
                correct(s, text, [_out.split(", ")[0]])
        correct(s, "The remote has no batteries in the box.", ["Warehouse", "Packaging"])
    out = tmp_path / "built" / "train.jsonl"
    result = CliRunner().invoke(cli, ["data", "build", "--out", str(out), "--base", str(base_file),
                                      "--provenance", str(tmp_path / "prov.jsonl")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    built = load_examples(out)
    with Session(engine) as s:
        expected, _ = assemble_from_store(settings, s, base_file)
    assert [ex.to_json() for ex in built] == [ex.to_json() for ex in expected.examples]
    assert "routed to more than one department" in result.output and "warning: the share" in result.output
    assert f"wrote {len(built)} examples" in result.output
    assert len((tmp_path / "prov.jsonl").read_text().splitlines()) == len(built) + len(expected.holdout)
    assert not list(out.parent.glob("*.tmp")), "written atomically"
    engine.dispose()


def test_data_build_refuses_a_bad_base_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok", "output": "Service"}\n{"input": "x", "output": "Sales"}\n')
    result = CliRunner().invoke(cli, ["data", "build", "--out", str(tmp_path / "o.jsonl"), "--base", str(bad)])
    assert result.exit_code == 1 and ":2:" in result.output and "Sales" in result.output
    assert not (tmp_path / "o.jsonl").exists()


def test_store_corrections_feed_the_assembly_latest_first(tmp_path):
    base, path = base_examples(tmp_path)
    engine = migrated(Settings())
    with Session(engine, expire_on_commit=False) as s:
        ticket, _ = correct(s, "The mixer smells of burning.", ["Service"])
        correct(s, "The mixer smells of burning.", ["Development", "L3"], ticket_id=ticket, who="chief")
        rows = load_corrections(s)
        assert [r.who for r in rows] == ["boss", "chief"] and rows[0].text == "The mixer smells of burning."
        store.mark_corrections_used(s, [rows[0].correction_id], "v-old")
    out = assemble(base, path, rows, holdout_fraction=0.0)
    mixer = next(ex for ex in out.examples if ex.input.startswith("The mixer"))
    assert mixer.departments == ("Development", "L3")
    engine.dispose()
