"""Routing a backlog file in bulk, resumably: `triage route --input FILE --output FILE`.

The records are routed in fixed chunks (`CHUNK` records, whatever their errors) through the service's
`route_many`, the same batched engine the API uses. Each chunk's output lines are appended and flushed
together, in input order. An output file that already exists is continued: its complete chunks are
kept, a chunk cut short by an interruption is cut back and routed again, so the result is
byte-identical to an uninterrupted run (same chunks, same batches) and no line appears twice. Output
lines carry no latency or timestamp for that reason. With `workers` > 1 the same chunks are routed by that
many processes (`router.bulk.workers`) and written here in the same order, so the bytes are the same.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from router.bulk.records import BulkError, Record, detect_format, read_records

CHUNK = 128  # records per route_many call and per flushed write: the most an interruption costs
MAX_LISTED = 10  # bad lines listed in a --on-error fail message


@dataclass
class Summary:
    routed: int = 0  # routed by this run
    resumed: int = 0  # found already routed in the output
    bad: list[Record] = field(default_factory=list)  # skipped by this run
    seconds: float = 0.0
    fmt: str = ""

    @property
    def rate(self) -> float:
        return self.routed / self.seconds if self.seconds else 0.0


def output_line(record: Record, routing) -> str:
    return json.dumps({
        "line": record.line, "id": record.id, "departments": routing.departments,
        "confidence": {name: round(value, 4) for name, value in routing.confidence.items()},
        "needs_review": routing.needs_review, "model_version": routing.model_version, "strategy": routing.strategy,
    }, ensure_ascii=False) + "\n"


def _input(source: str, stdin: IO[bytes] | None) -> tuple[str, Callable[[], IO[bytes]]]:
    if source == "-":
        data = (stdin or sys.stdin.buffer).read()
        return "<stdin>", lambda: io.BytesIO(data)
    path = Path(source)
    if not path.is_file():
        raise BulkError(f"{source}: no such file")
    return source, lambda: path.open("rb")


def _done_lines(path: Path) -> tuple[list[tuple[int, int]], int]:
    """(input line, end offset) of every complete output line already in `path`, and its size."""
    entries, offset = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # cut short by an interruption: routed again
            try:
                line = json.loads(raw)["line"]
            except (ValueError, KeyError, TypeError):
                raise BulkError(f"{path}: line {len(entries) + 1} is not a bulk routing output line; "
                                "it cannot be continued (remove it or choose another --output)") from None
            offset += len(raw)
            entries.append((line, offset))
    return entries, offset


def _resume_point(chunks: Sequence[Sequence[Record]], entries: list[tuple[int, int]], out: Path) -> tuple[int, int, int]:
    """(first chunk to route, byte offset to cut the output back to, routings kept)."""
    at, keep = 0, 0
    for index, chunk in enumerate(chunks):
        lines = [r.line for r in chunk if r.error is None]
        if [line for line, _ in entries[at:at + len(lines)]] != lines:
            rest = [line for line, _ in entries[at:]]
            if rest != lines[:len(rest)]:
                raise BulkError(f"{out} does not continue this input (its line {at + 1} is for input line "
                                f"{rest[0]}); remove it or choose another --output")
            return index, keep, at
        at += len(lines)
        keep = entries[at - 1][1] if at else 0
    if at != len(entries):
        raise BulkError(f"{out} has more routings than this input has complaints; remove it or choose another --output")
    return len(chunks), keep, at


def route_backlog(service, source: str, output: str = "-", *, fmt: str = "auto", column: str | None = None,
                  id_column: str | None = None, strategy: str | None = None, shots: int | None = None,
                  batch_size: int | None = None, on_error: str = "skip", progress: bool = True,
                  chunk: int | None = None, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
                  stderr: IO[str] | None = None, workers: int = 1) -> Summary:
    """Route every complaint of `source` into `output` (JSONL); see the module docstring.

    `workers` > 1 routes the chunks in that many processes (`router.bulk.workers`); the output is the same.
    """
    from tqdm import tqdm

    from router.bulk.workers import check_workers

    check_workers(workers)
    stderr = stderr or sys.stderr
    name, opener = _input(source, stdin)
    with opener() as handle:
        head = handle.read(4096)
    fmt = detect_format(name, head, column) if fmt == "auto" else fmt
    delimiter = "\t" if name.lower().endswith(".tsv") else ","
    with opener() as handle:
        records = list(read_records(handle, fmt, service.settings.max_input_chars, column=column,
                                    id_column=id_column, delimiter=delimiter))
    bad = [r for r in records if r.error is not None]
    if bad and on_error == "fail":
        listed = "\n".join(f"  line {r.line}: {r.error}" for r in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise BulkError(f"{name}: {len(bad)} bad line(s), nothing routed (--on-error skip routes the others):\n"
                        f"{listed}{more}")
    chunk = chunk or CHUNK
    chunks = [records[i:i + chunk] for i in range(0, len(records), chunk)]
    summary = Summary(fmt=fmt)
    first = 0
    if output != "-" and Path(output).is_file():
        out_path = Path(output)
        entries, size = _done_lines(out_path)
        first, keep, summary.resumed = _resume_point(chunks, entries, out_path)
        if keep != size or out_path.stat().st_size != keep:
            with out_path.open("r+b") as handle:
                handle.truncate(keep)
    todo = [[r for r in block if r.error is None] for block in chunks[first:]]
    with ExitStack() as stack:
        # the models are loaded before the clock starts: the rate is routing only
        routed = _routed(service, todo, workers, stack, strategy=strategy, shots=shots, batch_size=batch_size)
        bar = tqdm(total=len(records) - len(bad), initial=summary.resumed, unit=" complaints", file=stderr,
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)
        sink = (stdout or sys.stdout.buffer) if output == "-" else open(output, "ab")  # noqa: SIM115 - closed below
        started = time.perf_counter()
        try:
            _write(routed, chunks[first:], todo, sink, output, bar, summary, name, stderr)
        finally:
            summary.seconds = time.perf_counter() - started
            bar.close()
            if output != "-":
                sink.close()
    return summary


def _routed(service, todo: list[list[Record]], workers: int, stack: ExitStack, **options) -> Iterator[str]:
    """Output text of each chunk's routable records, in order: routed here, or by `workers` processes."""
    if not any(todo):
        return iter([""] * len(todo))
    if workers > 1:
        from router.bulk.workers import WorkerPool

        pool = stack.enter_context(WorkerPool(service.settings, service.tuned_path(), workers, **options))
        return pool.route(todo)
    service.engine  # noqa: B018 - loads the base model
    if (options["strategy"] or service.settings.default_strategy) == "tuned":
        service.tuned_model  # noqa: B018 - loads the tuned artifact

    def here() -> Iterator[str]:
        for good in todo:
            routings = service.route_many([r.text for r in good], **options) if good else []
            yield "".join(output_line(r, routing) for r, routing in zip(good, routings))

    return here()


def _write(routed: Iterator[str], blocks, todo, sink, output: str, bar, summary: Summary, name: str, stderr) -> None:
    for block, good in zip(blocks, todo):
        for r in block:
            if r.error is not None:
                summary.bad.append(r)
                bar.write(f"{name}: line {r.line}: {r.error} (skipped)", file=stderr)
        text = next(routed)
        if not good:
            continue
        sink.write(text.encode("utf-8"))
        sink.flush()
        if output != "-":
            os.fsync(sink.fileno())  # a chunk on disk survives a crash; the next run continues after it
        summary.routed += len(good)
        bar.update(len(good))
