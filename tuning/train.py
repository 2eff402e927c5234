"""The prompt-tuning loop (nanoGPT style: short named helpers, one loop)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Sequence

import torch

from router.codec import LabelCodec
from router.dataset import Example
from router.modelio import BaseModel
from router.prompting import tuned_prompt
from tuning.batches import encode_examples, epoch_batches
from tuning.config import TuningConfig
from tuning.objectives import build_objective
from tuning.selective_backprop import epoch_examples, epoch_sizes

if TYPE_CHECKING:
    from rag.training_context import Built


@dataclass
class Progress:
    """One report from the loop: after every update, and at each epoch's end."""

    epoch: int
    epochs: int
    step: int
    steps_total: int
    loss: float
    lr: float
    elapsed_s: float
    eta_s: float
    epoch_end: bool = False
    val_loss: float | None = None
    val_exact: float | None = None  # exact-set accuracy on the validation split (late prompt)
    stage: str = "train"  # "cache": the frozen layers below a late prompt run once (step = examples done);
    # "teacher": a distillation teacher reads each training example once


@dataclass
class TrainResult:
    trained: object  # the objective: what was trained, and how it saves itself (`trained.save(directory)`)
    epoch_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    val_exact: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0  # of the loop alone
    cache_seconds: float = 0.0  # late prompt: running the frozen layers below it once
    n_train: int = 0
    n_val: int = 0
    validation_sha256: str = ""  # of the validation split's complaints, sorted: equal for runs validated on one split
    stopped_early: bool = False


def trained_sample(train_split: list[Example], config: TuningConfig) -> list[Example]:
    """The examples of the training split a tune trains on: all of them, or `train_examples` of them, seeded."""
    if not config.train_examples or config.train_examples >= len(train_split):
        return train_split
    chosen = sorted(random.Random(config.seed).sample(range(len(train_split)), config.train_examples))
    return [train_split[i] for i in chosen]


def split_fingerprint(examples: Sequence[Example]) -> str:
    """sha256 of a split's complaints in sorted order: two runs validated on one split share it."""
    if not examples:
        return ""
    return hashlib.sha256("\n".join(sorted(ex.input for ex in examples)).encode()).hexdigest()


class Cancelled(Exception):
    """The caller asked the loop to stop."""


def split_validation(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a stratified-by-label share of the training file for picking the best epoch."""
    if fraction <= 0 or len(examples) < 10:
        return list(examples), []
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.output, []).append(ex)
    train, val = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        k = int(round(len(group) * fraction)) if len(group) >= 4 else 0
        val += group[:k]
        train += group[k:]
    return train, val


def lr_at(update: int, total: int, config: TuningConfig) -> float:
    """Linear warmup then cosine decay to 10% of the peak."""
    warmup = max(1, int(total * config.warmup_fraction))
    if update < warmup:
        return config.learning_rate * (update + 1) / warmup
    progress = (update - warmup) / max(1, total - warmup)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate_loss(objective, items: Sequence) -> float:
    if not items:
        return float("nan")
    objective.train(False)
    total, count = 0.0, 0
    for start in range(0, len(items), 16):
        chunk = items[start : start + 16]
        total += float(objective.loss(chunk)) * len(chunk)
        count += len(chunk)
    objective.train(True)
    return total / count


def train(
    base: BaseModel,
    examples: Sequence[Example],
    config: TuningConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    context_for: Callable[[list[Example], list[Example], list[Example]], Built] | None = None,
    more: Sequence[Example] = (),
    label_only: Collection[str] = (),
) -> TrainResult:
    """context_for(examples trained on, validation split, training split) -> rag.training_context.Built: the
    retrieved context of each example trained on and validated on, put in front of the complaint as serving does,
    and the examples as trained (relabeled where a correction was simulated); precedents come from the training
    split. None: no context. `more`: examples added to the training split only (the
    validation split is drawn from `examples` alone, so it is the same with or without them). `label_only`: complaints
    whose targets are their labels alone even with a teacher (a retraining job's corrections)."""
    if config.context != "none" and context_for is None:
        raise ValueError(f"context {config.context!r}: this tune has no retrieval to build it (triage tune --context "
                         "builds it; retraining jobs and the console tune without context)")
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = base.tokenizer
    codec = LabelCodec.for_tokenizer(tokenizer)
    parts = tuned_prompt(base.is_seq2seq)
    pool, val_set = split_validation(examples, config.val_fraction, config.validation_seed)
    train_set = trained_sample(pool, config)
    train_set = train_set + list(more)  # with context, their precedents come from the training split too
    fingerprint = split_fingerprint(val_set)
    train_context, val_context, teacher_inputs = None, None, None
    if context_for:
        asked = train_set
        built = context_for(train_set, val_set, pool)
        train_context, val_context, train_set, val_set = built.train, built.val, built.train_set, built.val_set
        if config.teacher is not None:  # the teacher reads each example without context, as it was tuned
            teacher_inputs = encode_examples(train_set, tokenizer, codec, parts, config.max_input_tokens, None)
            # a simulated correction changed the target: the teacher, who knows the old rule, does not teach it
            label_only = set(label_only) | {new.input for old, new in zip(asked, train_set)
                                            if old.departments != new.departments}
    train_items = encode_examples(train_set, tokenizer, codec, parts, config.max_input_tokens, train_context)
    val_items = encode_examples(val_set, tokenizer, codec, parts, config.max_input_tokens, val_context)
    started = time.perf_counter()

    def cache_progress(done: int, total: int, elapsed: float, stage: str = "cache") -> None:
        if on_progress:
            on_progress(Progress(0, config.epochs, done, total, 0.0, 0.0, elapsed, elapsed / done * (total - done),
                                 stage=stage))

    objective = build_objective(base, config, train_set, train_items, val_set, val_items, cache_progress, val_context,
                                label_only, teacher_inputs)
    train_items, val_items = objective.train_items, objective.val_items
    params = objective.parameters()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    sizes = epoch_sizes(len(train_items), config.epochs, config.selective_backprop)  # all, or a share after epoch 1
    batches_per_epoch = [math.ceil(n / config.batch_size) for n in sizes]
    total_batches = sum(batches_per_epoch)
    total_updates = sum(math.ceil(b / config.accumulation_steps) for b in batches_per_epoch)
    result = TrainResult(objective, n_train=len(train_items), n_val=len(val_items),
                         validation_sha256=fingerprint)
    best_val, best_state, stale, update = (-1.0, float("-inf")), None, 0, 0
    objective.train(True)
    loop_started = time.perf_counter()  # ETAs from the loop's own pace (the cache above is done once)
    result.cache_seconds = loop_started - started
    for epoch in range(1, config.epochs + 1):
        epoch_loss, seen = 0.0, 0
        trained = epoch_examples(train_items, getattr(objective, "example_losses", {}), sizes[epoch - 1], rng)
        batches = epoch_batches(trained, config.batch_size, rng)
        for index, items in enumerate(batches):
            if should_stop and should_stop():
                raise Cancelled()
            loss = objective.backward(items, 1 / config.accumulation_steps)
            epoch_loss += loss * len(items)
            seen += len(items)
            result.step_losses.append(loss)
            if (index + 1) % config.accumulation_steps == 0 or index + 1 == len(batches):
                lr = lr_at(update, total_updates, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                update += 1
                if on_progress:
                    done = sum(batches_per_epoch[: epoch - 1]) + index + 1
                    eta = (time.perf_counter() - loop_started) / done * (total_batches - done)
                    on_progress(Progress(epoch, config.epochs, update, total_updates, loss, lr,
                                         time.perf_counter() - started, eta))
        result.epoch_losses.append(epoch_loss / max(1, seen))
        val_loss = evaluate_loss(objective, val_items)
        result.val_losses.append(val_loss)
        val_exact = objective.validation_exact_set()
        if val_exact is not None:
            result.val_exact.append(val_exact)
        if on_progress:
            done = sum(batches_per_epoch[:epoch])
            eta = (time.perf_counter() - loop_started) / done * (total_batches - done)
            on_progress(
                Progress(epoch, config.epochs, update, total_updates, result.epoch_losses[-1], 0.0,
                         time.perf_counter() - started, eta, epoch_end=True, val_loss=val_loss,
                         val_exact=val_exact)
            )
        # the best epoch: highest validation exact-set where it is measured (ties: lower loss), else lowest loss
        score = (val_exact if val_exact is not None else 0.0, -val_loss)
        if not val_items or score > best_val:
            best_val, stale, result.best_epoch = score, 0, epoch
            best_state = objective.snapshot()
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                result.stopped_early = True
                break
    if best_state is not None:
        objective.restore(best_state)
    objective.train(False)
    result.seconds = time.perf_counter() - started
    result.seconds_per_epoch = (result.seconds - result.cache_seconds) / max(1, len(result.epoch_losses))
    return result

