"""`triage route --input F --workers N`: several routing processes, the same output as one (tiny model, tiny_env)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.bulk.records import BulkError
from router.bulk.workers import threads_per_worker
from router.cli import cli
from tests.test_bulk_route import COMPLAINTS, invoke, read_jsonl


@pytest.fixture
def backlog(tmp_path, monkeypatch):
    """30 complaints and a bad line in chunks of 8: 4 chunks, so 2 workers each route several."""
    from router.bulk import run

    monkeypatch.setattr(run, "CHUNK", 8)
    source = tmp_path / "backlog.jsonl"
    rows = [{"id": f"c{i}", "text": text} for i, text in enumerate(COMPLAINTS[:30])]
    rows.insert(11, {"id": "bad"})
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return source


def test_two_workers_write_the_same_bytes_as_one_and_report_bad_lines_the_same(tiny_env, backlog, tmp_path):
    one = invoke("--input", str(backlog), "-o", str(tmp_path / "one.jsonl"), "-q")
    two = invoke("--input", str(backlog), "-o", str(tmp_path / "two.jsonl"), "-q", "--workers", "2")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert [o["id"] for o in read_jsonl(tmp_path / "two.jsonl")] == [f"c{i}" for i in range(30)]
    assert "line 12: no 'input' or 'text' field (skipped)" in two.stderr
    assert "routed 30 complaints" in two.stderr and "with 2 workers" in two.stderr and "1 bad line(s) skipped" in two.stderr


def test_two_workers_continue_a_cut_output_to_the_single_process_bytes(tiny_env, backlog, tmp_path):
    full = tmp_path / "full.jsonl"
    assert invoke("--input", str(backlog), "-o", str(full), "-q").exit_code == 0
    expected = full.read_bytes()
    ends = [i + 1 for i, b in enumerate(expected) if b == ord("\n")]
    for cut in [ends[9] + 5, ends[3]]:  # inside a line of the second chunk; inside the first chunk
        partial = tmp_path / f"partial-{cut}.jsonl"
        partial.write_bytes(expected[:cut])
        resumed = invoke("--input", str(backlog), "-o", str(partial), "-q", "--workers", "2")
        assert resumed.exit_code == 0, resumed.output
        assert partial.read_bytes() == expected, f"cut at byte {cut}"


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_multi_worker_run_resumes_to_the_single_process_bytes(tiny_env, tmp_path):
    """SIGKILL of `triage route --workers 2` mid-run: its workers stop too, and the same command continues
    the output to the bytes an uninterrupted single-process run writes."""
    source = tmp_path / "backlog.txt"
    # 960 complaints, 8 chunks of 128: two workers finish chunks in pairs, so with only 3 chunks a fast host
    # could write all of them before the kill landed.
    source.write_text("\n".join(COMPLAINTS * 6) + "\n")
    triage = str(Path(sys.executable).parent / "triage")
    env = dict(tiny_env, TRIAGE_TORCH_THREADS="1")
    single = tmp_path / "single.jsonl"
    subprocess.run([triage, "route", "--input", str(source), "-q", "-o", str(single)], env=env, check=True,
                   capture_output=True, timeout=600)
    killed = tmp_path / "killed.jsonl"
    command = [triage, "route", "--input", str(source), "-q", "--workers", "2", "-o", str(killed)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed.exists() and killed.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 0 < killed.read_bytes().count(b"\n") < 960, "killed mid-run"
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the killed run"
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    assert killed.read_bytes() == single.read_bytes()
    assert [o["line"] for o in read_jsonl(killed)] == list(range(1, 961))


def test_workers_out_of_range_or_without_a_file_are_refused(tiny_env, tmp_path):
    source = tmp_path / "b.txt"
    source.write_text(COMPLAINTS[0] + "\n")
    for bad in ("0", "65", "two"):
        refused = CliRunner().invoke(cli, ["route", "--input", str(source), "--workers", bad])
        assert refused.exit_code == 2 and "--workers" in refused.stderr, refused.stderr
    assert "1<=x<=64" in CliRunner().invoke(cli, ["route", "--input", str(source), "--workers", "0"]).stderr
    alone = CliRunner().invoke(cli, ["route", "--workers", "2", "The kettle leaks."])
    assert alone.exit_code == 2 and "--workers applies to --input" in alone.stderr

    from router.bulk import route_backlog
    from router.service import RouterService
    from router.settings import Settings

    with pytest.raises(BulkError, match="--workers must be a whole number from 1 to 64, not 0"):
        route_backlog(RouterService(Settings()), str(source), str(tmp_path / "o.jsonl"), workers=0)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_worker_that_cannot_load_the_model_stops_the_run_with_its_reason(tiny_env, tmp_path, monkeypatch):
    source = tmp_path / "b.txt"
    source.write_text("\n".join(COMPLAINTS[:3]) + "\n")
    monkeypatch.setenv("TRIAGE_BASE_MODEL", str(tmp_path / "no-such-model"))
    result = CliRunner().invoke(cli, ["route", "--input", str(source), "-o", str(tmp_path / "o.jsonl"), "--workers", "2"])
    assert result.exit_code == 1
    assert "a routing worker could not start: ModelLoadError: " in result.stderr, result.stderr
    assert "no-such-model" in result.stderr and not (tmp_path / "o.jsonl").exists()


def test_workers_share_the_cores():
    assert threads_per_worker(1, 2) == 2 and threads_per_worker(2, 2) == 1 and threads_per_worker(3, 2) == 1
    assert threads_per_worker(4, 16) == 4 and threads_per_worker(64, 16) == 1
