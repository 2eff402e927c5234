"""Simulated rule changes for a precedents tune: teach the model that a supervisor's correction overrides.

A correction reaches a context-tuned model only as a precedent, marked as corrected (``rag.grounding``). A
model tuned on the training file alone never sees one, so it has no reason to follow it: nothing in that file
ever disagrees with the rules the model already knows. This module rewrites a share of the training examples
as if the business had just changed a rule and supervisors had corrected some complaints under it:

- **applies** (drawn for a share ``rate``): one of the example's rules R is drawn (its ``rule`` tags; without
  tags, its label set stands for its rule). Rule R now also goes to a department d the example's label does not
  have. The nearest candidate precedent that raises R becomes a correction to its label with d added (taking the
  last of the k places if it was not among them; its label may already hold d), each other shown precedent
  raising R becomes one too with probability 1/2, and the example's target becomes ``label + d``. Precedents not
  raising R keep their labels. When no candidate raises R, the example is left as it is (so fewer than
  ``rate`` are rewritten: 585 of 2083 for the shipped model at 0.3).
- **does not apply** (drawn for a share ``rate / 2``): one shown precedent of another kind (no rule in common)
  becomes a correction to its own label plus a department, and the example's target stays its label.
- the rest are left as they are, so the model keeps routing complaints without corrections as before.

Only additions are simulated: a correction that removes or swaps a department is a change the model has never
been shown.

A department added to a rule is the change the scenario makes (``data/scenario/RULE.md``: rule 14 adds
Service); what the model learns is the general move, not that rule: a simulated change picks its rule and its
department at random per example, never tied to rule 14.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Sequence

from router.dataset import Example
from router.departments import DEPARTMENTS, canonical, format_departments, parse_departments
from router.results import Passage

DOES_NOT_APPLY = 0.5  # distractor corrections per applying one
ALSO_CORRECTED = 0.5  # chance that another precedent raising the changed rule is a correction too


@dataclass
class Simulated:
    """Precedents and examples as trained, and how many of each kind of simulated correction were made."""

    precedents: list[list[Passage]]
    examples: list[Example]
    applied: int = 0
    not_applied: int = 0


UNION_RULE = 16  # "several problems go to the union": how rules combine, not a problem a rule change could move


def rule_tags(example: Example) -> frozenset:
    return frozenset(example.rule) - {UNION_RULE}


def kind_of(example: Example) -> frozenset:
    """What a rule change acts on: the example's rule tags (but the union rule), else its label set."""
    return rule_tags(example) or frozenset({example.output})


def raises(source: Example, rule, example: Example) -> bool:
    """Whether `source` raises `rule`, one of kind_of(example): by rule tags when both are tagged, else (a file
    without tags, or a mix) by having the example's label set."""
    if rule_tags(example) and rule_tags(source):
        return rule in rule_tags(source)
    return source.output == example.output


def same_kind(a: Example, b: Example) -> bool:
    """A rule in common when both are tagged, else the same label set."""
    if rule_tags(a) and rule_tags(b):
        return bool(rule_tags(a) & rule_tags(b))
    return a.output == b.output


def plus(departments: Sequence[str], department: str) -> str:
    return format_departments(list(departments) + [department])


def simulate_corrections(examples: Sequence[Example], candidates: Sequence[Sequence[Passage]],
                         pool: Sequence[Example], k: int, rate: float, seed: int) -> Simulated:
    """The k precedents of each example, some marked as corrections, and the examples with targets to match.

    candidates[i]: example i's nearest pool examples (no copies of it), nearest first, ids ``train:<pool index>``;
    more than k of them, so that a precedent raising the changed rule can be found below the top k."""
    rng = random.Random(seed)
    out = Simulated([], [])
    for example, found in zip(examples, candidates):
        top, target = list(found[:k]), example
        draw = rng.random()
        if draw < rate:
            top, target = _applies(example, list(found), pool, k, rng) or (top, example)
            out.applied += target is not example
        elif draw < rate * (1 + DOES_NOT_APPLY):
            changed = _does_not_apply(example, top, pool, rng)
            out.not_applied += changed is not None
            top = changed or top
        out.precedents.append(top)
        out.examples.append(target)
    return out


def _source(passage: Passage, pool: Sequence[Example]) -> Example:
    return pool[int(passage.doc_id.split(":", 1)[1])]


def _correct(passage: Passage, label: str) -> Passage:
    return replace(passage, title=label, corrected=True)


def _applies(example, found, pool, k, rng) -> tuple[list[Passage], Example] | None:
    rule = rng.choice(sorted(kind_of(example), key=str))
    raising = [i for i, p in enumerate(found) if raises(_source(p, pool), rule, example)]
    missing = [d for d in DEPARTMENTS if d not in example.departments]
    if not raising or not missing:
        return None
    added = rng.choice(missing)
    top = found[:k]
    nearest = raising[0]
    if nearest >= k:
        top[k - 1] = found[nearest]
        nearest = k - 1
    for i, passage in enumerate(top):
        if i == nearest or (raises(_source(passage, pool), rule, example) and rng.random() < ALSO_CORRECTED):
            top[i] = _correct(passage, plus(parse_departments(passage.title), added))
    return top, replace(example, departments=tuple(canonical([*example.departments, added])))


def _does_not_apply(example, top, pool, rng) -> list[Passage] | None:
    others = [i for i, p in enumerate(top) if not same_kind(_source(p, pool), example)]
    if not others:
        return None
    i = rng.choice(others)
    labels = parse_departments(top[i].title)
    missing = [d for d in DEPARTMENTS if d not in labels]
    if not missing:
        return None
    changed = list(top)
    changed[i] = _correct(top[i], plus(labels, rng.choice(missing)))
    return changed
