"""A retraining job continues the active late prompt (tuning.jobs.start_point) on the tiny model:
its parameters, the version it registers, the refusals, and the way out (start from scratch)."""

from __future__ import annotations

import json
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
from test_late_prompt import _tune
from test_retrain_helpers import correct, migrated, write_jsonl
from tuning.jobs import store as jobs
from tuning.jobs.start_point import CONTINUE_EPOCHS, CONTINUE_LEARNING_RATE, job_parameters
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
    assert 0 < continued < scratch / 2, f"the job moved on from the active prompt ({continued} vs {scratch} from scratch)"
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
        fresh = jobs.create_job(s, {"method": "prompt", "num_virtual_tokens": 4}, who="boss", active=late,
                                start_from="scratch")
        assert fresh.parameters["init_prompt"] is None and fresh.options["start"] == "a fresh prompt tune"
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
