"""The label distribution of a data set, the way the business analyses it.

Counts per label set, per department alone vs paired, and a pairs matrix;
warns when a department mostly appears alone (the "v2" lesson: such a mix
teaches the model to answer one department).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from router.dataset import Example
from router.departments import DEPARTMENTS

ALONE_WARNING_SHARE = 0.5


@dataclass
class Distribution:
    n: int
    label_sets: Counter
    alone: Counter
    paired: Counter
    pairs: dict[tuple[str, str], int]
    warnings: list[str] = field(default_factory=list)

    @property
    def multi_share(self) -> float:
        return sum(c for label, c in self.label_sets.items() if "," in label) / self.n if self.n else 0.0

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "multi_department_share": round(self.multi_share, 3),
            "label_sets": dict(self.label_sets.most_common()),
            "departments": {d: {"alone": self.alone[d], "paired": self.paired[d]} for d in DEPARTMENTS},
            "pairs": {f"{a}+{b}": c for (a, b), c in self.pairs.items() if c},
            "warnings": self.warnings,
        }


def label_distribution(examples: Sequence[Example]) -> Distribution:
    label_sets: Counter = Counter()
    alone: Counter = Counter()
    paired: Counter = Counter()
    pairs = {(a, b): 0 for i, a in enumerate(DEPARTMENTS) for b in DEPARTMENTS[i + 1 :]}
    for ex in examples:
        label_sets[ex.output] += 1
        depts = list(ex.departments)
        if len(depts) == 1:
            alone[depts[0]] += 1
        else:
            for d in depts:
                paired[d] += 1
            for i, a in enumerate(depts):
                for b in depts[i + 1 :]:
                    pairs[(a, b)] += 1
    dist = Distribution(len(examples), label_sets, alone, paired, pairs)
    for d in DEPARTMENTS:
        total = alone[d] + paired[d]
        if total == 0:
            dist.warnings.append(f"{d} never appears: the model cannot learn to route there")
        elif alone[d] / total > ALONE_WARNING_SHARE:
            dist.warnings.append(
                f"{d} appears alone in {alone[d]} of {total} examples ({alone[d] / total:.0%}): "
                "a mostly single-department mix teaches the model to answer one department"
            )
    return dist


def format_distribution(dist: Distribution, top: int = 25) -> str:
    lines = [f"{dist.n} examples, {dist.multi_share:.0%} routed to more than one department", "", "count  label set"]
    for label, count in dist.label_sets.most_common(top):
        lines.append(f"{count:>5}  {label}")
    if len(dist.label_sets) > top:
        lines.append(f"  ... {len(dist.label_sets) - top} more label sets")
    lines += ["", f"{'department':<12} {'alone':>6} {'paired':>7} {'alone %':>8}"]
    for d in DEPARTMENTS:
        total = dist.alone[d] + dist.paired[d]
        share = f"{dist.alone[d] / total:.0%}" if total else "-"
        lines.append(f"{d:<12} {dist.alone[d]:>6} {dist.paired[d]:>7} {share:>8}")
    short = {d: d[:5] for d in DEPARTMENTS}
    lines += ["", "pairs matrix (examples where both departments are routed)", " " * 12 + "".join(f"{short[d]:>7}" for d in DEPARTMENTS)]
    for i, a in enumerate(DEPARTMENTS):
        cells = []
        for j, b in enumerate(DEPARTMENTS):
            if i == j:
                cells.append(f"{'·':>7}")
            else:
                key = (a, b) if i < j else (b, a)
                cells.append(f"{dist.pairs[key]:>7}")
        lines.append(f"{a:<12}" + "".join(cells))
    if dist.warnings:
        lines += [""] + [f"warning: {w}" for w in dist.warnings]
    return "\n".join(lines)
