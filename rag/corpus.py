"""The policy corpus: Markdown documents with a front matter block, split into chunks.

A document looks like::

    ---
    id: rule-10
    title: Missing items or parts in a delivered order
    rule: 10
    departments: [Warehouse, Packaging]
    ---
    # Missing items or parts in a delivered order

    Rule 10: missing items ... goes to **Warehouse, Packaging**.

    ## Typical complaints
    ...

``id`` is required and stable (chunk ids derive from it); ``title`` comes from the
front matter or the first ``# `` heading; ``rule`` (1-16, or a list) and
``departments`` are optional; other keys are kept but not used. The first paragraph
after the title is the document's summary, the line a routing prompt shows.
Adding a document is adding a file: no code changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from router.departments import LabelError, canonical

MARKDOWN_SUFFIXES = (".md", ".markdown")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
CHUNK_CHARS = 300  # about one to three list items: a typical complaint phrasing per chunk
CHUNK_OVERLAP = 0
SEPARATORS = ["\n\n", "\n- ", "\n", ". ", " ", ""]


class CorpusError(ValueError):
    """A policy corpus the store will not ingest; names every file and line at fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(shown.strip() if len(problems) == 1 else f"{len(problems)} problems in the policy corpus:\n{shown}{more}")


@dataclass(frozen=True)
class PolicyDoc:
    doc_id: str
    title: str
    path: Path
    body: str  # Markdown after the front matter
    summary: str
    rule: tuple[int, ...] = ()
    departments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    index: int
    text: str  # what is embedded and stored: title, section and content
    content: str  # the chunk's own words (citation snippet)
    metadata: dict = field(default_factory=dict)


def _front_matter(text: str, path: Path) -> tuple[dict, str, int]:
    """(fields, body, line number where the body starts)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CorpusError([f"{path}:1: missing front matter: the file must start with a '---' line, "
                           "then 'id: ...' and 'title: ...', then '---'"])
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            break
    else:
        raise CorpusError([f"{path}:1: front matter is not closed: no second '---' line"])
    try:
        fields = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise CorpusError([f"{path}:{line}: front matter is not valid: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(fields, dict):
        raise CorpusError([f"{path}:2: front matter must be 'key: value' lines"])
    return fields, "\n".join(lines[end + 1 :]), end + 2


def _field_line(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def _summary(body: str) -> str:
    """The first paragraph that is not a heading."""
    for block in re.split(r"\n\s*\n", body):
        block = block.strip()
        if block and not block.startswith("#"):
            return clean(block)
    return ""


def clean(text: str) -> str:
    """Markdown emphasis and extra whitespace removed: the words a reader sees."""
    text = re.sub(r"(\*\*|__|`)", "", text)
    text = re.sub(r"(?m)^\s*[-*+]\s+", "", text)  # list markers
    return re.sub(r"\s+", " ", text).strip()


def parse_document(path: Path) -> PolicyDoc:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CorpusError([f"{path}:{line}: not valid UTF-8"]) from None
    fields, body, body_line = _front_matter(text, path)
    problems: list[str] = []
    doc_id = fields.get("id")
    if doc_id is None:
        problems.append(f"{path}:1: front matter has no 'id' (a stable name such as 'rule-10')")
    elif not isinstance(doc_id, str) or not ID_PATTERN.match(doc_id):
        problems.append(f"{path}:{_field_line(text, 'id')}: id {doc_id!r} must be lower-case letters, digits, "
                        "'-', '_' or '.' (at most 100 characters)")
    heading = re.search(r"^# +(.+?)\s*$", body, re.MULTILINE)
    title = fields.get("title") or (heading.group(1) if heading else None)
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{path}:1: no title: add 'title: ...' to the front matter or a '# ...' heading")
    rule = fields.get("rule", ())
    rules = rule if isinstance(rule, list) else [rule] if rule != () else []
    if not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 16 for r in rules):
        problems.append(f"{path}:{_field_line(text, 'rule')}: rule must be a rule number 1-16 or a list of them, got {rule!r}")
    departments = fields.get("departments") or []
    try:
        if isinstance(departments, str):
            departments = [d.strip() for d in departments.split(",") if d.strip()]
        if not isinstance(departments, list):
            raise LabelError(f"expected a list such as [Warehouse, Packaging], got {departments!r}")
        departments = canonical(departments) if departments else []
    except LabelError as exc:
        problems.append(f"{path}:{_field_line(text, 'departments')}: departments: {exc}")
    summary = _summary(body)
    if not summary:
        problems.append(f"{path}:{body_line}: the document has no text after its front matter")
    if problems:
        raise CorpusError(problems)
    return PolicyDoc(doc_id, title.strip(), path, body, summary, tuple(rules), tuple(departments))


def corpus_files(directory: Path) -> list[Path]:
    """The Markdown files of a corpus directory; anything else there is an error."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such policy corpus directory")
    if not directory.is_dir():
        raise CorpusError([f"{directory}: is a file; give the directory that holds the policy documents (*.md)"])
    files, problems = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() in MARKDOWN_SUFFIXES:
            files.append(path)
        else:
            problems.append(f"{path}: not a Markdown document (expected *.md); move it out of the corpus directory")
    if problems:
        raise CorpusError(problems)
    if not files:
        raise CorpusError([f"{directory}: no policy documents (*.md) in the directory"])
    return files


def load_corpus(directory: Path) -> list[PolicyDoc]:
    """Every document of the corpus, or CorpusError naming every problem (nothing half-loaded)."""
    docs, problems = [], []
    seen: dict[str, Path] = {}
    for path in corpus_files(directory):
        try:
            doc = parse_document(path)
        except CorpusError as exc:
            problems += exc.problems
            continue
        if doc.doc_id in seen:
            problems.append(f"{path}: id {doc.doc_id!r} is already used by {seen[doc.doc_id]}")
            continue
        seen[doc.doc_id] = path
        docs.append(doc)
    if problems:
        raise CorpusError(problems)
    return docs


def split_document(doc: PolicyDoc) -> list[Chunk]:
    """Sections by heading, long sections further by size; each chunk carries its title."""
    sections = MarkdownHeaderTextSplitter([("#", "h1"), ("##", "h2")], strip_headers=True).split_text(doc.body)
    sizer = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP, separators=SEPARATORS)
    chunks: list[Chunk] = []
    for section in sizer.split_documents(sections):
        content = clean(section.page_content)
        if not content:
            continue
        heading = section.metadata.get("h2", "")
        text = f"{doc.title}. {heading}: {content}" if heading else f"{doc.title}. {content}"
        index = len(chunks)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        metadata = {
            "doc_id": doc.doc_id, "title": doc.title, "section": heading, "chunk": index, "summary": doc.summary,
            "content": content, "rule": ",".join(map(str, doc.rule)), "departments": ", ".join(doc.departments),
            "source": doc.path.name,
        }
        chunks.append(Chunk(f"{doc.doc_id}:{index}:{digest}", doc.doc_id, index, text, content, metadata))
    return chunks
