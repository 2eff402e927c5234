"""How much one labeled file can tell: a 95% interval for each exact-set score, and each model against the first.

On 160 complaints one complaint is 0.006 of exact-set and a 95% interval spans about +-0.05, so two
models 0.02 apart may not differ at all. Models routed on the same complaints are compared pair by
pair: only the complaints one gets right and the other wrong say anything (McNemar's test, exact: a
two-sided binomial test of those discordant complaints at p = 0.5).
"""

from __future__ import annotations

import math
from typing import Sequence

from tuning.metrics import exact_hits


def wilson_interval(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for right/n (95% with z = 1.96); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def exact_mcnemar_p(wins: int, losses: int) -> float:
    """Two-sided exact p-value that `wins` and `losses` (the discordant pairs) came from a fair coin."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _paired_hits(reference: Sequence[bool], other: Sequence[bool]) -> dict:
    wins = sum(n and not r for r, n in zip(reference, other))
    losses = sum(r and not n for r, n in zip(reference, other))
    return {"wins": wins, "losses": losses, "p_value": round(exact_mcnemar_p(wins, losses), 4)}


def paired(gold: Sequence[Sequence[str]], reference: Sequence[Sequence[str]], other: Sequence[Sequence[str]]) -> dict:
    """`other` against `reference` on the same complaints: complaints only it gets right (wins), only the
    reference gets right (losses), and McNemar's exact p-value."""
    return _paired_hits(exact_hits(gold, reference), exact_hits(gold, other))


def add_uncertainty(reports: Sequence, gold: Sequence[Sequence[str]]) -> None:
    """Each report's extra gets `exact_set_95ci`; every report after the first gets `paired_vs_first` against it."""
    hits = [exact_hits(gold, report.predictions) for report in reports]
    for n, report in enumerate(reports):
        low, high = wilson_interval(sum(hits[n]), len(hits[n]))
        report.extra["exact_set_95ci"] = [round(low, 4), round(high, 4)]
        if n:
            report.extra["paired_vs_first"] = {"against": reports[0].strategy, **_paired_hits(hits[0], hits[n])}


def format_pair(pair: dict) -> str:
    """'+wins -losses p=...' (a `paired` result) for a table cell."""
    return f"+{pair['wins']} -{pair['losses']} p={pair['p_value']:.2f}"


def paired_cell(extra: dict) -> str:
    """A methods-table cell: the row against the first, '(first)' for the first row, or '–' when not compared."""
    pair = extra.get("paired_vs_first")
    if pair is None:
        return "(first)" if "exact_set_95ci" in extra else "–"
    return format_pair(pair)


__all__ = ["add_uncertainty", "exact_mcnemar_p", "format_pair", "paired", "paired_cell", "wilson_interval"]
