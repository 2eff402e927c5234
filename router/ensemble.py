"""A prompt ensemble: several soft prompts for one task on the one frozen base, combined by vote.

Prompt ensembling (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning", section 7):
prompts tuned separately for the same task, run in one batch on the same frozen model, their answers
combined by majority vote. Here the vote is per department: a department is routed to when more than half of
the prompts route to it; when no department has a majority, the answer of the first prompt (the members are
listed best first). Every base weight stays unchanged; each prompt costs its keys/values only.

Layout of an ensemble directory::

    ensemble.json          {"method": "prompt-ensemble", "members": ["members/<name>", ...], "vote": ...}
    members/<name>/        a complete soft-prompt artifact each (soft_prompt.*, triage.json, README.md)
    triage.json            the ensemble's metadata (base model + hash, its members' versions and costs)
    README.md              the model card

Routing runs the first majority (2 of 3) of the prompts on every complaint; only where they disagree on
the department set are the others run: where a majority agrees, the rest cannot change the vote, so the
departments are those of running every prompt (the confidences are over the prompts that ran).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from router.departments import DEPARTMENTS
from router.results import Routing

PROMPT_ENSEMBLE = "prompt-ensemble"
ENSEMBLE_CONFIG = "ensemble.json"
VOTE_RULE = ("per department: routed when more than half of the prompts route to it; when none has a majority, "
             "the first prompt's answer")


def read_ensemble_config(directory: Path) -> dict:
    path = Path(directory) / ENSEMBLE_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    members = config.get("members")
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{path}: 'members' must list at least two member directories")
    return config


def majority(size: int) -> int:
    """How many of `size` prompts make a majority."""
    return size // 2 + 1


def voted_departments(answers: Sequence[Sequence[str]]) -> list[str]:
    """The departments the prompts' answers (first prompt first) vote for, in canonical order (module's rule)."""
    votes = Counter(name for answer in answers for name in answer)
    chosen = [name for name in DEPARTMENTS if votes[name] * 2 > len(answers)]
    return chosen or [name for name in DEPARTMENTS if name in answers[0]]


def vote(routings: Sequence[Routing]) -> tuple[list[str], dict[str, float]]:
    """(departments, confidence) of one complaint from the routings of the prompts that ran on it.

    A department's confidence is its confidences summed over those prompts (0 where one did not route to it)
    divided by their number: a split vote is a low-confidence answer. Where the first majority agreed and the
    others did not run, it is that majority's mean confidence.
    """
    chosen = voted_departments([r.departments for r in routings])
    summed = {name: sum(r.confidence.get(name, 0.0) for r in routings if name in r.departments) for name in chosen}
    return chosen, {name: summed[name] / len(routings) for name in chosen}


def combined(routings: Sequence[Routing], version: str, threshold: float, latency_ms: float) -> Routing:
    """One complaint's routing from its prompts' routings: the vote, their tokens, `latency_ms`."""
    departments, confidence = vote(routings)
    first = routings[0]
    return Routing(
        departments=departments,
        confidence=confidence,
        strategy=first.strategy,
        input_tokens=first.input_tokens,
        generated_tokens=sum(r.generated_tokens for r in routings),
        latency_ms=latency_ms,
        virtual_tokens=first.virtual_tokens,
        model_version=version,
        needs_review=min(confidence.values()) < threshold,
        rag=first.rag,
    )


def route_by_vote(route: Callable[[list[str], list, list[str] | None], list[Routing]], texts: Sequence[str],
                  contexts: Sequence[str] | None, members: Sequence, version: str, threshold: float) -> list[Routing]:
    """Route `texts` with every prompt in `members` and vote; `route(texts, prompts, contexts)` routes each text
    with its prompt (in shared batches). A majority of the prompts runs first; the others only where it disagrees.

    Latency: a complaint the majority agreed on, its first-round latency (its batch's start to its answer); one
    that needed the others, that plus the whole second round's wall time (every split complaint waits for it).
    """
    first = list(members[: majority(len(members))])
    rest = list(members[len(first):])
    per_text: list[list[Routing]] = [[] for _ in texts]
    _route_with(route, texts, contexts, range(len(texts)), first, per_text)
    waited = [max(r.latency_ms for r in rs) for rs in per_text]
    split = [i for i, rs in enumerate(per_text) if len({tuple(r.departments) for r in rs}) > 1]
    if rest and split:
        started = time.perf_counter()
        _route_with(route, texts, contexts, split, rest, per_text)
        second_round = (time.perf_counter() - started) * 1000
        for i in split:
            waited[i] += second_round
    return [combined(rs, version, threshold, ms) for rs, ms in zip(per_text, waited)]


def _route_with(route, texts, contexts, indices, prompts, per_text) -> None:
    rows = [(i, p) for i in indices for p in prompts]
    routed = route([texts[i] for i, _ in rows], [p for _, p in rows],
                   [contexts[i] for i, _ in rows] if contexts else None)
    for (i, _), routing in zip(rows, routed):
        per_text[i].append(routing)
