"""Labeled complaints in the watsonx JSONL format: loading and validation.

Every problem is reported with its line number; a file with any error yields
no examples at all (nothing is half-loaded).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from router.departments import LabelError, canonical, format_departments, parse_departments

ALLOWED_KEYS = {"input", "output", "rule"}
BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_CHARS = 2000


@dataclass(frozen=True)
class Example:
    input: str
    departments: tuple[str, ...]
    line: int = 0
    rule: tuple[int, ...] = ()

    @property
    def output(self) -> str:
        return format_departments(self.departments)

    def to_json(self) -> dict:
        record: dict = {"input": self.input, "output": self.output}
        if self.rule:
            record["rule"] = list(self.rule) if len(self.rule) > 1 else self.rule[0]
        return record


@dataclass
class Problem:
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"line {self.line}: {self.severity}: {self.message}"


@dataclass
class CheckResult:
    path: Path
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class DataError(ValueError):
    """A data file with one or more invalid lines."""

    def __init__(self, path: Path, problems: list[Problem]):
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {path}:{p.line}: {p.message}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} invalid line(s):\n{shown}{more}")


def normalize(text: str) -> str:
    """The key two complaints are duplicates under: case and whitespace folded."""
    return re.sub(r"\s+", " ", text).strip().lower()


def _parse_rule(value, line: int, problems: list[Problem]) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16 for v in values):
        problems.append(Problem(line, f"field 'rule' must be a rule number 1-16 or a list of them, got {value!r}"))
        return ()
    return tuple(values)


def _parse_line(raw: str, line: int, max_chars: int, problems: list[Problem]) -> Example | None:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(Problem(line, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return None
    if not isinstance(record, dict):
        problems.append(Problem(line, f"expected a JSON object with 'input' and 'output', got {type(record).__name__}"))
        return None
    before = len(problems)
    for key in ("input", "output"):
        if key not in record:
            problems.append(Problem(line, f"missing field '{key}'"))
        elif not isinstance(record[key], str):
            problems.append(Problem(line, f"field '{key}' must be a string, got {type(record[key]).__name__}"))
        elif not record[key].strip():
            problems.append(Problem(line, f"field '{key}' is empty"))
    unknown = sorted(set(record) - ALLOWED_KEYS)
    if unknown:
        problems.append(Problem(line, f"unknown field(s) {', '.join(unknown)} (allowed: input, output, rule)", "warning"))
    if len(problems) > before and any(p.severity == "error" for p in problems[before:]):
        return None
    text = record["input"].strip()
    if len(text) > max_chars:
        problems.append(Problem(line, f"field 'input' is {len(text)} characters, longer than the limit of {max_chars}"))
        return None
    try:
        departments = parse_departments(record["output"])
    except LabelError as exc:
        problems.append(Problem(line, f"field 'output': {exc}"))
        return None
    if [d.strip() for d in record["output"].split(",")] != departments:
        problems.append(Problem(line, f"field 'output' is not in canonical order; read as {format_departments(departments)!r}", "warning"))
    rule = _parse_rule(record["rule"], line, problems) if "rule" in record else ()
    return Example(text, tuple(departments), line, rule)


def check_lines(lines: Iterable[str], path: Path, max_chars: int = DEFAULT_MAX_CHARS) -> CheckResult:
    result = CheckResult(Path(path))
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        example = _parse_line(raw, number, max_chars, result.problems)
        if example is None:
            continue
        key = normalize(example.input)
        if key in seen:
            result.problems.append(Problem(number, f"duplicate input (first seen on line {seen[key]})"))
            continue
        seen[key] = number
        result.examples.append(example)
    if not result.examples and not result.errors:
        result.problems.append(Problem(0, "no examples in file"))
    return result


def check_file(path: str | Path, max_chars: int = DEFAULT_MAX_CHARS) -> CheckResult:
    """Every line checked. A UTF-8 byte-order mark and Windows line endings (as Excel and Notepad write
    them) are read as if absent, each with a warning; lines end at "\n" only, as JSONL says (a U+2028 in
    a complaint does not split it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file")
    raw = path.read_bytes()
    bom = raw.startswith(BOM)
    try:
        text = raw[len(BOM) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start + (len(BOM) if bom else 0)].count(b"\n") + 1
        return CheckResult(path, problems=[Problem(line, "not valid UTF-8")])
    lines = text.split("\n")
    crlf = [number for number, line in enumerate(lines, start=1) if line.endswith("\r")]
    result = check_lines([line[:-1] if line.endswith("\r") else line for line in lines], path, max_chars)
    notes = []
    if bom:
        notes.append(Problem(1, "the file starts with a UTF-8 byte-order mark (BOM); it was skipped", "warning"))
    if crlf:
        notes.append(Problem(crlf[0], f"Windows line endings (CRLF) on {len(crlf)} line(s), the first here; read as "
                                      "plain newlines", "warning"))
    result.problems[:0] = notes
    return result


def load_examples(path: str | Path, max_chars: int = DEFAULT_MAX_CHARS) -> list[Example]:
    """All examples of a file, or DataError naming every bad line."""
    result = check_file(path, max_chars)
    if result.errors:
        raise DataError(result.path, result.errors)
    return result.examples


def write_examples(examples: Iterable[Example], path: str | Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half."""
    from router.atomic import atomic_open

    with atomic_open(path, "w") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def label_key(departments: Iterable[str]) -> str:
    return format_departments(canonical(departments))
