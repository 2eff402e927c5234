"""The evaluation gate: a retrained candidate against the active model, same base model, same data.

The candidate is promoted automatically only when, on every gated evaluation set
(the dev file and the held-out corrections), its exact-set accuracy and macro F1
reach the active model's plus `margin`. Otherwise it stays a candidate and the
comparison says why. Each set also reports the complaints only the candidate gets right,
only the active model gets right, and McNemar's exact p (`tuning.paired`), so a
supervisor can see whether a difference is more than chance; the rule itself is the margin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from router.artifact import ArtifactError, load_tuned_model
from router.dataset import Example
from router.engine import Engine
from tuning.metrics import routing_metrics
from tuning.paired import format_pair, paired

log = logging.getLogger(__name__)

GATED_METRICS = ("exact_set_accuracy", "macro_f1")
SUMMARY_METRICS = ("n", "exact_set_accuracy", "micro_f1", "macro_f1")
GATED_SETS = ("dev", "holdout")
DETAIL_SETS = ("holdout", "corrections")  # small sets whose every prediction is kept (which corrections it gets right)
MAX_DETAILS = 200
EPSILON = 1e-9


def predict(engine: Engine, tuned, examples: Sequence[Example], batch_size: int = 16) -> list[list[str]]:
    """The departments the tuned strategy with the tuned model `tuned` gives each example."""
    routed = engine.route_many([ex.input for ex in examples], "tuned", tuned=tuned, batch_size=batch_size)
    return [r.departments for r in routed]


def evaluate(engine: Engine, tuned, examples: Sequence[Example], batch_size: int = 16) -> dict:
    """Exact-set accuracy, micro/macro F1 and per-department scores of one soft prompt on `examples`."""
    return routing_metrics([list(ex.departments) for ex in examples], predict(engine, tuned, examples, batch_size))


def summary(metrics: Mapping | None) -> dict | None:
    return None if metrics is None else {k: metrics.get(k) for k in SUMMARY_METRICS}


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    margin: float
    candidate_version: str
    active_version: str | None
    sets: dict[str, dict] = field(default_factory=dict)  # name -> {n, gated, candidate, active}

    def to_json(self) -> dict:
        return {"promote": self.promote, "reasons": list(self.reasons), "margin": self.margin,
                "candidate_version": self.candidate_version, "active_version": self.active_version,
                "sets": self.sets}

    def version_metrics(self, primary: str = "dev") -> dict:
        """What the registry stores as the version's metrics: the primary set's scores, the comparison, the gate."""
        name = primary if primary in self.sets else next(iter(self.sets), None)
        out: dict = {"evaluated_on": name, "gate": self.to_json()}
        if name is not None:
            chosen = self.sets[name]
            out.update(chosen["candidate"] or {})
            if chosen["active"] is not None:
                out["compared_with"] = {"version": self.active_version, **chosen["active"]}
        return out


def decide(results: Mapping[str, tuple[dict, dict | None]], *, candidate_version: str, active_version: str | None,
           margin: float = 0.0, gated: Sequence[str] = GATED_SETS, active_problem: str | None = None) -> GateDecision:
    """Promote only when the candidate is not worse (by `margin`) than the active model on every gated set."""
    sets: dict[str, dict] = {}
    reasons: list[str] = []
    promote = True
    for name, (candidate, active) in results.items():
        is_gated = name in gated and candidate.get("n", 0) > 0
        sets[name] = {"n": candidate.get("n", 0), "gated": is_gated, "candidate": summary(candidate),
                      "active": summary(active)}
        if not is_gated or active is None:
            continue
        for metric in GATED_METRICS:
            need = active[metric] + margin
            if candidate[metric] + EPSILON < need:
                promote = False
                reasons.append(f"{name}: {metric} {candidate[metric]:.4f} is below the active model's "
                               f"{active[metric]:.4f}" + (f" + margin {margin:g}" if margin else ""))
    if active_version is None:
        promote = False
        reasons.append(active_problem or "no active model to compare with: promote it by hand")
    elif not any(s["gated"] for s in sets.values()):
        promote = False
        reasons.append("no evaluation data (dev file missing and no held-out corrections): promote it by hand")
    if promote:
        checked = ", ".join(n for n, s in sets.items() if s["gated"])
        reasons.append(f"not worse than {active_version} on {checked} (exact-set accuracy and macro F1"
                       + (f", margin {margin:g})" if margin else ")"))
    return GateDecision(promote, reasons, margin, candidate_version, active_version, sets)


def run_gate(base, candidate_path: Path, active_path: Path | None, eval_sets: Mapping[str, Sequence[Example]], *,
             margin: float = 0.0, threshold: float = 0.6, batch_size: int = 16,
             gated: Sequence[str] = GATED_SETS) -> GateDecision:
    """Evaluate the candidate and the active model through one Engine on `base` and decide."""
    engine = Engine(base, threshold=threshold)
    candidate = load_tuned_model(candidate_path, base)
    active, active_version, problem = None, None, None
    if active_path is not None:
        try:
            active = load_tuned_model(active_path, base)
            active_version = active.version
        except (ArtifactError, OSError) as exc:
            problem = f"the active model {active_path} cannot be evaluated ({exc}): promote it by hand"
            log.warning(problem)
    results, details, pairs = {}, {}, {}
    for name, examples in eval_sets.items():
        if not examples:
            continue
        gold = [list(ex.departments) for ex in examples]
        ours = predict(engine, candidate, examples, batch_size)
        theirs = predict(engine, active, examples, batch_size) if active is not None else None
        results[name] = (routing_metrics(gold, ours), routing_metrics(gold, theirs) if theirs is not None else None)
        if theirs is not None:  # complaint by complaint: only the candidate right (wins), only the active (losses)
            pairs[name] = paired(gold, theirs, ours)
        if name in DETAIL_SETS:
            details[name] = [{"input": ex.input, "expected": g, "candidate": c, "active": theirs[i] if theirs else None}
                             for i, (ex, g, c) in enumerate(zip(examples, gold, ours))][:MAX_DETAILS]
    decision = decide(results, candidate_version=candidate.version, active_version=active_version, margin=margin,
                      gated=gated, active_problem=problem)
    for name, rows in details.items():
        decision.sets[name]["examples"] = rows
    for name, pair in pairs.items():
        decision.sets[name]["paired"] = pair
    return decision


def format_decision(decision: Mapping) -> str:
    """The comparison as a small table plus the verdict (for `triage retrain start --follow`)."""
    active = decision.get("active_version") or "-"
    lines = [f"{'set':<12} {'n':>5} {'exact':>8} {'active':>8} {'macroF1':>8} {'active':>8} {'vs active':>17}  gated"]
    for name, s in decision.get("sets", {}).items():
        cand, act = s.get("candidate") or {}, s.get("active") or {}

        def cell(d, key):
            return f"{d[key]:>8.3f}" if d.get(key) is not None else f"{'-':>8}"

        pair = s.get("paired")
        versus = format_pair(pair) if pair else "-"
        lines.append(f"{name:<12} {s.get('n', 0):>5} {cell(cand, 'exact_set_accuracy')} {cell(act, 'exact_set_accuracy')} "
                     f"{cell(cand, 'macro_f1')} {cell(act, 'macro_f1')} {versus:>17}  {'yes' if s.get('gated') else 'no'}")
    verdict = "promoted" if decision.get("promote") else "stays a candidate"
    lines.append(f"candidate {decision.get('candidate_version')} vs active {active}: {verdict}")
    lines += [f"  {r}" for r in decision.get("reasons", [])]
    return "\n".join(lines)
