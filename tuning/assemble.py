"""The training set of a retrain: the base file plus supervisors' corrections, every example traceable.

Rules: duplicates are found by `router.dataset.normalize`; when a complaint was
corrected more than once the latest correction wins; a correction replaces a
base example with the same complaint (its label wins). Corrections that earlier
versions already trained on stay in the set (a new version must not forget
them). A deterministic ~20% of the new corrections is held out as an extra
evaluation set; a correction is held out at most once, so the next retrain
trains on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from router.dataset import Example, file_sha256, normalize, write_examples
from router.departments import canonical, format_departments
from router.report import Distribution, format_distribution, label_distribution

HOLDOUT_FRACTION = 0.2
MULTI_SHARE_DROP_WARNING = 0.10  # warn when the multi-department share falls by more than 10 points
TRAIN_FILE, HOLDOUT_FILE, PROVENANCE_FILE = "train.jsonl", "holdout.jsonl", "provenance.jsonl"


@dataclass(frozen=True)
class CorrectionRow:
    """A supervisor's correction with the complaint it corrects."""

    correction_id: int
    ticket_id: int
    text: str
    departments: tuple[str, ...]
    who: str
    created: datetime
    used_in_version: str | None = None

    @property
    def pending(self) -> bool:
        return self.used_in_version is None


def load_corrections(session) -> list[CorrectionRow]:
    """Every correction in the database (used or not), oldest first, with its ticket's text."""
    from sqlmodel import col, select

    from router.db.models import Correction, Ticket

    rows = session.exec(
        select(Correction, Ticket.text).join(Ticket, col(Correction.ticket_id) == col(Ticket.id))
        .order_by(col(Correction.id))
    ).all()
    return [CorrectionRow(c.id, c.ticket_id, text, tuple(canonical(c.departments)), c.who, c.created,
                          c.used_in_version) for c, text in rows]


@dataclass
class Assembled:
    """A training set, its held-out corrections, and where every example came from."""

    base_file: Path
    base_count: int
    examples: list[Example] = field(default_factory=list)
    provenance: list[dict] = field(default_factory=list)  # one per example, same order
    holdout: list[Example] = field(default_factory=list)
    holdout_provenance: list[dict] = field(default_factory=list)
    trained_correction_ids: list[int] = field(default_factory=list)  # pending corrections this set trains on
    holdout_correction_ids: list[int] = field(default_factory=list)  # pending, held out: they stay pending
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def new_examples(self) -> list[Example]:
        """Training examples that come from corrections no version was trained on yet."""
        return [ex for ex, p in zip(self.examples, self.provenance) if p.get("new")]

    def summary(self) -> dict:
        return {"base_file": str(self.base_file), "n_base": self.base_count, "n_train": len(self.examples),
                "n_holdout": len(self.holdout), "counts": dict(self.counts),
                "trained_correction_ids": list(self.trained_correction_ids),
                "holdout_correction_ids": list(self.holdout_correction_ids), "holdout_fraction": HOLDOUT_FRACTION}


def _order_key(text_key: str) -> str:
    return hashlib.sha256(text_key.encode()).hexdigest()


def _correction_provenance(winner: CorrectionRow, group: Sequence[CorrectionRow]) -> dict:
    record = {"source": "correction", "correction_id": winner.correction_id, "ticket_id": winner.ticket_id,
              "who": winner.who, "created": winner.created.isoformat(timespec="seconds"), "new": winner.pending}
    if winner.used_in_version:
        record["first_trained_in"] = winner.used_in_version
    older = [c.correction_id for c in group if c is not winner]
    if older:
        record["supersedes"] = older
    return record


def assemble(base: Sequence[Example], base_file: Path, corrections: Iterable[CorrectionRow], *,
             held_out_before: Iterable[int] = (), holdout_fraction: float = HOLDOUT_FRACTION) -> Assembled:
    """The base examples with every correction applied (latest per complaint wins), minus a held-out share."""
    groups: dict[str, list[CorrectionRow]] = {}
    for c in sorted(corrections, key=lambda c: (c.created, c.correction_id)):
        groups.setdefault(normalize(c.text), []).append(c)
    winners = {key: group[-1] for key, group in groups.items()}
    before = set(held_out_before)
    eligible = sorted((k for k, w in winners.items() if w.pending and w.correction_id not in before), key=_order_key)
    holdout_keys = set(eligible[: round(len(eligible) * holdout_fraction)])
    out = Assembled(Path(base_file), len(base))
    counts = dict.fromkeys(("from_base", "replaced", "confirmed", "added", "held_out", "superseded",
                            "base_held_out"), 0)
    seen: set[str] = set()

    def add(ex: Example, record: dict) -> None:
        out.examples.append(ex)
        out.provenance.append({"split": "train", "index": len(out.examples) - 1, "input": ex.input,
                               "output": ex.output, **record})

    for ex in base:
        key = normalize(ex.input)
        seen.add(key)
        origin = {"file": str(base_file), "line": ex.line, "output": ex.output}
        if key in holdout_keys:
            counts["base_held_out"] += 1  # its complaint is being evaluated: the stale label must not train
            continue
        winner = winners.get(key)
        if winner is None:
            add(ex, {"source": "base", "file": str(base_file), "line": ex.line})
            counts["from_base"] += 1
            continue
        record = _correction_provenance(winner, groups[key])
        if set(winner.departments) == set(ex.departments):
            record["confirms"] = origin
            counts["confirmed"] += 1
            add(ex, record)
        else:
            record["replaces"] = origin
            counts["replaced"] += 1
            add(Example(winner.text, winner.departments, ex.line), record)
    for key, winner in winners.items():
        if key in holdout_keys:
            out.holdout.append(Example(winner.text, winner.departments))
            out.holdout_provenance.append({"split": "holdout", "index": len(out.holdout) - 1, "input": winner.text,
                                           "output": format_departments(winner.departments),
                                           **_correction_provenance(winner, groups[key])})
            out.holdout_correction_ids.append(winner.correction_id)
            counts["held_out"] += 1
            continue
        if key not in seen:
            add(Example(winner.text, winner.departments), _correction_provenance(winner, groups[key]))
            counts["added"] += 1
        out.trained_correction_ids += [c.correction_id for c in groups[key] if c.pending]
        counts["superseded"] += len(groups[key]) - 1
    out.trained_correction_ids.sort()
    out.counts = counts
    return out


def held_out_before(session) -> set[int]:
    """Corrections that a succeeded retrain already held out for evaluation (the next one trains on them)."""
    from sqlmodel import select

    from tuning.jobs.records import TuningJob

    ids: set[int] = set()
    for result in session.exec(select(TuningJob.result).where(TuningJob.state == "succeeded")).all():
        ids.update((result or {}).get("training_set", {}).get("holdout_correction_ids", []))
    return ids


def assemble_from_store(settings, session, base_file: Path | None = None) -> tuple[Assembled, list[Example]]:
    """The set the next retrain trains on: the base file (default: the training file) plus the database's
    corrections. Returns it and the base examples (for the drift report)."""
    from router.dataset import load_examples

    path = Path(base_file) if base_file else settings.resolved_shots_file
    base = load_examples(path, settings.max_input_chars)
    assembled = assemble(base, path, load_corrections(session), held_out_before=held_out_before(session))
    return assembled, base


# -- writing ----------------------------------------------------------------------------
def _write_jsonl(records: Iterable[dict], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_provenance(assembled: Assembled, path: Path) -> None:
    """One JSON line per example (training set first, then the held-out ones), atomically."""
    _write_jsonl([*assembled.provenance, *assembled.holdout_provenance], Path(path))


def write_training_files(assembled: Assembled, directory: Path) -> dict:
    """train.jsonl, holdout.jsonl and provenance.jsonl in `directory`; returns the metadata that names them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_examples(assembled.examples, directory / TRAIN_FILE)
    write_examples(assembled.holdout, directory / HOLDOUT_FILE)
    write_provenance(assembled, directory / PROVENANCE_FILE)
    base_sha = file_sha256(assembled.base_file) if assembled.base_file.is_file() else None
    return {"train_file": TRAIN_FILE, "holdout_file": HOLDOUT_FILE, "provenance_file": PROVENANCE_FILE,
            "base_sha256": base_sha, **assembled.summary()}


def read_provenance(artifact_dir: Path) -> list[dict]:
    """The provenance records of a version's training examples (empty when it has none)."""
    path = Path(artifact_dir) / PROVENANCE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- report -----------------------------------------------------------------------------
def drift_warnings(base: Distribution, assembled: Distribution,
                   max_drop: float = MULTI_SHARE_DROP_WARNING) -> list[str]:
    """A warning when corrections push the mix toward single-department answers."""
    drop = base.multi_share - assembled.multi_share
    if drop <= max_drop:
        return []
    return [f"the share of complaints routed to more than one department fell from {base.multi_share:.0%} "
            f"in the base file to {assembled.multi_share:.0%} ({drop * 100:.0f} points): the corrections push the "
            "mix toward single-department answers, which teaches the model to answer one department"]


def format_report(assembled: Assembled, base: Sequence[Example]) -> tuple[str, list[str]]:
    """The assembled set's distribution report and every warning it raises (drift and departments alone)."""
    dist = label_distribution(assembled.examples)
    drift = drift_warnings(label_distribution(base), dist)
    c = assembled.counts
    header = (f"{len(assembled.examples)} training examples: {c['from_base']} from {assembled.base_file} as they are, "
              f"{c['replaced']} relabelled by a correction, {c['confirmed']} confirmed by one, {c['added']} new "
              f"complaints from corrections; {c['held_out']} corrections held out for evaluation, "
              f"{c['superseded']} older corrections superseded by a later one")
    body = format_distribution(dist)
    if drift:
        body += "\n" + "\n".join(f"warning: {w}" for w in drift)
    return header + "\n\n" + body, drift + dist.warnings
