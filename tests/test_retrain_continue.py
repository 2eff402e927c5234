"""A retraining job continues the active late prompt (tuning.jobs.start_point) on the tiny model:
its parameters, the version it registers, the refusals, and the way out (start from scratch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file
from sqlmodel import Session

from conftest import TINY_TRAIN
from router.api import create_app
from router.security import create_key
from router.settings import Settings
from test_late_prompt import _config, _tune
from test_retrain_helpers import correct, migrated, write_jsonl
from tuning.jobs import store as jobs
from tuning.jobs.start_point import CONTINUE_EPOCHS, CONTINUE_LEARNING_RATE, job_parameters, lost_recipe
from tuning.jobs.worker import run_job


@pytest.fixture
def late(tiny_base, tiny_train_file, tmp_path) -> Path:
    """The active version: a late prompt (layer 1 of 2, 4 positions) tuned on the tiny model."""
    path, _ = _tune(tiny_base, tiny_train_file, tmp_path / "tiny-late", epochs=2)
    return path


def prompt_tensors(artifact: Path) -> dict[str, torch.Tensor]:
    files = sorted(artifact.glob("*.safetensors"))
    assert files, f"no safetensors in {artifact}"
    return load_file(str(files[0]))


def test_parameters_continue_a_late_prompt_and_leave_everything_else_alone(late, tiny_artifact):
    got = job_parameters({}, late)
    assert got == {"method": "late-prompt", "learning_rate": CONTINUE_LEARNING_RATE, "epochs": CONTINUE_EPOCHS,
                   "prompt_layer": 1, "num_virtual_tokens": 4, "init_prompt": str(late)}
    assert job_parameters({"epochs": 1, "batch_size": 4}, late)["epochs"] == 1, "what the caller gives wins"
    assert job_parameters({"method": "lora"}, late) == {"method": "lora"}, "another method: a fresh tune"
    assert job_parameters({}, late, "scratch") == {}, "from scratch: the parameters alone"
    assert job_parameters({}, tiny_artifact) == {}, "a PEFT prompt is not continued"
    with pytest.raises(jobs.ParameterError) as refused:
        job_parameters({"prompt_layer": 0}, late)
    assert refused.value.problems[0][0] == "prompt_layer" and "start_from=scratch" in refused.value.problems[0][1]
    with pytest.raises(jobs.ParameterError) as refused:
        job_parameters({}, late, "latest")  # type: ignore[arg-type]
    assert refused.value.problems[0][0] == "start_from"


def test_a_context_tuned_prompt_is_not_continued(late, tmp_path):
    meta = json.loads((late / "triage.json").read_text())
    meta["parameters"]["context"] = "precedents"
    (late / "triage.json").write_text(json.dumps(meta))
    assert job_parameters({}, late) == {}


def test_a_job_continues_the_active_late_prompt_and_registers_a_late_prompt(late, tiny_base, tiny_train_file,
                                                                            tmp_path):
    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, tuned_model=late,
                        dev_file=write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4]))
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        correct(s, "The lamp in the ad was blue, mine is grey.", ["Planning", "Marketing"])
        job = jobs.create_job(s, {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}, who="boss", active=late)
    assert job.parameters["init_prompt"] == str(late) and job.parameters["method"] == "late-prompt"
    assert job.options["start"] == f"continues the active late prompt {late}"
    done = run_job(settings, job.id, base=tiny_base, engine=engine)
    assert done.state == "succeeded", done.error
    made = Path(done.result["artifact_path"])
    meta = json.loads((made / "triage.json").read_text())
    assert meta["method"] == "late-prompt" and meta["parameters"]["prompt_layer"] == 1
    assert meta["parameters"]["learning_rate"] == CONTINUE_LEARNING_RATE
    with Session(engine, expire_on_commit=False) as s:  # the same job from scratch, for comparison
        fresh = jobs.create_job(s, {**done.parameters, "init_prompt": None}, who="boss", active=late,
                                start_from="scratch")
    fresh = run_job(settings, fresh.id, base=tiny_base, engine=engine)
    assert fresh.state == "succeeded", fresh.error
    active = prompt_tensors(late)

    def distance(artifact: Path) -> float:
        other = prompt_tensors(artifact)
        assert other.keys() == active.keys()
        return sum((other[k].float() - active[k].float()).norm().item() for k in active)

    continued, scratch = distance(made), distance(Path(fresh.result["artifact_path"]))
    assert 0 < continued < scratch / 2, f"the job moved on from the active prompt ({continued} vs {scratch} afresh)"
    engine.dispose()


def test_api_refuses_another_shape_and_a_job_may_start_from_scratch(late, tiny_settings, tiny_service):
    settings = tiny_settings.model_copy(update={"model_poll_seconds": 0.0, "tuned_model": late})
    engine = migrated(settings)
    with Session(engine) as s:
        boss = {"Authorization": f"Bearer {create_key(s, 'boss', 'supervisor')[1]}"}
    with TestClient(create_app(settings, tiny_service)) as client:
        r = client.post("/v1/tuning/jobs", json={"parameters": {"prompt_layer": 0}}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parameters.prompt_layer"
        r = client.post("/v1/tuning/jobs", json={"parameters": {}, "start_from": "latest"}, headers=boss)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start_from"
    with Session(engine, expire_on_commit=False) as s:
        fresh = jobs.create_job(s, {}, who="boss", active=late, start_from="scratch")
        assert fresh.parameters["init_prompt"] is None and fresh.parameters["method"] == "lora"
        assert fresh.options["start"] == "a fresh lora tune"
    engine.dispose()


def test_console_form_defaults_to_the_continued_prompt(late, tiny_settings, tiny_service):
    from router.application.retraining import Retraining

    settings = tiny_settings.model_copy(update={"tuned_model": late})
    engine = migrated(settings)
    defaults, start = Retraining(settings, engine).job_defaults()
    assert (defaults.method, defaults.prompt_layer, defaults.num_virtual_tokens) == ("late-prompt", 1, 4)
    assert (defaults.learning_rate, defaults.epochs) == (CONTINUE_LEARNING_RATE, CONTINUE_EPOCHS)
    assert start == f"continues the active late prompt {late}"
    defaults, start = Retraining(tiny_settings, engine).job_defaults()
    assert defaults.method == "lora" and start == "a fresh lora tune", "a PEFT prompt active: LoRA as before"
    engine.dispose()


def test_a_continued_prompt_keeps_its_teacher_and_corrections_are_taught_by_their_labels(tiny_base, tiny_train_file,
                                                                                         tmp_path):
    from router.dataset import load_examples
    from tests.test_tuning_methods import _tune as tune_method
    from tuning.train import train

    lora, _ = tune_method(tiny_base, tiny_train_file, tmp_path, "lora")
    student, _ = _tune(tiny_base, tiny_train_file, tmp_path / "student", epochs=1, teacher=str(lora),
                       teacher_weight=0.3)
    got = job_parameters({}, student)
    assert got["teacher"] == str(lora) and got["teacher_weight"] == 0.3 and got["init_prompt"] == str(student)
    shutil.rmtree(lora)
    assert "teacher" not in job_parameters({}, student), "its teacher is gone: the job continues without one"
    assert lost_recipe(student, job_parameters({}, student), []) == [
        f"its recorded teacher {lora.name} was not found, so it does not distil"], "and says so"

    lora, _ = tune_method(tiny_base, tiny_train_file, tmp_path, "lora")
    examples = load_examples(tiny_train_file)
    corrected = {examples[0].input, examples[3].input}
    config = _config(teacher=str(lora), epochs=1, init_prompt=str(student))
    objective = train(tiny_base, examples, config, label_only=corrected).trained
    by_text = {tiny_base.tokenizer.decode(item.encoded.prompt): item for item in objective.train_items}
    assert sum(any(c in text for c in corrected) for text in by_text) == 2 and len(by_text) == len(examples)
    for text, item in by_text.items():
        soft = [d.soft for d in item.decisions]
        if any(c in text for c in corrected):
            assert soft == [None] * len(soft), f"a correction is taught by its label alone: {text!r}"
        else:
            assert all(s is not None for s in soft), f"the rest learn from the teacher too: {text!r}"


def test_a_job_trains_on_the_continued_prompts_more_data_except_what_a_correction_relabels(late, tiny_base,
                                                                                           tiny_train_file, tmp_path):
    from router.dataset import file_sha256

    extra = [("The speaker in the ad had a remote, mine came without one.", "Marketing, Planning"),
             ("Nobody answered my chat for an hour.", "Service"),
             ("The app froze twice while I was paying for my order.", "Development")]
    more = write_jsonl(tmp_path / "more.jsonl", extra)  # beside the prompt, recorded by its name as outside the project
    meta = json.loads((late / "triage.json").read_text())
    meta["training_data"]["more"] = [{"path": "more.jsonl", "sha256": file_sha256(more), "n": 3}]
    (late / "triage.json").write_text(json.dumps(meta))
    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, tuned_model=late,
                        dev_file=write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4]))
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        for text, _ in extra[:2]:  # corrections relabel two of them, one trained on and one held out
            correct(s, text, ["Packaging", "Warehouse"])
        for text in ("The drawer handle came off on day one.",
                     "My order arrived with the bottle leaking all over the box.",
                     "The blender jar cracked in the first week."):
            correct(s, text, ["Development"])
        job = jobs.create_job(s, {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}, who="boss", active=late)
    assert job.options["more_data"] == [str(more)] and "more-data files" in job.options["start"]
    assert "missing or changed" not in job.options["start"]
    done = run_job(settings, job.id, base=tiny_base, engine=engine)
    assert done.state == "succeeded", done.error
    recorded = json.loads((Path(done.result["artifact_path"]) / "triage.json").read_text())["training_data"]["more"]
    held_out = json.loads((Path(done.result["artifact_path"]) / "holdout.jsonl").read_text().splitlines()[0])["input"]
    assert held_out in (extra[0][0], extra[1][0]), f"one correction of a more-data complaint is held out: {held_out}"
    assert [(m["path"], m["n"]) for m in recorded] == [("more.jsonl", 1)], "both relabeled complaints are left out"
    assert done.result["more_data"] == {str(more): 1}
    more.write_text(more.read_text() + json.dumps({"input": "changed since", "output": "L3"}) + "\n")
    with Session(engine, expire_on_commit=False) as s:
        changed = jobs.create_job(s, {}, who="boss", active=late)
    assert "more_data" not in changed.options, "a changed file is not used"
    assert "1 of its 1 more-data files are missing or changed" in changed.options["start"], "and the job says so"
    engine.dispose()


def test_the_passes_before_the_first_step_show_as_such_and_stay_out_of_the_loss_curve(tmp_path):
    from router.application.retraining import stage_line
    from tuning.jobs.progress import ProgressFile, read_progress
    from tuning.train import Progress

    progress = ProgressFile(tmp_path / "progress.json", min_interval=0.0)
    progress.on_train(Progress(0, 2, 640, 6307, 0.0, 0.0, 10.0, 80.0, stage="teacher"))
    shown = read_progress(tmp_path / "progress.json")
    assert stage_line(shown) == "the teacher reads each example once 640/6307 · ETA 80s"
    assert shown["loss_curve"] == [], "no loss before the first step"
    progress.on_train(Progress(1, 2, 1, 262, 0.25, 0.01, 20.0, 300.0))
    shown = read_progress(tmp_path / "progress.json")
    assert stage_line(shown) is None and shown["loss_curve"] == [[1, 0.25]]


def test_gate_files_are_evaluated_and_gated_and_a_missing_one_fails_the_job(late, tiny_base, tiny_train_file,
                                                                            tmp_path):
    other = write_jsonl(tmp_path / "other_writers.jsonl", TINY_TRAIN[4:8])
    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, tuned_model=late,
                        dev_file=write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4]),
                        gate_files=f"{other}, {tmp_path / 'gone.jsonl'}")
    engine = migrated(settings)
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}, who="boss", active=late)
    failed = run_job(settings, job.id, base=tiny_base, engine=engine)
    assert failed.state == "failed" and f"TRIAGE_GATE_FILES: {tmp_path / 'gone.jsonl'} does not exist" in failed.error
    settings = settings.model_copy(update={"gate_files": str(other)})
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}, who="boss", active=late)
    done = run_job(settings, job.id, base=tiny_base, engine=engine)
    assert done.state == "succeeded", done.error
    judged = done.result["gate"]["sets"]["gate:other_writers"]
    assert judged["n"] == 4 and judged["gated"] is True and judged["active"] is not None
    engine.dispose()


def test_a_job_continues_what_was_active_at_creation_and_is_gated_against_what_is_active_when_it_runs(
        late, tiny_base, tiny_train_file, tmp_path):
    from router import store
    from tuning.jobs.start_point import active_change_note

    settings = Settings(data_dir=tmp_path / "d", shots_file=tiny_train_file, tuned_model=late,
                        dev_file=write_jsonl(tmp_path / "dev.jsonl", TINY_TRAIN[:4]))
    engine = migrated(settings)
    other, _ = _tune(tiny_base, tiny_train_file, tmp_path / "tiny-late-other", epochs=1, seed=1)
    with Session(engine, expire_on_commit=False) as s:
        job = jobs.create_job(s, {"epochs": 1, "batch_size": 4, "val_fraction": 0.0}, who="boss", active=late)
        row = store.register_model_version(s, other)  # a supervisor promotes another version before the job runs
        store.promote(s, row.version, who="boss")
    done = run_job(settings, job.id, base=tiny_base, engine=engine)
    assert done.state == "succeeded", done.error
    assert done.result["continued"] == str(late) and done.result["active_changed"] is True
    assert Path(done.result["compared_with"]).resolve() == other.resolve()
    assert done.result["gate"]["active_version"] == row.version, "gated against what a promotion would replace"
    note = active_change_note(done.result)
    assert note and str(late) in note and "active when it ran" in note
    assert active_change_note({**done.result, "active_changed": False}) is None
    engine.dispose()
