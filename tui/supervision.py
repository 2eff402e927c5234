"""The supervisor's headless core: review queue, training data with pending corrections, model versions.

Thin glue over router/store.py, router/report.py and tui/retrain_job.py so the
supervisor screen only shows things; no Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass

from router import store as store_api
from router.dataset import Example, load_examples
from router.report import Distribution, label_distribution
from router.service import RouterService
from tui.retrain_job import RetrainOutcome, default_train_file, merge_corrections


@dataclass
class PendingCorrection:
    correction_id: int
    ticket_id: int
    text: str
    departments: list[str]


def pending_corrections(store) -> list[PendingCorrection]:
    """Corrections no model was trained on yet; a ticket corrected twice counts with its latest correction."""
    if store is None:
        return []
    with store.session() as session:
        rows = store_api.untrained_corrections(session)
        texts = {tid: store_api.get_ticket(session, tid).text for tid in {r.ticket_id for r in rows}}
    return [PendingCorrection(r.id, r.ticket_id, texts[r.ticket_id], list(r.departments)) for r in rows]


@dataclass
class TrainingSet:
    examples: list[Example]
    base_count: int
    corrections: list[PendingCorrection]

    @property
    def correction_ids(self) -> list[int]:
        return [c.correction_id for c in self.corrections]

    def distribution(self) -> Distribution:
        return label_distribution(self.examples)


def training_set(service: RouterService, store) -> TrainingSet:
    """The current training file plus the pending corrections (which relabel or add complaints)."""
    path = default_train_file(service)
    base = load_examples(path, service.settings.max_input_chars)
    corrections = pending_corrections(store)
    merged = merge_corrections(base, [(c.text, c.departments) for c in corrections])
    return TrainingSet(merged, len(base), corrections)


def review_items(store, limit: int = 100) -> list[store_api.ReviewItem]:
    return [] if store is None else store.review_queue(limit)


def latest_routing(ticket) -> tuple[list[str], dict[str, float]]:
    """The departments and confidences of a stored ticket's latest routing."""
    if not ticket.routings:
        return list(ticket.departments), {}
    last = ticket.routings[-1]
    return list(last.departments), dict(last.confidence)


def register_outcome(store, outcome: RetrainOutcome, correction_ids: list[int]) -> None:
    """Add the retrained soft prompt as a candidate version with its metrics; its corrections count as trained."""
    metrics = {key: outcome.candidate.get(key) for key in ("n", "exact_set_accuracy", "micro_f1", "macro_f1")}
    metrics["per_department"] = outcome.candidate.get("per_department", {})
    if outcome.active_version:
        metrics["compared_with"] = {"version": outcome.active_version,
                                    **{k: outcome.active.get(k) for k in ("exact_set_accuracy", "micro_f1", "macro_f1")}}
    with store.session() as session:
        store_api.register_model_version(session, outcome.path, metrics=metrics)
        if correction_ids:
            store_api.mark_corrections_used(session, correction_ids, outcome.version)


def model_versions(store) -> list:
    return [] if store is None else store.list_model_versions()
