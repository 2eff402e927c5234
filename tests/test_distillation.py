"""A late prompt learning from a LoRA teacher (tuning.teacher) on tiny random-weight models: each decision's target is
the label mixed with the teacher's own softmax, the teacher never touches the shared base, bad teachers are refused."""

from __future__ import annotations

import hashlib
from contextlib import nullcontext

import pytest
import torch

from router.artifact import ArtifactError
from tests.conftest import make_tiny_base
from tests.test_late_prompt import _deep_tiny, _tune as tune_late_prompt
from tests.test_tuning_methods import _tune as tune_method


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode()), h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_a_soft_target_equal_to_the_label_is_the_plain_loss_and_a_mixed_one_is_its_cross_entropy(tokenizer):
    from tuning.decisions import Decision, decision_loss

    torch.manual_seed(0)
    head = torch.randn(50, 8)
    hidden = torch.randn(2, 5, 8)
    hard = [Decision(0, (3, 7, 9), 7), Decision(2, (3, 9), 9), Decision(1, (4, 7), 4)]
    rows, positions = [0, 0, 1], [1, 3, 2]
    plain = decision_loss(hidden, rows, positions, hard, head)
    as_soft = [Decision(d.offset, d.allowed, d.target, tuple(float(t == d.target) for t in d.allowed)) for d in hard]
    assert float(decision_loss(hidden, rows, positions, as_soft, head)) == pytest.approx(float(plain), abs=1e-6)

    mixed = [Decision(0, (3, 7, 9), 7, (0.1, 0.6, 0.3))] + hard[1:]
    logits = hidden[0, 1] @ head[[3, 7, 9]].T
    first = -(torch.tensor([0.1, 0.6, 0.3]) * torch.log_softmax(logits, -1)).sum()
    rest = [torch.nn.functional.cross_entropy((hidden[r, p] @ head[list(d.allowed)].T)[None],
                                              torch.tensor([d.allowed.index(d.target)]))
            for d, r, p in zip(hard[1:], rows[1:], positions[1:])]
    want = (first + sum(rest)) / 3
    assert float(decision_loss(hidden, rows, positions, mixed, head)) == pytest.approx(float(want), abs=1e-5)


def test_a_lora_teacher_gives_each_training_decision_its_own_softmax_and_the_base_is_untouched(tokenizer, tiny_train_file,
                                                                                                tmp_path):
    from router.artifact import merged_lora_model
    from router.dataset import load_examples
    from tuning.config import TuningConfig
    from tuning.layer_cache import input_ids
    from tuning.teacher import teacher_probabilities
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    teacher_dir, _ = tune_method(base, tiny_train_file, tmp_path, "lora")
    before = _digest(base.model)
    config = TuningConfig(method="late-prompt", epochs=2, num_virtual_tokens=4, learning_rate=0.3, val_fraction=0.0,
                          batch_size=4, prompt_layer=2, bf16=False, teacher=str(teacher_dir), teacher_weight=0.75)
    result = train(base, load_examples(tiny_train_file), config)
    assert _digest(base.model) == before, "the teacher is a copy: the shared base keeps every weight"
    assert result.epoch_losses[-1] < result.epoch_losses[0]

    items = result.trained.train_items
    teacher = merged_lora_model(base, teacher_dir)
    probabilities = teacher_probabilities(teacher, items, tokenizer.pad_token_id, nullcontext(), batch_size=3)
    for item, per_decision in zip(items, probabilities):
        ids = torch.tensor([input_ids(item.encoded)])
        logits = teacher(input_ids=ids).logits[0]  # the plain forward, one example alone
        first = len(item.encoded.prompt) - 1
        assert len(per_decision) == len(item.decisions) > 0
        for d, probs in zip(item.decisions, per_decision):
            want = torch.softmax(logits[first + d.offset, list(d.allowed)], -1)
            assert torch.allclose(torch.tensor(probs), want, atol=1e-5)
            label = torch.tensor([float(t == d.target) for t in d.allowed])
            assert torch.allclose(torch.tensor(d.soft), 0.25 * label + 0.75 * want, atol=1e-5)
            assert sum(d.soft) == pytest.approx(1.0, abs=1e-5)


def test_a_teacher_must_be_a_lora_adapter_on_this_base_and_only_a_late_prompt_learns_from_one(tokenizer, tiny_train_file,
                                                                                                tmp_path):
    from pydantic import ValidationError

    from tuning.config import TuningConfig
    from tuning.teacher import load_teacher

    base = _deep_tiny(tokenizer)
    lora, _ = tune_method(base, tiny_train_file, tmp_path, "lora")
    prompt, _ = tune_late_prompt(base, tiny_train_file, tmp_path / "late", prompt_layer=2, epochs=1)
    with pytest.raises(ArtifactError, match="a teacher must be a LoRA artifact"):
        load_teacher(base, prompt)
    with pytest.raises(ArtifactError, match="tuned on base model"):
        load_teacher(make_tiny_base(tokenizer, seed=9, name="another"), lora)
    with pytest.raises(ValidationError, match="only a late-prompt tune learns from a teacher"):
        TuningConfig(method="lora", teacher=str(lora))
    with pytest.raises(ValidationError, match="teacher_weight"):
        TuningConfig(method="late-prompt", teacher=str(lora), teacher_weight=1.5)


def test_triage_tune_with_a_teacher_and_more_data_records_both_and_keeps_the_validation_split(tiny_env, tmp_path):
    import json

    from click.testing import CliRunner

    from router.cli import cli

    train_file = tmp_path / "train.jsonl"  # four labels of four examples each: a stratified split holds one of each
    train_file.write_text("".join(json.dumps({"input": f"{text} ({n})", "output": label}) + "\n" for n in range(4)
                                  for text, label in (("my blender died", "Development"), ("rude agent", "Service"),
                                                      ("chairs missing from the box", "Warehouse, Packaging"),
                                                      ("the ad shows a model you do not sell", "Planning, Marketing"))))

    def tune(*args):
        return CliRunner().invoke(cli, ["tune", "--data", str(train_file), "--epochs", "1", "--batch-size", "4",
                                        "--fp32", "--val-fraction", "0.3", *args], catch_exceptions=False)

    lora = tmp_path / "teacher"
    assert tune("--out", str(lora), "--method", "lora", "--learning-rate", "0.005").exit_code == 0
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"input": f"the {thing} came without its manual", "output": "Packaging"}) + "\n"
                            for thing in ("kettle", "lamp", "drill", "stroller", "printer")))
    late = ["--method", "late-prompt", "--prompt-layer", "1", "--num-virtual-tokens", "4"]
    plain, student = tmp_path / "plain", tmp_path / "student"
    assert tune("--out", str(plain), *late).exit_code == 0
    result = tune("--out", str(student), *late, "--teacher", str(lora), "--teacher-weight", "0.3", "--more-data", str(more))
    assert result.exit_code == 0, result.output
    assert "+ 5 from" in result.output and "the teacher reads each training example once" in result.output
    without = json.loads((plain / "triage.json").read_text())["training_data"]
    meta = json.loads((student / "triage.json").read_text())
    data = meta["training_data"]
    assert data["n_validation"] == without["n_validation"] == 4, "the validation split comes from --data alone"
    assert data["n_train"] == without["n_train"] + 5
    assert data["more"][0]["n"] == 5 and data["more"][0]["path"] == "more.jsonl"
    assert meta["parameters"]["teacher"] == "teacher" and meta["parameters"]["teacher_weight"] == 0.3
    card = (student / "README.md").read_text()
    assert "distilled from the teacher `teacher`" in card and "more.jsonl" in card and str(tmp_path) not in card

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"input": "fine", "output": "Packaging"}) + "\n" + '{"input": "x", "output": "Sales"}\n')
    refused = CliRunner().invoke(cli, ["tune", "--data", str(train_file), "--out", str(tmp_path / "never"), *late,
                                       "--more-data", str(bad)])
    assert refused.exit_code != 0 and "bad.jsonl:2: field 'output': unknown department 'Sales'" in refused.output
    assert not (tmp_path / "never").exists()
