"""Answer-only gradients (`tuning.answer_gradients`): the same loss, the exact gradient where no path is dropped,
a tune that learns, refusals that say why."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from tests.test_late_prompt import _config, _deep_tiny, cached_tiny_prompt


def _loss_and_grads(parts, prompt, cached, upper, answer_only, loss_name="decisions", dropout=0.0):
    from tuning.late_objective import late_prompt_loss

    torch.manual_seed(5)  # prompt dropout draws its hidden columns from the global generator
    loss = late_prompt_loss(parts, prompt, cached, loss_name, nullcontext(), dropout, upper, answer_only=answer_only)
    return float(loss.detach()), torch.autograd.grad(loss, [prompt.keys, prompt.values])


@pytest.mark.parametrize("loss_name,dropout", [("decisions", 0.0), ("lm", 0.0), ("decisions", 0.3)])
def test_the_loss_is_the_full_steps_and_the_last_layers_gradient_is_exact(tokenizer, tiny_train_file, loss_name,
                                                                         dropout):
    from tuning.objectives import upper_layers

    base, parts, prompt, cached = cached_tiny_prompt(tokenizer, tiny_train_file, first_layer=1)
    upper = upper_layers(base.model, parts, prompt.first_layer, torch.float32)
    full, full_grads = _loss_and_grads(parts, prompt, cached, upper, False, loss_name, dropout)
    answer, answer_grads = _loss_and_grads(parts, prompt, cached, upper, True, loss_name, dropout)
    assert answer == pytest.approx(full, rel=1e-5)
    for a, f in zip(answer_grads, full_grads):
        # the last layer's prompt reaches the loss only through what the answer reads from it: nothing dropped there
        assert torch.allclose(a[-1], f[-1], rtol=1e-4, atol=1e-7)
        # lower layers' prompts also shape the complaint's states the answer reads: those paths are dropped
        assert not torch.allclose(a[0], f[0], rtol=1e-3, atol=1e-6)
        assert float(a[0].abs().max()) > 0, "the answer still learns from the first prompted layer"


def test_a_window_over_the_whole_sequence_gives_the_full_gradient(tokenizer, tiny_train_file):
    from tuning.answer_gradients import answer_gradient_run
    from tuning.late_objective import _stack_states
    from tuning.late_prompt import layer_inputs
    from tuning.objectives import upper_layers

    base, parts, prompt, cached = cached_tiny_prompt(tokenizer, tiny_train_file, first_layer=1)
    upper = upper_layers(base.model, parts, prompt.first_layer, torch.float32)
    hidden = _stack_states(cached)
    _, (cos, sin), mask = layer_inputs(parts, hidden, prompt.length)
    reference = upper.run(hidden, prompt.learned(), cos, sin, mask)
    whole = answer_gradient_run(upper, hidden, prompt.learned(), cos, sin, mask, [0] * len(cached), hidden.shape[1])
    weights = torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
    expected = torch.autograd.grad((reference * weights).sum(), [prompt.keys, prompt.values])
    got = torch.autograd.grad((whole * weights).sum(), [prompt.keys, prompt.values])
    assert torch.allclose(whole, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_windows_cover_every_answer_position_and_fit_the_batch():
    from tuning.answer_gradients import answer_windows

    starts, width = answer_windows([10, 4, 7], [13, 12, 9], 13)
    assert width == 9  # the second row: positions 3..11
    for start, prompt, length in zip(starts, [10, 4, 7], [13, 12, 9]):
        assert start <= prompt - 1 and start + width >= length and start + width <= 13


def test_a_tune_with_answer_gradients_learns_and_bad_uses_are_refused(tokenizer, tiny_train_file):
    from pydantic import ValidationError

    from router.dataset import load_examples
    from tuning.config import TuningConfig, describe_method
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    config = _config(prompt_layer=2, epochs=4, answer_gradient_epochs=4)
    assert "gradients through the answer only in epochs 1-4" in describe_method(config)
    result = train(base, load_examples(tiny_train_file), config)
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    with pytest.raises(ValidationError, match="answer_gradient_epochs"):
        TuningConfig(method="lora", answer_gradient_epochs=1)
    with pytest.raises(ValidationError, match="more than epochs 3"):
        _config(answer_gradient_epochs=4)
    base.model.config.model_type = "qwen2"
    with pytest.raises(ValueError, match="Llama-architecture"):
        train(base, load_examples(tiny_train_file), config)


def test_the_first_n_epochs_learn_through_the_answer_and_the_rest_through_every_position(tokenizer, tiny_train_file,
                                                                                        monkeypatch):
    import tuning.answer_gradients as answer_gradients
    from router.dataset import load_examples
    from tuning.objectives import LatePromptObjective
    from tuning.train import train

    events = []
    real_run, real_start = answer_gradients.answer_gradient_run, LatePromptObjective.start_epoch

    def run(*args, **kwargs):
        events.append("answer step")
        return real_run(*args, **kwargs)

    def start_epoch(self, epoch):
        events.append(f"epoch {epoch}")
        real_start(self, epoch)

    monkeypatch.setattr(answer_gradients, "answer_gradient_run", run)
    monkeypatch.setattr(LatePromptObjective, "start_epoch", start_epoch)
    train(_deep_tiny(tokenizer), load_examples(tiny_train_file),
          _config(prompt_layer=2, epochs=3, answer_gradient_epochs=1, batch_size=4, val_fraction=0.3))
    first, second = events.index("epoch 1"), events.index("epoch 2")
    assert events.count("answer step") >= 2 and set(events[first + 1:second]) == {"answer step"}
    assert events[second:] == ["epoch 2", "epoch 3"], "later epochs (and validation) run every position"
