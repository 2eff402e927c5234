"""`triage data check`: every kind of bad line is reported with its line number; distribution report."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from router.cli import cli
from router.dataset import DataError, load_examples

GOOD = '{"input": "There are multiple missing parts from the package.", "output": "Warehouse, Packaging"}'


def run(path, *extra):
    return CliRunner().invoke(cli, ["data", "check", str(path), *extra])


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"input": "broken json", "output": ', "not valid JSON"),
        ('["a", "list"]', "expected a JSON object"),
        ('{"output": "Service"}', "missing field 'input'"),
        ('{"input": "rude agent"}', "missing field 'output'"),
        ('{"input": "   ", "output": "Service"}', "field 'input' is empty"),
        ('{"input": "rude agent", "output": ""}', "field 'output' is empty"),
        ('{"input": 42, "output": "Service"}', "field 'input' must be a string"),
        ('{"input": "promo code failed", "output": "Promotion"}', "unknown department 'Promotion'"),
        ('{"input": "rude agent", "output": "service"}', "did you mean 'Service'"),
        ('{"input": "rude agent", "output": "Service, Service"}', "repeated"),
        ('{"input": "' + "x" * 2100 + '", "output": "Service"}', "longer than the limit of 2000"),
        ('{"input": "There are multiple missing parts from the package.", "output": "Warehouse"}', "duplicate input (first seen on line 1)"),
    ],
    ids=["json", "not-object", "no-input", "no-output", "empty-input", "empty-output", "wrong-type", "unknown-dept",
         "wrong-case", "repeat", "too-long", "duplicate"],
)
def test_bad_line_is_named_with_its_line_number(tmp_path, bad_line, message):
    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + "\n\n" + bad_line + "\n")
    result = run(path)
    assert result.exit_code == 1
    assert f"{path}:3: error:" in result.output and message in result.output
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert f"{path}:3:" in str(err.value)


def test_valid_file_prints_distribution_and_warns_on_single_department_mix(tmp_path):
    lines = [{"input": f"item {i} is out of stock", "output": "Warehouse"} for i in range(6)]
    lines += [{"input": f"missing part {i}", "output": "Warehouse, Packaging"} for i in range(2)]
    path = tmp_path / "ok.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = run(path)
    assert result.exit_code == 0, result.output
    assert "6  Warehouse" in result.output and "2  Warehouse, Packaging" in result.output
    assert "warning: Warehouse appears alone in 6 of 8 examples" in result.output
    report = json.loads(run(path, "--json").output)
    assert report["valid"] and report["distribution"]["pairs"] == {"Warehouse+Packaging": 2}


def test_non_canonical_order_is_a_warning_not_an_error(tmp_path):
    path = tmp_path / "order.jsonl"
    path.write_text('{"input": "missing screws", "output": "Packaging, Warehouse"}\n')
    result = run(path)
    assert result.exit_code == 0
    assert "not in canonical order" in result.output
    assert load_examples(path)[0].output == "Warehouse, Packaging"


def test_a_file_saved_by_excel_or_notepad_is_valid_with_warnings(tmp_path):
    """A UTF-8 byte-order mark and CRLF line endings: read as if absent, each reported once as a warning."""
    lines = [GOOD, '{"input": "The agent hung up on me.", "output": "Service"}']
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\r\n" for line in lines).encode())
    result = run(path)
    assert result.exit_code == 0, result.output
    assert f"{path}:1: warning: the file starts with a UTF-8 byte-order mark (BOM)" in result.output
    assert f"{path}:1: warning: Windows line endings (CRLF) on 2 line(s)" in result.output
    assert "utf-8-sig" not in result.output and "2 valid examples; OK" in result.output
    examples = load_examples(path)
    assert [(e.input, e.output) for e in examples] == [("There are multiple missing parts from the package.",
                                                         "Warehouse, Packaging"), ("The agent hung up on me.", "Service")]


def test_line_separators_inside_a_complaint_do_not_split_it(tmp_path):
    path = tmp_path / "u2028.jsonl"
    record = {"input": "Two parts missing.\u2028Also the box was crushed.", "output": "Warehouse, Packaging"}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    result = run(path)
    assert result.exit_code == 0 and "1 valid examples; OK" in result.output and "not valid JSON" not in result.output
    assert load_examples(path)[0].input == record["input"]


def test_shipped_data_files_are_valid_and_disjoint():
    from router.dataset import normalize
    from tests.conftest import ROOT

    train = load_examples(ROOT / "data" / "complaints.jsonl")
    v2 = load_examples(ROOT / "data" / "complaints_v2.jsonl")
    dev = load_examples(ROOT / "data" / "dev.jsonl")
    assert len(train) >= 500 and len(v2) == 200 and len(dev) >= 100
    train_keys = {normalize(e.input) for e in train} | {normalize(e.input) for e in v2}
    assert not [e.line for e in dev if normalize(e.input) in train_keys]
    assert all(e.rule for e in dev), "dev examples carry the labeling rule for retrieval recall"


def test_the_added_training_data_stays_clear_of_both_held_out_sets():
    """data/complaints_more*.jsonl (written apart from dev and test): no line within word overlap 0.5 of a held-out one."""
    from rag.training_context import NEAR_DUPLICATE_WORDS, words
    from router.dataset import normalize
    from tests.conftest import ROOT

    held = [words(e.input) for name in ("dev.jsonl", "test.jsonl") for e in load_examples(ROOT / "data" / name)]
    train = {normalize(e.input) for e in load_examples(ROOT / "data" / "complaints.jsonl")}
    for name in ("complaints_more.jsonl", "complaints_more2.jsonl"):
        more = load_examples(ROOT / "data" / name)
        assert len(more) >= 1000
        close = [e.line for e in more
                 if any(len(words(e.input) & h) / max(1, len(words(e.input) | h)) >= NEAR_DUPLICATE_WORDS for h in held)]
        assert not close, f"lines of {name} too close to a held-out complaint: {close}"
        assert not [e.line for e in more if normalize(e.input) in train], name
        train |= {normalize(e.input) for e in more}
