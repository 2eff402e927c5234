"""A whole `triage tune` run: train on a labeled file, save the artifact (metadata, model card, loss plot),
and evaluate it on a held-out file when one is given. The CLI parses options and prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from router.dataset import Example
from router.service import RouterService
from router.settings import Settings
from tuning.artifacts import build_metadata, save_artifact, update_metadata
from tuning.config import TuningConfig, loss_unit
from tuning.evaluate import evaluate_lm
from tuning.plots import loss_png
from tuning.train import TrainResult, train


@dataclass
class TuneRun:
    out: Path
    result: TrainResult
    dev_metrics: dict | None = None  # the held-out evaluation, when a dev file was given


def training_service(settings: Settings, context: str = "none") -> RouterService:
    """A routing service on full-precision weights, whatever the serving precision (bf16 autocast is a tuning
    parameter), to train on and to evaluate the result with (a context-tuned model with its context)."""
    grounder = None
    if context != "none":
        from rag.grounding import build_grounder

        grounder = build_grounder(settings)
    return RouterService(settings.model_copy(update={"precision": "fp32"}), grounder=grounder)


def training_contexts(config: TuningConfig, settings: Settings):
    """What the tune retrieves for each example (None: no context), with serving's k from the settings."""
    if config.context == "none":
        return None
    from rag.training_context import TrainingContexts

    return TrainingContexts(config.context, settings.rag_top_k, settings.precedents_k,
                            config.simulated_corrections, config.seed, config.precedent_chars)


def tune_artifact(service: RouterService, examples: Sequence[Example], config: TuningConfig, data_path: Path,
                  out: Path, *, version: str | None = None, dev: Sequence[Example] = (), dev_path: Path | None = None,
                  more: dict[Path, Sequence[Example]] | None = None,
                  on_progress: Callable | None = None, on_message: Callable[[str], None] | None = None) -> TuneRun:
    """Train (with the retrieved context serving will use, for `config.context`), save, evaluate on `dev`.
    `more`: files of examples added to the training split only (path -> its examples)."""
    base = service.engine.base
    settings = service.settings
    contexts = training_contexts(config, settings)
    context_for = None
    if contexts is not None:
        def context_for(train_set, val_set, pool):
            return contexts.build_for_tune(settings, train_set, val_set, pool, on_progress=on_message or (lambda m: None))
    if config.teacher is not None and on_message is not None:
        from tuning.teacher import teacher_split_warning

        for teacher in config.teachers:
            warning = teacher_split_warning(teacher, examples, data_path, config)
            if warning:
                on_message(f"warning: {warning}")
    more = more or {}
    added = [example for examples_of_file in more.values() for example in examples_of_file]
    result = train(base, examples, config, on_progress=on_progress, context_for=context_for, more=added)
    extra = {"context": contexts.to_json()} if contexts is not None else None
    metadata = build_metadata(base, config, result, Path(data_path), version or out.name, extra,
                              {Path(p): len(e) for p, e in more.items()})
    save_artifact(result, metadata, out)
    loss_png(result.epoch_losses, result.val_losses, out / "loss.png", f"{config.method} tuning loss", loss_unit(config))
    run = TuneRun(out, result)
    if dev:
        service.use_tuned(out)
        report = evaluate_lm(service, "tuned", list(dev), batch_size=16)
        run.dev_metrics = {"data": str(dev_path), "precision": "fp32", **report.to_json()}
        update_metadata(out, dev_metrics=run.dev_metrics)
    return run
