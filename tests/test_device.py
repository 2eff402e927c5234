"""TRIAGE_DEVICE: which device auto/cpu/cuda resolve to, the error when a GPU is missing, and that serving and
tuning feed every tensor to the device their model is on.

There is no GPU here. `torch.cuda.is_available` (torch's answer, outside the product) is mocked to resolve the
setting both ways. That serving and tuning follow the model's device is checked on torch's "meta" device: a
model there refuses any input made on the CPU ("Tensor on device meta is not on the expected device cpu"),
which is what a CUDA model does with an input left on the CPU.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError

from router.backends import CausalStepper, extend_prefix, text_prefix_cache
from router.cli import cli
from router.codec import LabelCodec
from router.devices import DeviceError, resolve_device
from router.modelio import ModelLoadError, load_base_model
from router.settings import Settings
from tests.conftest import make_tiny_base


@pytest.fixture
def gpu(monkeypatch):
    def set_available(available: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)

    return set_available


def test_auto_is_cuda_when_torch_sees_a_gpu_else_cpu(gpu):
    gpu(True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto", "int8") == torch.device("cpu")  # dynamic int8 layers run on a CPU only
    gpu(False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_is_a_clear_error_naming_the_setting(gpu):
    gpu(False)
    with pytest.raises(DeviceError, match=r"TRIAGE_DEVICE=cuda, but .*set TRIAGE_DEVICE=cpu"):
        resolve_device("cuda")
    gpu(True)
    with pytest.raises(DeviceError, match="TRIAGE_DEVICE=cuda, but TRIAGE_PRECISION=int8"):
        resolve_device("cuda", "int8")


def test_the_setting_is_typed_from_the_environment(monkeypatch):
    assert Settings().device == "auto"
    monkeypatch.setenv("TRIAGE_DEVICE", "cpu")
    assert Settings().device == "cpu"
    monkeypatch.setenv("TRIAGE_DEVICE", "gpu")
    with pytest.raises(ValidationError, match="device"):
        Settings()


def test_cuda_without_a_gpu_stops_routing_and_tuning_before_any_work(gpu, tiny_env, tiny_train_file, tmp_path,
                                                                      monkeypatch):
    gpu(False)
    monkeypatch.setenv("TRIAGE_DEVICE", "cuda")
    routed = CliRunner().invoke(cli, ["route", "The kettle leaks."])
    assert routed.exit_code == 1 and "TRIAGE_DEVICE=cuda, but" in routed.stderr
    tuned = CliRunner().invoke(cli, ["tune", "--data", str(tiny_train_file), "--out", str(tmp_path / "m"), "--epochs", "1"])
    assert tuned.exit_code == 1 and "TRIAGE_DEVICE=cuda, but" in tuned.stderr
    assert not (tmp_path / "m").exists()
    with pytest.raises(ModelLoadError, match="TRIAGE_DEVICE=cuda"):
        load_base_model(Settings(base_model=str(tiny_env["TRIAGE_BASE_MODEL"]), device="cuda"))


def test_cpu_places_the_model_on_the_cpu_and_routes_as_the_default(tiny_env, gpu):
    gpu(False)
    base = load_base_model(Settings(base_model=tiny_env["TRIAGE_BASE_MODEL"], device="cpu"))
    assert {p.device for p in base.model.parameters()} == {torch.device("cpu")}
    complaints = ["The kettle leaks.", "Only 3 of the 4 chairs came.", "The agent hung up on me."]
    answers = {}
    for device in ("cpu", "auto"):
        result = CliRunner().invoke(cli, ["route", "--input", "-", "-q"], input="\n".join(complaints) + "\n",
                                    env={"TRIAGE_DEVICE": device}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        answers[device] = result.stdout
    assert answers["cpu"] == answers["auto"] and answers["cpu"].count("\n") == 3


def test_serving_feeds_every_tensor_to_the_models_device(tokenizer):
    base = make_tiny_base(tokenizer, seed=3)
    model = base.model.to("meta")
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix = extend_prefix(model, text_prefix_cache(model, ids("Route complaints.\n")), ids("Complaint:"))
    assert prefix.layers[0][0].device.type == "meta"
    stepper = CausalStepper(model, prefix, tokenizer.pad_token_id, allowed=LabelCodec.for_tokenizer(tokenizer).token_ids)
    started = stepper.start([ids("the kettle leaks"), ids("two of four chairs")], [ids(" Development"), []])
    assert [t.device.type for t in started] == ["meta", "meta"]
    stepper.keep_rows([1])
    assert stepper.feed({1: ids(" Warehouse,")})[1].device.type == "meta"


def test_late_prompt_tuning_feeds_every_tensor_to_the_models_device(tokenizer, tiny_train_file):
    from router.dataset import load_examples
    from router.prompting import tuned_prompt
    from tuning.batches import encode_examples
    from tuning.config import TuningConfig
    from tuning.objectives import build_objective

    base = make_tiny_base(tokenizer, seed=4)
    base = replace(base, model=base.model.to("meta"))
    examples = load_examples(tiny_train_file)
    items = encode_examples(examples, tokenizer, LabelCodec.for_tokenizer(tokenizer), tuned_prompt(False), 256)
    config = TuningConfig(method="late-prompt", epochs=1, num_virtual_tokens=4, learning_rate=0.05, val_fraction=0.0,
                          batch_size=4, prompt_layer=1, bf16=False, prompt_dropout=0.1)
    objective = build_objective(base, config, examples, items, [], [])
    loss = objective.loss(objective.train_items[:4])
    loss.backward()
    assert loss.device.type == "meta" and {p.grad.device.type for p in objective.parameters()} == {"meta"}


def test_bf16_tuning_autocasts_on_the_models_device_type():
    import warnings

    from tuning.config import TuningConfig
    from tuning.objectives import autocast_for

    config = TuningConfig(method="lora", bf16=True)
    assert autocast_for(config, torch.device("cpu")).device == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch without CUDA warns that it disables CUDA autocast
        assert autocast_for(config, torch.device("cuda")).device == "cuda"


def test_tuning_defaults_to_bf16_where_torch_sees_a_gpu_with_bf16(gpu, monkeypatch):
    from tuning.config import TuningConfig, cpu_has_bf16

    gpu(True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert TuningConfig(method="lora").bf16 is True
    assert TuningConfig(method="lora", bf16=False).bf16 is False
    gpu(False)
    assert TuningConfig(method="lora").bf16 is cpu_has_bf16()  # on a CPU: as before, by the CPU's bf16 support
