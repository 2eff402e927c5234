"""--split-seed: runs with other seeds validate on one split, and the artifact says which split it validated on."""

import json

from click.testing import CliRunner

from router.cli import cli
from router.dataset import load_examples
from tuning.train import split_validation


def _train_file(tmp_path):
    path = tmp_path / "train.jsonl"  # four labels of five examples each: a stratified 0.4 split holds two of each
    path.write_text("".join(json.dumps({"input": f"{text} ({n})", "output": label}) + "\n" for n in range(5)
                            for text, label in (("my blender died", "Development"), ("rude agent", "Service"),
                                                ("chairs missing from the box", "Warehouse, Packaging"),
                                                ("the ad shows a model you do not sell", "Planning, Marketing"))))
    return path


def _validation_of(tmp_path, name, *args):
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["tune", "--data", str(_train_file(tmp_path)), "--out", str(out), "--epochs", "1",
                                      "--batch-size", "4", "--fp32", "--val-fraction", "0.4", "--method", "late-prompt",
                                      "--prompt-layer", "1", "--num-virtual-tokens", "4", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "triage.json").read_text())
    assert meta["training_data"]["n_validation"] == 8
    return meta["training_data"]["validation_sha256"], meta["parameters"]


def test_a_split_seed_keeps_the_validation_split_while_the_seed_changes(tiny_env, tmp_path):
    seed0, _ = _validation_of(tmp_path, "seed0")
    seed5, _ = _validation_of(tmp_path, "seed5", "--seed", "5")
    kept, parameters = _validation_of(tmp_path, "seed5-split0", "--seed", "5", "--split-seed", "0")
    assert seed5 != seed0, "without --split-seed the seed draws another validation split"
    assert kept == seed0, "--split-seed 0 validates on seed 0's split whatever --seed is"
    assert parameters["seed"] == 5 and parameters["split_seed"] == 0


def test_a_tune_warns_when_its_teacher_trained_on_its_validation_split(tiny_env, tmp_path):
    train_file = _train_file(tmp_path)

    def tune(out, *args):
        result = CliRunner().invoke(cli, ["tune", "--data", str(train_file), "--out", str(tmp_path / out), "--epochs",
                                          "1", "--batch-size", "4", "--fp32", "--val-fraction", "0.4", *args],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    # the teacher: batch order of seed 5, validation split of seed 0
    tune("teacher", "--method", "lora", "--learning-rate", "0.005", "--seed", "5", "--split-seed", "0")
    late = ["--method", "late-prompt", "--prompt-layer", "1", "--num-virtual-tokens", "4", "--teacher",
            str(tmp_path / "teacher")]
    examples = load_examples(train_file)
    teacher_val = {ex.input for ex in split_validation(examples, 0.4, 0)[1]}
    student_val = {ex.input for ex in split_validation(examples, 0.4, 5)[1]}
    overlap = len(student_val - teacher_val)
    assert overlap > 0
    warned = tune("student5", *late, "--seed", "5")
    assert f"trained on {overlap} of this tune's 8 validation complaints" in warned
    assert "--split-seed 0 with --val-fraction at most 0.4" in warned
    assert "warning" not in tune("student-split0", *late, "--seed", "7", "--split-seed", "0")
    assert "warning" not in tune("student-seed0", *late)  # seed 0 draws the teacher's split

    other = tmp_path / "other.jsonl"
    other.write_text(train_file.read_text().replace("rude agent", "the agent hung up on me"))

    def tune_other(out, *args):
        result = CliRunner().invoke(cli, ["tune", "--data", str(other), "--out", str(tmp_path / out), "--epochs", "1",
                                          "--batch-size", "4", "--fp32", "--val-fraction", "0.4", *late, *args])
        assert result.exit_code == 0, result.output
        return result.output

    # a teacher tuned on another file: that file (recorded by name, as it lay outside the checkout) is found beside
    # the teacher and read back, and this tune's validation complaints are looked up among those it trained on
    teacher_trained = {ex.input for ex in split_validation(examples, 0.4, 0)[0]}
    seen = sum(ex.input in teacher_trained for ex in split_validation(load_examples(other), 0.4, 5)[1])
    assert seen > 0
    assert f"trained on {seen} of this tune's 8 validation complaints (in its own training files)" in \
        tune_other("elsewhere-checked", "--seed", "5")
    train_file.rename(tmp_path / "moved.jsonl")  # gone: which complaints the teacher trained on is unknown
    warned = tune_other("elsewhere")
    assert "its training file train.jsonl is missing or has changed" in warned and "is not checked" in warned
