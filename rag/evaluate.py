"""Retrieval evaluation: does the top-k policy retrieval contain the rule that labeled a complaint?

Examples carry ``rule`` (one number or a list). Rule 16 (several problems: the union)
names no department of its own, so in a list with other rules it is left out; a hit
for a rule is a top-k passage from a document whose front matter names that rule.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from router.dataset import Example

COMBINING_RULE = 16


def _rules(example: Example) -> set[int]:
    rules = set(example.rule)
    return rules - {COMBINING_RULE} if len(rules) > 1 else rules


def retrieval_recall(grounder, examples: Iterable[Example], k: int) -> dict:
    """recall@k over the examples that have a rule.

    grounder: a ``ChromaGrounder`` (``search_policy_many`` and ``rule_documents``); its top k are
    k distinct documents, each cited by its best chunk, exactly what ``ground()`` puts in a prompt.

    recall_any: at least one labeled rule's document is in the top k; recall_all: every one is.
    Also per_rule (single-rule examples, by rule), n, skipped (no rule) and misses (up to 20).
    """
    rule_docs = grounder.rule_documents()
    n = hits_any = hits_all = skipped = 0
    per_rule: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    misses: list[dict] = []
    labeled = []
    for example in examples:
        if _rules(example):
            labeled.append(example)
        else:
            skipped += 1
    results = grounder.search_policy_many([e.input for e in labeled], k) if labeled else []
    for example, passages in zip(labeled, results):
        rules = _rules(example)
        retrieved = [p.doc_id for p in passages]
        found = {r for r in rules if rule_docs.get(r, set()) & set(retrieved)}
        n += 1
        hits_any += bool(found)
        hits_all += found == rules
        if len(rules) == 1:
            (rule,) = rules
            per_rule[rule][0] += bool(found)
            per_rule[rule][1] += 1
        if not found and len(misses) < 20:
            misses.append({"line": example.line, "input": example.input, "rules": sorted(rules), "retrieved": retrieved})
    return {
        "k": k,
        "n": n,
        "skipped": skipped,
        "recall_any": round(hits_any / n, 4) if n else 0.0,
        "recall_all": round(hits_all / n, 4) if n else 0.0,
        "per_rule": {r: round(h / t, 4) for r, (h, t) in sorted(per_rule.items())},
        "misses": misses,
    }
