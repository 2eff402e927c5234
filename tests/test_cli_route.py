"""`triage route` and `triage tune` as a user runs them (tiny model through TRIAGE_* settings)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from router.cli import cli
from router.departments import DEPARTMENTS


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_route_prints_departments(tiny_env):
    result = invoke("route", "The box was crushed and my lamp is dented")
    assert result.exit_code == 0
    names = result.stdout.strip().split(", ")
    assert names and set(names) <= set(DEPARTMENTS)


def test_route_json_has_the_documented_keys(tiny_env):
    result = invoke("route", "--json", "--strategy", "multi-shot", "--shots", "2", "agent was rude")
    data = json.loads(result.stdout)
    assert {"departments", "confidence", "strategy", "input_tokens", "generated_tokens", "latency_ms"} <= set(data)
    assert data["strategy"] == "multi-shot" and set(data["confidence"]) == set(DEPARTMENTS)


def test_route_compare_shows_every_strategy(tiny_env):
    result = invoke("route", "--compare", "my fridge died")
    for strategy in ("zero-shot", "multi-shot", "tuned"):
        assert strategy in result.output
    assert "in tok" in result.output and "latency" in result.output


def test_route_reads_stdin_and_refuses_empty_text(tiny_env):
    assert invoke("route", "-", input="my order is missing two chairs").exit_code == 0
    bad = CliRunner().invoke(cli, ["route", "   "])
    assert bad.exit_code == 1 and "text is empty" in bad.output


def test_soft_prompt_for_another_base_model_is_refused(tiny_env, monkeypatch, tiny_artifact):
    monkeypatch.setenv("TRIAGE_TUNED_MODEL", str(tiny_artifact))  # tuned on the in-memory tiny model, not this one
    result = CliRunner().invoke(cli, ["route", "hello"])
    assert result.exit_code == 1
    assert "was tuned on base model 'tiny-llama'" in result.output and "retune it" in result.output


def test_tune_refuses_out_of_range_parameters_naming_the_range(tiny_env, tiny_train_file, tmp_path):
    for method, rate, allowed in [("prefix", "0.9", "0.01 to 0.5 for prefix"), ("lora", "0.3", "1e-05 to 0.01 for lora")]:
        result = CliRunner().invoke(cli, ["tune", "--data", str(tiny_train_file), "--out", str(tmp_path / "m"),
                                          "--method", method, "--learning-rate", rate])
        assert result.exit_code == 2
        assert f"learning_rate {rate} is outside the range {allowed}" in result.output
    epochs = CliRunner().invoke(cli, ["tune", "--data", str(tiny_train_file), "--out", str(tmp_path / "m"), "--epochs", "60"])
    assert epochs.exit_code == 2 and "epochs" in epochs.output and "1 to 50" in epochs.output
    assert not (tmp_path / "m").exists()


def test_tune_writes_a_loadable_artifact_with_loss_curve(tiny_env, tiny_train_file, tmp_path):
    out = tmp_path / "m"
    result = invoke("tune", "--data", str(tiny_train_file), "--out", str(out), "--method", "prompt", "--epochs", "2",
                    "--num-virtual-tokens", "4", "--val-fraction", "0", "--learning-rate", "0.3")
    assert result.exit_code == 0, result.output
    assert "epoch 2/2 done" in result.output
    meta = json.loads((out / "triage.json").read_text())
    assert len(meta["loss_curve"]["train"]) == 2 and meta["parameters"]["learning_rate"] == 0.3
    assert (out / "loss.png").stat().st_size > 1000
    routed = invoke("route", "--model", str(out), "--json", "dented lamp")
    assert json.loads(routed.stdout)["model_version"] == "m"
