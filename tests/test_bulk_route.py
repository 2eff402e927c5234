"""`triage route --input FILE --output FILE` as a user runs it, on the tiny model (tiny_env)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from router.cli import cli
from router.departments import DEPARTMENTS

ROOT = Path(__file__).resolve().parent.parent
COMPLAINTS = [json.loads(line)["input"] for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()]
KEYS = {"line", "id", "departments", "confidence", "needs_review", "model_version", "strategy"}


def invoke(*args, input=None):
    return CliRunner().invoke(cli, ["route", *args], input=input, catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_in_both_shapes_routes_every_line_in_input_order(tiny_env, tmp_path):
    source = tmp_path / "backlog.jsonl"
    lines = [{"input": COMPLAINTS[0], "output": "Warehouse"}, {"id": "T-7", "text": COMPLAINTS[1]}, {"id": 99, "text": COMPLAINTS[2]}]
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")  # a trailing blank line is no record
    result = invoke("--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 0, result.output
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [(o["line"], o["id"]) for o in out] == [(1, 1), (2, "T-7"), (3, 99)]
    for o in out:
        assert set(o) == KEYS and o["departments"] and set(o["departments"]) <= set(DEPARTMENTS)
        assert set(o["confidence"]) == set(DEPARTMENTS) and o["strategy"] == "tuned" and o["model_version"]
    assert "routed 3 complaints" in result.stderr and "/s" in result.stderr


def test_the_same_complaints_get_the_same_answers_as_routing_one_at_a_time(tiny_env, tmp_path):
    source = tmp_path / "b.txt"
    source.write_text("\n".join(COMPLAINTS[:5]) + "\n")
    assert invoke("--input", str(source), "--output", str(tmp_path / "out.jsonl"), "-q").exit_code == 0
    bulk = [o["departments"] for o in read_jsonl(tmp_path / "out.jsonl")]
    single = [json.loads(invoke("--json", text).stdout)["departments"] for text in COMPLAINTS[:5]]
    assert bulk == single


def test_csv_with_a_named_column_and_ids(tiny_env, tmp_path):
    source = tmp_path / "tickets.csv"
    source.write_text('ticket,body,channel\nA1,"The box was crushed, and the lamp\ninside is dented",mail\nA2,'
                      f'"{COMPLAINTS[3]}",chat\n')
    result = invoke("--input", str(source), "--column", "body", "--id-column", "ticket", "-o", str(tmp_path / "o.jsonl"))
    assert result.exit_code == 0, result.output
    assert [(o["line"], o["id"]) for o in read_jsonl(tmp_path / "o.jsonl")] == [(2, "A1"), (4, "A2")]
    missing = CliRunner().invoke(cli, ["route", "--input", str(source), "--column", "text"])
    assert missing.exit_code == 1 and "no column 'text'" in missing.stderr and "'body'" in missing.stderr


def test_text_lines_from_stdin_to_stdout(tiny_env):
    result = invoke("--input", "-", "-q", input=f"{COMPLAINTS[0]}\n\n{COMPLAINTS[1]}\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["line"], o["id"]) for o in out] == [(1, 1), (3, 3)]


def test_bad_lines_are_reported_with_their_numbers_and_skipped_or_fatal(tiny_env, tmp_path):
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join([
        json.dumps({"input": COMPLAINTS[0]}).encode(), b'{"input": "unterminated', json.dumps({"text": "   "}).encode(),
        json.dumps({"input": "x" * 5000}).encode(), b'{"id": 5}', b'\xff\xfe not utf-8', b'["a list"]',
        json.dumps({"id": "last", "input": COMPLAINTS[1]}).encode(),
    ]) + b"\n")
    skipped = invoke("--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert skipped.exit_code == 0
    for number, problem in [(2, "invalid JSON"), (3, "text is empty"),
                            (4, "limit is 2000"), (5, "no 'input' or 'text' field"), (6, "not UTF-8"),
                            (7, "expected a JSON object")]:
        assert f"line {number}: " in skipped.stderr and problem in skipped.stderr, (number, skipped.stderr)
    assert "6 bad line(s) skipped" in skipped.stderr
    assert [o["id"] for o in read_jsonl(tmp_path / "out.jsonl")] == [1, "last"]

    fatal = CliRunner().invoke(cli, ["route", "--input", str(source), "--output", str(tmp_path / "f.jsonl"),
                                     "--on-error", "fail"])
    assert fatal.exit_code == 1
    assert "6 bad line(s), nothing routed" in fatal.stderr and "line 2: invalid JSON" in fatal.stderr
    assert not (tmp_path / "f.jsonl").exists()


def test_a_resumed_run_is_byte_identical_and_routes_no_line_twice(tiny_env, tmp_path, monkeypatch):
    from router.bulk import run

    monkeypatch.setattr(run, "CHUNK", 8)
    source = tmp_path / "backlog.jsonl"
    rows = [{"id": f"c{i}", "text": text} for i, text in enumerate(COMPLAINTS[:30])]
    rows.insert(11, {"id": "bad"})  # a bad line inside a chunk
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    full = tmp_path / "full.jsonl"
    assert invoke("--input", str(source), "-o", str(full), "-q").exit_code == 0
    expected = full.read_bytes()
    assert expected.count(b"\n") == 30
    newline_ends = [i + 1 for i, b in enumerate(expected) if b == ord("\n")]
    # An interrupted run leaves a prefix of the output: at a chunk's end, inside a chunk, inside a line.
    for cut in [0, newline_ends[7], newline_ends[12], newline_ends[12] + 17, len(expected) - 3, len(expected)]:
        partial = tmp_path / f"partial-{cut}.jsonl"
        partial.write_bytes(expected[:cut])
        resumed = invoke("--input", str(source), "-o", str(partial), "-q")
        assert resumed.exit_code == 0, resumed.output
        assert partial.read_bytes() == expected, f"cut at byte {cut}"
    again = invoke("--input", str(source), "-o", str(full), "-q")
    assert "routed 0 complaints" in again.stderr and "30 already in" in again.stderr
    assert full.read_bytes() == expected


def test_an_output_from_another_input_is_refused_not_overwritten(tiny_env, tmp_path):
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("\n".join(COMPLAINTS[:3]) + "\n")
    two.write_text("\n\n\n\n" + "\n".join(COMPLAINTS[:3]) + "\n")  # the same complaints on other lines
    assert invoke("--input", str(one), "-o", str(tmp_path / "out.jsonl"), "-q").exit_code == 0
    before = (tmp_path / "out.jsonl").read_bytes()
    refused = CliRunner().invoke(cli, ["route", "--input", str(two), "-o", str(tmp_path / "out.jsonl")])
    assert refused.exit_code == 1 and "does not continue this input" in refused.stderr
    assert (tmp_path / "out.jsonl").read_bytes() == before


def test_a_killed_triage_process_resumes_to_the_same_bytes(tiny_env, tmp_path):
    """A real interruption: SIGKILL of `triage route` while it writes, then the same command again."""
    source = tmp_path / "backlog.txt"
    source.write_text("\n".join(COMPLAINTS * 2) + "\n")  # 320 complaints, 3 chunks
    triage = str(Path(sys.executable).parent / "triage")
    command = [triage, "route", "--input", str(source), "-q"]
    env = dict(tiny_env, TRIAGE_TORCH_THREADS="1")
    full = tmp_path / "full.jsonl"
    subprocess.run([*command, "-o", str(full)], env=env, check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed.jsonl"
    process = subprocess.Popen([*command, "-o", str(killed)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed.exists() and killed.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 0 < killed.read_bytes().count(b"\n") < 320, "killed mid-run"
    subprocess.run([*command, "-o", str(killed)], env=env, check=True, capture_output=True, timeout=600)
    assert killed.read_bytes() == full.read_bytes()
    assert [o["line"] for o in read_jsonl(killed)] == list(range(1, 321))
