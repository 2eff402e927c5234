"""Reading a backlog file for bulk routing: JSONL, CSV or plain text lines, each record with its line number.

* JSONL: one object per line, the complaint in ``input`` (watsonx format) or ``text``, an optional ``id``.
* CSV: a header row; the complaint in ``--column`` (default ``text``), the id in ``--id-column`` (default
  ``id`` when there is one).
* text: every non-blank line is a complaint.

Blank lines are not records. A line that cannot be routed (bad JSON, no text, empty, too long, not
UTF-8) becomes a record with an ``error`` and its line number: the caller skips or stops on it, it is
never dropped silently. Ids default to the line number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from router.service import InputError, validate_text

FORMATS = ("auto", "jsonl", "csv", "text")


class BulkError(InputError):
    """The backlog cannot be read or routed as asked (the message names the file and line)."""

    def __init__(self, message: str):
        super().__init__(message, "input")


@dataclass(frozen=True)
class Record:
    line: int
    id: str | int
    text: str = ""
    error: str | None = None


def detect_format(name: str, head: bytes, column: str | None) -> str:
    """The input's format from its name, or (standard input) from its first non-blank line."""
    if column:
        return "csv"
    suffix = Path(name).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix in {".txt", ".text"}:
        return "text"
    first = next((line.strip() for line in head.lstrip(b"\xef\xbb\xbf").splitlines() if line.strip()), b"")
    return "jsonl" if first.startswith(b"{") else "text"


def read_records(stream: IO[bytes], fmt: str, max_chars: int, *, column: str | None = None,
                 id_column: str | None = None, delimiter: str = ",") -> Iterator[Record]:
    """Every record of `stream` in order (routable ones and bad ones)."""
    if fmt == "csv":
        yield from _csv_records(stream, max_chars, column or "text", id_column, delimiter)
        return
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Record(number, number, error=f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if not line.strip():
            continue
        yield _jsonl_record(number, line, max_chars) if fmt == "jsonl" else _checked(number, number, line, max_chars)


def _checked(number: int, record_id, text, max_chars: int, field: str = "text") -> Record:
    try:
        return Record(number, record_id, validate_text(text, max_chars, field))
    except InputError as exc:
        return Record(number, record_id, error=str(exc))


def _jsonl_record(number: int, line: str, max_chars: int) -> Record:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return Record(number, number, error=f"invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(data, dict):
        return Record(number, number, error=f"expected a JSON object, got {type(data).__name__}")
    record_id = data.get("id", number)
    if not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
        return Record(number, number, error="'id' must be a string or an integer")
    field = "text" if "text" in data else "input" if "input" in data else None
    if field is None:
        return Record(number, record_id, error="no 'input' or 'text' field")
    return _checked(number, record_id, data[field], max_chars, field)


def _csv_records(stream: IO[bytes], max_chars: int, column: str, id_column: str | None,
                 delimiter: str) -> Iterator[Record]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return
        if column not in header:
            raise BulkError(f"line 1: no column {column!r}; the header has {', '.join(map(repr, header))}"
                            " (choose one with --column)")
        if id_column and id_column not in header:
            raise BulkError(f"line 1: no id column {id_column!r}; the header has {', '.join(map(repr, header))}")
        text_at = header.index(column)
        id_at = header.index(id_column or "id") if (id_column or "id") in header else None
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            record_id = row[id_at] if id_at is not None and id_at < len(row) and row[id_at] else number
            if text_at >= len(row):
                yield Record(number, record_id, error=f"the row has {len(row)} fields; no {column!r} value")
                continue
            yield _checked(number, record_id, row[text_at], max_chars, column)
    except UnicodeDecodeError as exc:
        raise BulkError(f"line {reader.line_num + 1}: not UTF-8 text ({exc.reason}); CSV input must be UTF-8") from exc
    except csv.Error as exc:
        raise BulkError(f"line {reader.line_num}: {exc}") from exc
    finally:
        text.detach()
