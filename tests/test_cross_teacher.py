"""Out-of-fold distillation (`--cross-teacher`): two LoRA teachers tuned on different files; each training example
one of them trained on is taught by the other alone, since a teacher's probabilities on its own training examples
are little more than the label."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch

from router.artifact import ArtifactError
from tests.conftest import TINY_TRAIN
from tests.test_late_prompt import _deep_tiny


def test_each_example_is_taught_by_the_teachers_that_never_saw_it():
    from tuning.teacher import out_of_fold

    a = [[(0.9, 0.1)], [(0.8, 0.2)], [(0.6, 0.4)]]
    b = [[(0.3, 0.7)], [(0.2, 0.8)], [(0.4, 0.6)]]
    seen = [[True, False], [True, True], [False, False]]
    got = out_of_fold([a, b], seen)
    assert got[0] == [(0.3, 0.7)], "seen by the first teacher only: the second alone"
    assert got[1] == [pytest.approx((0.5, 0.5))] and got[2] == [pytest.approx((0.5, 0.5))], "else both, averaged"


def _write(path, rows):
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows))
    return path


def _lora_teacher(base, data, out, val_fraction=0.0):
    from router.dataset import load_examples
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    config = TuningConfig(method="lora", epochs=2, learning_rate=0.005, val_fraction=val_fraction, batch_size=4,
                          bf16=False)
    result = train(base, load_examples(data), config)
    return save_artifact(result, build_metadata(base, config, result, data, out.name), out)


def test_a_tune_with_two_teachers_gives_each_example_the_other_teachers_probabilities(tokenizer, tmp_path,
                                                                                       monkeypatch):
    from router.artifact import merged_lora_model
    from router.dataset import load_examples, normalize
    from tuning.config import TuningConfig
    from tuning.teacher import teacher_probabilities, trained_inputs
    from tuning.train import train

    monkeypatch.chdir(tmp_path)  # files outside the checkout are recorded by name and found from here
    first = _write(tmp_path / "first.jsonl", TINY_TRAIN[:6])
    second = _write(tmp_path / "second.jsonl", TINY_TRAIN[6:])
    base = _deep_tiny(tokenizer)
    teacher_a = _lora_teacher(base, first, tmp_path / "a")
    teacher_b = _lora_teacher(base, second, tmp_path / "b")
    assert trained_inputs(teacher_a) == {normalize(i) for i, _ in TINY_TRAIN[:6]}

    config = TuningConfig(method="late-prompt", epochs=1, num_virtual_tokens=4, learning_rate=0.3, val_fraction=0.0,
                          batch_size=4, prompt_layer=2, bf16=False, teacher=str(teacher_a),
                          cross_teacher=str(teacher_b), teacher_weight=1.0)
    result = train(base, load_examples(first), config, more=load_examples(second))
    items = result.trained.train_items
    assert len(items) == len(TINY_TRAIN)
    by_a = teacher_probabilities(merged_lora_model(base, teacher_a), items, tokenizer.pad_token_id, nullcontext())
    by_b = teacher_probabilities(merged_lora_model(base, teacher_b), items, tokenizer.pad_token_id, nullcontext())
    for n, item in enumerate(items):  # the first six came from the first file (teacher A's), the rest from B's
        want = by_b[n] if n < 6 else by_a[n]
        for d, probs in zip(item.decisions, want):
            assert torch.allclose(torch.tensor(d.soft), torch.tensor(probs), atol=1e-5)
    assert any(not torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-3)
               for n in range(len(items)) for a, b in zip(by_a[n], by_b[n])), "the two teachers differ"


def test_a_second_teacher_needs_a_first_and_a_teacher_whose_data_changed_is_refused(tokenizer, tmp_path, monkeypatch):
    from pydantic import ValidationError

    from tuning.config import TuningConfig
    from tuning.teacher import trained_inputs

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="a second teacher needs the first"):
        TuningConfig(method="late-prompt", cross_teacher=str(tmp_path))
    rows = [(f"{text} ({n})", label) for n in range(4) for text, label in TINY_TRAIN[:4]]  # two labels of eight
    data = _write(tmp_path / "first.jsonl", rows)
    teacher = _lora_teacher(_deep_tiny(tokenizer), data, tmp_path / "a", val_fraction=0.25)
    assert len(trained_inputs(teacher)) == 12, "the validation split it held out is not among what it trained on"
    _write(data, rows[:5])
    with pytest.raises(ArtifactError, match="first.jsonl is missing or has changed"):
        trained_inputs(teacher)


def test_a_teacher_tuned_on_another_file_is_checked_against_the_validation_split_by_its_complaints(tokenizer, tmp_path,
                                                                                                  monkeypatch):
    from router.dataset import load_examples
    from tuning.config import TuningConfig
    from tuning.teacher import teacher_split_warning

    monkeypatch.chdir(tmp_path)
    rows = [(f"{text} ({n})", label) for n in range(4) for text, label in TINY_TRAIN[:4]]
    data = _write(tmp_path / "data.jsonl", rows)
    base = _deep_tiny(tokenizer)
    overlapping = _lora_teacher(base, _write(tmp_path / "copy.jsonl", rows[1:]), tmp_path / "overlapping")
    disjoint = _lora_teacher(base, _write(tmp_path / "other.jsonl", TINY_TRAIN[4:]), tmp_path / "disjoint")
    config = TuningConfig(method="late-prompt", val_fraction=0.25, teacher=str(overlapping))
    examples = load_examples(data)
    warning = teacher_split_warning(overlapping, examples, data, config)
    assert warning and "of this tune's 4 validation complaints (in its own training files)" in warning
    assert teacher_split_warning(disjoint, examples, data, config) is None
    meta = json.loads((overlapping / "triage.json").read_text())
    meta["parameters"]["lora_rank"] = 10_000  # out of range for this version
    (overlapping / "triage.json").write_text(json.dumps(meta))
    unread = teacher_split_warning(overlapping, examples, data, config)
    assert "parameters this version cannot read" in unread and "is not checked" in unread
