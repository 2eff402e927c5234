"""The supervisor's headless helpers: review queue, the next retrain's training set, model versions.

Thin glue over the application core (router.application) so the supervisor screen only shows things;
no Textual here.
"""

from __future__ import annotations

from router.application import Application, TrainingPreview
from router.report import Distribution, label_distribution


def review_items(core: Application, limit: int = 100) -> list:
    return core.store.review_queue(limit)


def training_set(core: Application) -> TrainingPreview:
    """The set the next retrain trains on: the training file with every correction applied, minus held-out ones."""
    return core.retraining.preview()


def distribution(preview: TrainingPreview) -> Distribution:
    return label_distribution(preview.assembled.examples)


def latest_routing(ticket) -> tuple[list[str], dict[str, float]]:
    """The departments and confidences of a stored ticket's latest routing."""
    if not ticket.routings:
        return list(ticket.departments), {}
    last = ticket.routings[-1]
    return list(last.departments), dict(last.confidence)


def model_versions(core: Application) -> list:
    return core.registry.versions()
