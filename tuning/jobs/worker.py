"""What a tuning job does, start to end: assemble the training set, train, evaluate through the gate,
register the version (and promote it when the gate says so), then mark its corrections trained.

The order makes a killed worker harmless: until the registration nothing outside the job's
own directory changes, and corrections are marked trained only after the version exists.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from router import store
from router.dataset import Example, load_examples
from router.settings import Settings
from tuning.assemble import assemble_from_store, write_training_files
from tuning.jobs import store as jobs
from tuning.jobs.paths import JobPaths
from tuning.jobs.progress import ProgressFile
from tuning.jobs.start_point import active_artifact
from tuning.jobs.records import TuningJob
from tuning.train import Cancelled

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """A job that cannot go on (no training data, a version name already taken, ...)."""


def gate_files(settings: Settings) -> dict[str, list[Example]]:
    """TRIAGE_GATE_FILES as evaluation sets named by file ("gate:<name>"), or JobError naming a missing file."""
    sets = {}
    for path in settings.resolved_gate_files:
        if not path.is_file():
            raise JobError(f"TRIAGE_GATE_FILES: {path} does not exist")
        sets[f"gate:{path.stem}"] = load_examples(path, settings.max_input_chars)
    return sets


def more_data(paths: list[str], relabeled: set[str], max_chars: int) -> dict[Path, list[Example]]:
    """The continued prompt's more-data files (training split only), less any complaint a correction relabels
    (trained on or held out): the correction wins, as it does over the base file."""
    from router.dataset import normalize

    relabeled = {normalize(text) for text in relabeled}
    return {Path(p): [ex for ex in load_examples(p, max_chars) if normalize(ex.input) not in relabeled] for p in paths}


class _Run:
    def __init__(self, settings: Settings, engine: Engine, job: TuningJob, base=None):
        self.settings, self.engine, self.job, self.base = settings, engine, job, base
        self.paths = JobPaths.of(settings, job.id)
        self.progress = ProgressFile(self.paths.progress)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def stop_requested(self) -> bool:
        return self.paths.cancel.exists()

    def check_stop(self) -> None:
        if self.stop_requested():
            raise Cancelled()

    def phase(self, name: str, **fields) -> None:
        log.info("tuning job %s: %s %s", self.job.id, name, " ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
        self.progress.phase(name, state="running", **fields)
        with self.session() as s:
            jobs.set_phase(s, self.job.id, name)

    def run(self) -> dict:
        from router.modelio import load_base_model
        from tuning.artifacts import build_metadata, save_artifact, update_metadata
        from tuning.gate import GATED_SETS, run_gate
        from tuning.train import train

        settings, job = self.settings, self.job
        self.phase("assembling")
        with self.session() as s:
            assembled, _base = assemble_from_store(settings, s, job.options.get("base_file"))
            compare_with = active_artifact(settings, s)
        if not assembled.examples:
            raise JobError("no training examples: the training file and the corrections are empty")
        gate_sets = gate_files(settings)  # read before training: a bad file fails the job at once
        training_meta = write_training_files(assembled, self.paths.data)
        self.check_stop()
        self.phase("loading", n_train=len(assembled.examples), n_holdout=len(assembled.holdout),
                   n_new_corrections=len(assembled.trained_correction_ids))
        base = self.base or load_base_model(settings.model_copy(update={"precision": "fp32"}))  # train on fp32 weights
        config = jobs.parameters_config(job.parameters)  # the caller's were checked when the job was recorded
        self.check_stop()
        self.phase("training")
        corrected = {ex.input for ex, origin in zip(assembled.examples, assembled.provenance)
                     if origin.get("source") == "correction"}
        relabeled = corrected | {ex.input for ex in assembled.holdout}  # held-out corrections relabel too
        more = more_data(job.options.get("more_data", []), relabeled, settings.max_input_chars)
        result = train(base, assembled.examples, config, on_progress=self.progress.on_train,
                       should_stop=self.stop_requested, label_only=corrected,  # a teacher never saw the corrections
                       more=[ex for examples in more.values() for ex in examples])
        final = Path(settings.models_dir) / job.version
        staging = self.paths.staging
        metadata = build_metadata(base, config, result, self.paths.data / "train.jsonl", job.version,
                                  {"source": f"tuning job {job.id}", "job": {"id": job.id, "who": job.who},
                                   "training_set": training_meta}, {p: len(e) for p, e in more.items()})
        save_artifact(result, metadata, staging)
        for name in ("train_file", "holdout_file", "provenance_file"):
            shutil.copy2(self.paths.data / training_meta[name], staging / training_meta[name])
        meta_training = {**metadata["training_data"], "path": str(final / training_meta["train_file"])}
        update_metadata(staging, training_data=meta_training)
        self.check_stop()
        self.phase("evaluating", eta_s=None)
        dev_path = settings.resolved_dev_file
        eval_sets = {"dev": load_examples(dev_path, settings.max_input_chars) if dev_path.is_file() else [],
                     "holdout": assembled.holdout, "corrections": assembled.new_examples, **gate_sets}
        decision = run_gate(base, staging, compare_with, eval_sets, margin=settings.promote_margin,
                            threshold=settings.confidence_threshold, batch_size=settings.batch_size,
                            gated=(*GATED_SETS, *gate_sets))
        metrics = decision.version_metrics()
        continued = job.parameters.get("init_prompt")
        moved = continued is not None and compare_with is not None and \
            Path(continued).resolve() != Path(compare_with).resolve()
        if moved:  # promoted or rolled back by hand between the job's creation and its run
            log.warning("tuning job %s continued %s, active when it was created; it is compared with %s, active now",
                        job.id, continued, compare_with)
        update_metadata(staging, metrics=metrics, gate=decision.to_json(), dev_file=str(dev_path))
        self.check_stop()  # the last point a cancel is honoured: from here on the version is registered
        self.phase("registering")
        if final.exists():
            raise JobError(f"{final} already exists: a model version directory is never overwritten")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
        promoted = decision.promote and job.options.get("auto_promote", True)
        with self.session() as s:
            try:
                row = store.register_model_version(s, final, metrics=metrics)
            except Exception:
                shutil.rmtree(final, ignore_errors=True)
                raise
            if promoted:
                store.promote(s, row.version, who=f"gate:job-{job.id}")  # the job row says who started it
            marked = store.mark_corrections_used(s, assembled.trained_correction_ids, row.version)
        return {"version": row.version, "artifact_path": str(final), "promoted": promoted,
                "auto_promote": job.options.get("auto_promote", True), "corrections_marked": marked,
                "training_set": assembled.summary(), "gate": decision.to_json(),
                "more_data": {str(p): len(e) for p, e in more.items()},
                # what it continued was read when the job was created, what it is compared with when it ran
                "continued": continued, "compared_with": None if compare_with is None else str(compare_with),
                "active_changed": moved,
                "epoch_losses": result.epoch_losses, "val_losses": result.val_losses, "best_epoch": result.best_epoch,
                "train_seconds": round(result.seconds, 1)}


def run_job(settings: Settings, job_id: int, *, base=None, engine: Engine | None = None) -> TuningJob:
    """Run job `job_id` in this process to its end; returns the finished row (never raises for job failures)."""
    from router.db import engine_for

    own = engine is None
    engine = engine or engine_for(settings)
    try:
        with Session(engine, expire_on_commit=False) as s:
            job = jobs.claim(s, job_id, os.getpid())
        if job.state != "running":
            return job
        runner = _Run(settings, engine, job, base)
        try:
            result = runner.run()
        except Cancelled:
            if runner.paths.orphaned.exists():  # the server that owned the job is gone: nobody follows it
                why = runner.paths.orphaned.read_text(encoding="utf-8").strip()
                return _end(settings, engine, runner, "failed", f"{why}; the job stopped at its next step, nothing was "
                                                                "registered and its corrections stay pending")
            return _end(settings, engine, runner, "cancelled", "cancelled: stopped at the next step; nothing was registered")
        except Exception as exc:  # the job fails, its worker reports it; corrections stay pending
            log.exception("tuning job %s failed", job_id)
            return _end(settings, engine, runner, "failed", f"{type(exc).__name__}: {exc}")
        runner.progress.update(state="succeeded", phase="done", eta_s=0)
        with Session(engine, expire_on_commit=False) as s:
            done = jobs.finish(s, job_id, "succeeded", result=result)
        JobPaths.of(settings, job_id).clean_partial()
        return done
    finally:
        if own:
            engine.dispose()


def _end(settings: Settings, engine: Engine, runner: _Run, state: str, error: str) -> TuningJob:
    with Session(engine, expire_on_commit=False) as s:
        jobs.clean_job_files(settings, s, runner.job)
        done = jobs.finish(s, runner.job.id, state, error=error)
    runner.progress.update(state=state, phase="done", error=error)
    return done
