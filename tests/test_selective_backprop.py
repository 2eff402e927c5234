"""Selective backprop (`--selective-backprop`): after the first epoch a late-prompt tune trains on a share of its
examples, mostly those with the highest loss when last trained on; each example's loss is measured above what its
target allows."""

from __future__ import annotations

import math
import random

import pytest
import torch

from tests.test_late_prompt import _config, _deep_tiny, cached_tiny_prompt


class Example:
    """A stand-in training item: selection only reads its identity."""

    def __init__(self, n: int):
        self.n = n


def test_later_epochs_take_the_share_mostly_the_worst_learned_and_every_example_keeps_a_chance():
    from tuning.selective_backprop import epoch_examples, epoch_sizes

    assert epoch_sizes(100, 4, 0.25) == [100, 25, 25, 25]
    assert epoch_sizes(100, 3, 1.0) == [100, 100, 100]
    assert epoch_sizes(3, 2, 0.05) == [3, 1], "never an empty epoch"
    items = [Example(n) for n in range(100)]
    losses = {id(item): (2.0 + item.n if item.n % 2 else 0.01 * item.n) for item in items}  # odd: still wrong
    rng = random.Random(0)
    picked = epoch_examples(items, losses, 40, rng)
    assert len(picked) == 40 and len({id(i) for i in picked}) == 40
    assert [i.n for i in picked] == sorted(i.n for i in picked), "kept in their original order"
    assert sum(i.n % 2 for i in picked) >= 26, "mostly the examples with high loss (a uniform draw: ~20)"
    seen = {id(i) for _ in range(100) for i in epoch_examples(items, losses, 40, rng)}
    assert len(seen) == 100, "a well-learned example is still drawn now and then"
    unseen = Example(100)
    draws = [epoch_examples(items + [unseen], losses, 20, rng) for _ in range(200)]
    assert sum(unseen in d for d in draws) > 5 * sum(items[0] in d for d in draws), \
        "an example never trained on counts as the worst, far above a well-learned one"
    assert epoch_examples(items, losses, 100, rng) == items


def test_an_examples_loss_is_measured_above_what_its_target_allows(tokenizer, tiny_train_file):
    """With hard targets the reported losses average to the batch's loss; with the model's own probabilities as a
    soft target, each example is reported at 0 (nothing left to learn) while the loss is their entropy."""
    from contextlib import nullcontext

    from tuning.decisions import decision_logits
    from tuning.late_objective import late_prompt_loss
    from tuning.layer_cache import decision_reads
    from tuning.teacher import with_teacher

    base, parts, prompt, cached = cached_tiny_prompt(tokenizer, tiny_train_file, first_layer=1)
    reported = []
    with torch.no_grad():
        loss = late_prompt_loss(parts, prompt, cached, "decisions", nullcontext(), report=reported.extend)
    terms = [len(item.decisions) for item in cached]
    assert len(reported) == len(cached) and min(reported) > 0
    assert sum(r * t for r, t in zip(reported, terms)) / sum(terms) == pytest.approx(float(loss), rel=1e-5)

    from tuning.late_objective import upper_hidden

    with torch.no_grad():
        hidden = upper_hidden(parts, prompt, cached, nullcontext())
        rows, positions, decisions = decision_reads(cached)
        logits, tokens = decision_logits(hidden, rows, positions, decisions, parts.head.weight)
    probabilities = torch.softmax(logits, -1)
    own, k = [], 0
    for item in cached:
        own.append([tuple(float(probabilities[k + j, tokens.index(t)]) for t in d.allowed)
                    for j, d in enumerate(item.decisions)])
        k += len(item.decisions)
    taught = with_teacher(cached, own, 1.0)
    reported.clear()
    with torch.no_grad():
        entropy = late_prompt_loss(parts, prompt, taught, "decisions", nullcontext(), report=reported.extend)
    assert float(entropy) > 0.05
    assert max(abs(r) for r in reported) < 1e-4


def test_a_tune_trains_later_epochs_on_the_share_and_learns(tokenizer, tiny_train_file):
    from router.dataset import load_examples
    from tuning.train import evaluate_loss, train

    examples = load_examples(tiny_train_file)
    base = _deep_tiny(tokenizer)
    result = train(base, examples, _config(prompt_layer=2, epochs=4, selective_backprop=0.5))
    n = len(examples)
    assert len(result.step_losses) == math.ceil(n / 4) + 3 * math.ceil(round(n / 2) / 4)
    objective = result.trained
    assert set(objective.example_losses) == {id(item) for item in objective.train_items}
    assert evaluate_loss(objective, objective.train_items) < result.epoch_losses[0], "it learned"

    full = train(_deep_tiny(tokenizer), examples, _config(prompt_layer=2, epochs=2))
    assert len(full.step_losses) == 2 * math.ceil(n / 4) and full.trained.example_losses == {}, \
        "by default every epoch takes every example, and nothing is recorded"


def test_out_of_range_or_other_methods_are_refused_with_the_range():
    from pydantic import ValidationError

    from tuning.config import TuningConfig, describe_error

    with pytest.raises(ValidationError) as low:
        TuningConfig(method="late-prompt", selective_backprop=0.01)
    assert "selective_backprop" in describe_error(low.value) and "0.05 to 1.0" in describe_error(low.value)
    with pytest.raises(ValidationError, match="only a late-prompt tune"):
        TuningConfig(method="lora", selective_backprop=0.5)
