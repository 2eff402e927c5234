"""A retrain the supervisor starts from the console: train, save, evaluate against the active model.

Headless (no Textual): the Retrain pane runs `run_retrain` in a worker thread and
shows its progress. Until a training-job module exists in tuning/, this is the
one place the console drives tuning.train.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from router.artifact import load_tuned_model
from router.dataset import Example, load_examples, normalize, write_examples
from router.service import RouterService
from router.settings import project_root
from tuning.config import TuningConfig
from tuning.gate import evaluate
from tuning.train import Progress, train

log = logging.getLogger(__name__)

EVAL_METRICS = ("exact_set_accuracy", "micro_f1", "macro_f1")


def default_train_file(service: RouterService) -> Path:
    return service.settings.shots_file or project_root() / "data" / "complaints.jsonl"


def default_eval_file() -> Path:
    return project_root() / "data" / "dev.jsonl"


def merge_corrections(examples: Sequence[Example], corrections: Sequence[tuple[str, Sequence[str]]]) -> list[Example]:
    """The training set with each corrected complaint added, or relabelled where it is already in the set."""
    corrected = {normalize(text): (text, tuple(depts)) for text, depts in corrections}
    merged = []
    for ex in examples:
        hit = corrected.pop(normalize(ex.input), None)
        merged.append(Example(ex.input, hit[1], ex.line, ex.rule) if hit else ex)
    merged += [Example(text, depts) for text, depts in corrected.values()]
    return merged


def new_version_name(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("console-%Y%m%d-%H%M%S")


@dataclass
class RetrainOutcome:
    version: str
    path: Path
    epoch_losses: list[float]
    val_losses: list[float]
    candidate: dict = field(default_factory=dict)  # metrics of the new soft prompt on the eval set
    active: dict = field(default_factory=dict)  # metrics of the active one, same set
    active_version: str | None = None
    n_train: int = 0
    n_eval: int = 0


def run_retrain(
    service: RouterService,
    config: TuningConfig,
    examples: Sequence[Example],
    *,
    eval_examples: Sequence[Example] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    version: str | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> RetrainOutcome:
    """Tune a new soft prompt on `examples`, save it under models_dir, evaluate it and the active one."""
    from tuning.artifacts import build_metadata, save_artifact

    if not examples:
        raise ValueError("no training examples: the training file and the pending corrections are empty")
    settings = service.settings
    base = service.engine.base
    version = version or new_version_name()
    out = settings.models_dir / version
    data_path = settings.models_dir / f"{version}.train.jsonl"
    phase = on_phase or (lambda _: None)
    phase("training")
    result = train(base, examples, config, on_progress=on_progress, should_stop=should_stop)
    write_examples(examples, data_path)
    save_artifact(result, build_metadata(base, config, result, data_path, version, {"source": "console"}), out)
    outcome = RetrainOutcome(version, out, result.epoch_losses, result.val_losses, n_train=result.n_train)
    if eval_examples is None:
        eval_file = default_eval_file()
        eval_examples = load_examples(eval_file, settings.max_input_chars) if eval_file.is_file() else []
    outcome.n_eval = len(eval_examples)
    if eval_examples:
        phase("evaluating")
        candidate = load_tuned_model(out, base)
        outcome.candidate = evaluate(service.engine, candidate, eval_examples, service.settings.batch_size)
        try:
            active = service.tuned_model
        except Exception as exc:  # no active model yet: the candidate stands alone
            log.warning("no active soft prompt to compare with: %s", exc)
        else:
            outcome.active_version = active.version
            outcome.active = evaluate(service.engine, active, eval_examples, service.settings.batch_size)
    return outcome
