"""What one training step computes, per method: a PEFT model's LM loss, or a late prompt's decision loss.

The train loop (`tuning.train`) only sees `parameters()`, `backward(items, scale)` (a late prompt splits it across
the cores: `tuning.shards`), `loss(items)`, `snapshot()`/`restore()` and `save(directory)`; each objective owns its
model and its prepared examples.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Collection, Sequence

import torch

from router.codec import LabelCodec
from router.dataset import Example
from router.devices import device_of
from router.departments import INSTRUCTION
from router.modelio import BaseModel
from tuning.batches import Encoded, answer_loss, causal_batch, keeps_logits_subset, seq2seq_batch, virtual_tokens
from tuning.config import TuningConfig
from tuning.shards import ShardedBackward, plain_backward


def autocast_for(config: TuningConfig, device: torch.device | str = "cpu"):
    """bf16 autocast (the `bf16` tuning parameter) on the device the model trains on, the same on CPU and GPU."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16) if config.bf16 else nullcontext()


def _on(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device) for name, tensor in batch.items()}


class PeftObjective:
    """PEFT prompt tuning, prefix tuning or LoRA: the causal (or seq2seq) LM loss on the answer tokens."""

    def __init__(self, base: BaseModel, config: TuningConfig, train_items: Sequence[Encoded], val_items: Sequence[Encoded]):
        from tuning.peft_setup import build_peft_model

        self.base, self.config = base, config
        self.model = build_peft_model(base, config)
        self.train_items, self.val_items = list(train_items), list(val_items)
        self.pad_id = base.tokenizer.pad_token_id
        self.device = device_of(base.model)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def loss(self, items: Sequence[Encoded]) -> torch.Tensor:
        autocast = autocast_for(self.config, self.device)
        if self.base.is_seq2seq:
            with autocast:
                return self.model(**_on(seq2seq_batch(items, self.pad_id), self.device)).loss
        batch = _on(causal_batch(items, self.pad_id), self.device)
        if not keeps_logits_subset(self.model):
            with autocast:
                return self.model(**batch).loss
        return answer_loss(self.model, batch, virtual_tokens(self.model), autocast)

    def backward(self, items: Sequence[Encoded], scale: float = 1.0) -> float:
        """Add scale x the batch's gradients to `.grad`; the batch's loss."""
        return plain_backward(self.loss(items), scale)

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def validation_exact_set(self) -> float | None:
        return None  # PEFT methods pick their epoch on the validation loss alone

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def restore(self, state: dict[str, torch.Tensor]) -> None:
        for name, p in self.model.named_parameters():
            if name in state:
                p.copy_(state[name])

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory))


class LatePromptObjective:
    """Late deep prompt (`tuning.late_prompt`): layers below K run once per example, steps run the rest."""

    def __init__(self, base: BaseModel, config: TuningConfig, train_set: Sequence[Example], train_items: Sequence[Encoded],
                 val_set: Sequence[Example], val_items: Sequence[Encoded],
                 on_cache: Callable[[int, int, float], None] | None = None, val_contexts: Sequence[str] | None = None,
                 label_only: Collection[str] = (), teacher_inputs: Sequence[Encoded] | None = None):
        from tuning.late_prompt import DecoderParts, LatePrompt, eager_attention, init_ids, text_keys_values
        from tuning.late_objective import loss_terms
        from tuning.layer_cache import CachedExample, cache_examples

        if base.is_seq2seq:
            raise ValueError("--method late-prompt is for decoder-only models; use --method prompt for seq2seq")
        self.base, self.config = base, config
        self.device = device_of(base.model)
        self.parts = DecoderParts.of(base.model)
        if config.prompt_layer >= len(self.parts.layers):
            raise ValueError(f"prompt_layer {config.prompt_layer} is outside 0 to {len(self.parts.layers) - 1} "
                             f"for this model ({len(self.parts.layers)} decoder layers)")
        self.init_text = config.init_text or INSTRUCTION
        self.init_ids = init_ids(base.tokenizer, self.init_text, config.num_virtual_tokens)
        start = None
        if config.init_prompt is not None:  # continue from a tuned late prompt: its text below K, its values above
            from tuning.late_prompt import read_start

            start = read_start(base, config, Path(config.init_prompt))
            self.init_text, self.init_ids = start.init_text, start.init_ids
        self.prompt = LatePrompt(text_keys_values(base.model, self.init_ids), config.prompt_layer,
                                 random_init=config.init == "random", seed=config.seed)
        if start is not None:
            self.prompt.load(start.keys, start.values)
        codec = LabelCodec.for_tokenizer(base.tokenizer)
        dtype = torch.bfloat16 if config.bf16 else torch.float32
        pad = base.tokenizer.pad_token_id
        autocast = autocast_for(config, self.device)
        every = list(train_items) + list(val_items)
        labels = [ex.departments for ex in list(train_set) + list(val_set)]
        with eager_attention(base.model):  # also ~1.1x faster than the fused kernel for these forwards
            cached = cache_examples(self.parts, self.prompt, every, codec, labels, pad, autocast, dtype,
                                    on_progress=on_cache)
        self.train_items, self.val_items = cached[: len(train_items)], cached[len(train_items) :]
        if config.teacher is not None:  # distillation: the teacher's decisions join the training targets
            from tuning.teacher import distillation_targets, with_teacher

            report = (lambda done, total, elapsed: on_cache(done, total, elapsed, "teacher")) if on_cache else None
            reads = self.train_items  # what the teacher reads: each example as trained, or without its context
            if teacher_inputs is not None:  # same answer, so the same decisions, read after the shorter prompt
                reads = [CachedExample(encoded, item.decisions, item.states)
                         for encoded, item in zip(teacher_inputs, self.train_items)]
            probabilities = distillation_targets(base, config.teachers, reads, list(train_set), pad, autocast, report)
            taught = [ex.input not in label_only for ex in train_set]  # e.g. supervisors' corrections: label alone
            self.train_items = with_teacher(self.train_items, probabilities, config.teacher_weight, taught)
        self.upper = upper_layers(base.model, self.parts, config.prompt_layer, dtype)
        self.example_losses: dict[int, float] = {}  # id(training item) -> its loss when last trained on
        self.val_set = list(val_set)
        self.val_contexts = list(val_contexts) if val_contexts else None  # routed with them, as serving will
        # a step's batch split across the CPU's cores (tuning.shards); one shard on a GPU
        shards = torch.get_num_threads() if torch.device(self.device).type == "cpu" else 1
        self.sharded = ShardedBackward(self.loss, lambda item: loss_terms(item, config.prompt_loss), shards)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.prompt.parameters())

    def loss(self, items) -> torch.Tensor:
        from tuning.late_objective import late_prompt_loss

        dropout = self.config.prompt_dropout if self.prompt.training else 0.0
        report = None
        if self.prompt.training and self.config.selective_backprop < 1:  # each example's loss, for the next epochs
            def report(losses: list[float]) -> None:
                self.example_losses.update(zip(map(id, items), losses))
        return late_prompt_loss(self.parts, self.prompt, items, self.config.prompt_loss,
                                autocast_for(self.config, self.device), dropout, self.upper, report)

    def backward(self, items, scale: float = 1.0) -> float:
        """Add scale x the batch's gradients to `.grad` (one shard per core); the batch's loss."""
        from tuning.late_prompt import eager_attention

        with eager_attention(self.base.model):  # set here, in the loop's thread, not in each shard's
            return self.sharded.run(items, scale)

    def train(self, mode: bool = True) -> None:
        self.prompt.train(mode)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.prompt.named_parameters()}

    @torch.no_grad()
    def restore(self, state: dict[str, torch.Tensor]) -> None:
        for name, p in self.prompt.named_parameters():
            p.copy_(state[name])

    @torch.no_grad()
    def validation_exact_set(self) -> float | None:
        """Exact-set accuracy on the validation split, routed as serving routes (constrained decoding)."""
        if not self.val_set:
            return None
        from router.artifact import TunedModel
        from router.backends import PrefixCache
        from router.engine import Engine

        layers = self.prompt.all_layers()
        prefix = PrefixCache([(k.detach().clone(), v.detach().clone()) for k, v in
                              (layers[i] for i in range(self.prompt.num_layers))], self.prompt.length)
        current = TunedModel(Path("(training)"), "late-prompt", {"version": "training"}, None, prefix)
        routed = Engine(self.base).route_many([ex.input for ex in self.val_set], "tuned", tuned=current,
                                              contexts=self.val_contexts)
        right = sum(list(r.departments) == list(ex.departments) for r, ex in zip(routed, self.val_set))
        return right / len(self.val_set)

    def save(self, directory: Path) -> None:
        from router.soft_prompt import STORED_DTYPE, save_late_prompt

        with torch.no_grad():  # the prompt takes the stored precision, so what was trained is what is served
            for p in self.prompt.parameters():
                p.copy_(p.to(STORED_DTYPE).to(p.dtype))
        save_late_prompt(directory, self.prompt.keys.detach(), self.prompt.values.detach(), self.config.prompt_layer,
                         self.init_ids, self.init_text)


def upper_layers(model, parts, first: int, dtype: torch.dtype):
    """A late prompt's training layers as plain arithmetic (`tuning.fast_layers`, ~1.25x per step) where the model
    is a Llama on the CPU, else None (transformers' own layers)."""
    from tuning.fast_layers import UpperLayers, unsupported

    if unsupported(model) is not None or device_of(model).type != "cpu":
        return None
    return UpperLayers(model, parts.layers, first, len(parts.layers), dtype)


def build_objective(base: BaseModel, config: TuningConfig, train_set, train_items, val_set, val_items, on_cache=None,
                    val_contexts=None, label_only: Collection[str] = (), teacher_inputs=None):
    if config.method == "late-prompt":
        return LatePromptObjective(base, config, train_set, train_items, val_set, val_items, on_cache, val_contexts,
                                   label_only, teacher_inputs)
    return PeftObjective(base, config, train_items, val_items)


__all__ = ["build_objective", "PeftObjective", "LatePromptObjective", "autocast_for"]
