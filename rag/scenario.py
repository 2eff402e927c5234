"""The correction scenario: a rule changes, supervisors correct a few complaints, similar ones route by the new rule.

With no retrain in between: complaints of the changed kind (``data/scenario/new_rule.jsonl``) and a held-out
file (``data/dev.jsonl``) are routed with the tuned model, the supervisors' corrections
(``data/scenario/corrections.jsonl``) are saved as precedents through ``rag.precedents.add_precedent`` (what
``POST /v1/tickets/{id}/corrections`` calls), and the same complaints are routed again. Everything happens in
a scratch store built from the policy corpus and the training file, so the configured store is never touched.
``scripts/correction_scenario.py`` runs it and prints the table.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from router.dataset import Example, load_examples
from router.settings import Settings, project_root

SCENARIO_DIR = project_root() / "data" / "scenario"


@dataclass
class Phase:
    new_rule: list[list[str]]  # departments routed for each new-rule complaint
    held_out: list[list[str]]
    new_rule_cited: list[set[str]]  # ids of the precedents each new-rule routing had in its prompt
    held_out_cited: list[set[str]]
    missing_context: int = 0  # routings whose retrieval failed (routed without context)


@dataclass
class ScenarioResult:
    model: str
    corrections: int
    new_rule: list[Example]
    held_out: list[Example]
    before: Phase
    after: Phase
    affected_held_out: list[int] = field(default_factory=list)  # held-out lines the rule change relabels
    correction_ids: set[str] = field(default_factory=set)

    def citing_corrections(self, cited: list[set[str]]) -> int:
        return sum(bool(ids & self.correction_ids) for ids in cited)

    def share_new_rule(self, phase: Phase) -> float:
        return _share(self.new_rule, phase.new_rule)

    def held_out_exact(self, phase: Phase, rest_only: bool = False) -> float:
        pairs = [(ex, got) for ex, got in zip(self.held_out, phase.held_out)
                 if not (rest_only and ex.line in self.affected_held_out)]
        return _share([ex for ex, _ in pairs], [got for _, got in pairs])

    def held_out_changed(self) -> int:
        return sum(a != b for a, b in zip(self.before.held_out, self.after.held_out))

    def to_json(self) -> dict:
        return {
            "model": self.model, "corrections_saved": self.corrections, "new_rule_complaints": len(self.new_rule),
            "new_rule_share_before": round(self.share_new_rule(self.before), 4),
            "new_rule_share_after": round(self.share_new_rule(self.after), 4),
            "held_out": len(self.held_out), "held_out_exact_before": round(self.held_out_exact(self.before), 4),
            "held_out_exact_after": round(self.held_out_exact(self.after), 4),
            "rest_exact_before": round(self.held_out_exact(self.before, True), 4),
            "rest_exact_after": round(self.held_out_exact(self.after, True), 4),
            "held_out_routings_changed": self.held_out_changed(), "affected_held_out_lines": self.affected_held_out,
            "new_rule_citing_a_correction_after": self.citing_corrections(self.after.new_rule_cited),
            "held_out_citing_a_correction_after": self.citing_corrections(self.after.held_out_cited),
            "routed_without_context": self.before.missing_context + self.after.missing_context,
        }


def _share(examples: Sequence[Example], routed: Sequence[list[str]]) -> float:
    return sum(list(got) == list(ex.departments) for ex, got in zip(examples, routed)) / max(1, len(examples))


def scratch_settings(settings: Settings, directory: Path) -> Settings:
    """Settings whose retrieval store lives in `directory`; everything else (model cache included) as given."""
    scratch = settings.model_copy(update={"data_dir": Path(directory), "chroma_host": None})
    (Path(directory) / "cache").symlink_to(settings.cache_dir, target_is_directory=True)
    return scratch


def run_scenario(settings: Settings, model: Path, *, held_out_path: Path, train_path: Path | None = None,
                 scenario_dir: Path = SCENARIO_DIR, affected: Sequence[int] = (), base=None, precedents: bool = False,
                 say: Callable[[str], None] = lambda message: None) -> ScenarioResult:
    """Route before and after saving the corrections, with the tuned model at `model` and no retrain.

    The model retrieves what it was tuned with; precedents=True adds precedents to a model tuned without them."""
    from rag.grounding import ChromaGrounder
    from rag.ingest import ingest_policies
    from rag.precedents import add_precedent, default_examples_file, ingest_examples
    from router.service import RouterService

    corrections = load_examples(Path(scenario_dir) / "corrections.jsonl")
    new_rule = load_examples(Path(scenario_dir) / "new_rule.jsonl")
    held_out = load_examples(held_out_path)
    with tempfile.TemporaryDirectory(prefix="triage-scenario-") as tmp:
        scratch = scratch_settings(settings, Path(tmp))
        say("building a scratch store: the policy corpus and the training file's precedents")
        ingest_policies(scratch, project_root() / "data" / "policies")
        ingest_examples(scratch, Path(train_path) if train_path else default_examples_file(settings))
        service = RouterService(scratch, base=base, grounder=ChromaGrounder(scratch), tuned_path=Path(model))

        def phase(name: str) -> Phase:
            say(f"{name}: routing {len(new_rule)} new-rule complaints and {len(held_out)} held-out ones")
            a = service.route_many([ex.input for ex in new_rule], "tuned", precedents=precedents)
            b = service.route_many([ex.input for ex in held_out], "tuned", precedents=precedents)
            missing = sum(r.context_unavailable is not None for r in a + b)
            return Phase([r.departments for r in a], [r.departments for r in b], [_cited(r) for r in a],
                         [_cited(r) for r in b], missing)

        before = phase("before the corrections")
        ids = {add_precedent(scratch, ex.input, ex.output, f"scenario:corrections.jsonl:{ex.line}") for ex in corrections}
        say(f"saved {len(corrections)} corrections as precedents (no retrain)")
        after = phase("after the corrections")
        version = service.tuned_model.version
    return ScenarioResult(version, len(corrections), new_rule, held_out, before, after, list(affected), ids)


def _cited(routing) -> set[str]:
    return {p.doc_id for p in routing.passages if p.kind == "precedent"}


def format_scenario(result: ScenarioResult, held_out_name: str) -> str:
    j = result.to_json()
    rows = [
        ("new-rule complaints routed by the new rule", j["new_rule_share_before"], j["new_rule_share_after"],
         "<= 0.20 before, >= 0.80 after"),
        (f"{held_out_name} exact-set (all {j['held_out']})", j["held_out_exact_before"], j["held_out_exact_after"],
         "moves <= 0.01"),
        (f"{held_out_name} exact-set without the {len(result.affected_held_out)} relabeled",
         j["rest_exact_before"], j["rest_exact_after"], "moves <= 0.01"),
    ]
    header = f"{'':<52} {'before':>7} {'after':>7}  target"
    lines = [f"model {j['model']}; {j['corrections_saved']} corrections saved as precedents, no retrain", header,
             "-" * len(header)]
    lines += [f"{name:<52} {b:>7.3f} {a:>7.3f}  {target}" for name, b, a, target in rows]
    lines.append(f"after: {j['new_rule_citing_a_correction_after']} of {j['new_rule_complaints']} new-rule and "
                 f"{j['held_out_citing_a_correction_after']} of {j['held_out']} {held_out_name} routings had a "
                 f"correction among their precedents; {held_out_name} routings that changed: "
                 f"{j['held_out_routings_changed']}; routed without context (retrieval failed): "
                 f"{j['routed_without_context']}")
    return "\n".join(lines)
