"""The prompt-tuning loop (nanoGPT style: short named helpers, one loop)."""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from router.codec import LabelCodec
from router.dataset import Example
from router.modelio import BaseModel
from router.prompting import tuned_prompt
from tuning.batches import Encoded, answer_loss, causal_batch, encode_examples, epoch_batches, keeps_logits_subset, seq2seq_batch, virtual_tokens
from tuning.config import TuningConfig
from tuning.peft_setup import build_peft_model


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


@dataclass
class TrainResult:
    peft_model: object
    epoch_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    n_train: int = 0
    n_val: int = 0
    stopped_early: bool = False


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


def _autocast(config: TuningConfig):
    return torch.autocast("cpu", dtype=torch.bfloat16) if config.bf16 else nullcontext()


def batch_loss(model, items: Sequence[Encoded], seq2seq: bool, pad_id: int, config: TuningConfig) -> torch.Tensor:
    if seq2seq:
        with _autocast(config):
            return model(**seq2seq_batch(items, pad_id)).loss
    batch = causal_batch(items, pad_id)
    if not keeps_logits_subset(model):
        with _autocast(config):
            return model(**batch).loss
    return answer_loss(model, batch, virtual_tokens(model), _autocast(config))


@torch.no_grad()
def evaluate_loss(model, items: Sequence[Encoded], seq2seq: bool, pad_id: int, config: TuningConfig) -> float:
    if not items:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(items), 16):
        chunk = items[start : start + 16]
        total += float(batch_loss(model, chunk, seq2seq, pad_id, config)) * len(chunk)
        count += len(chunk)
    model.train()
    return total / count


def train(
    base: BaseModel,
    examples: Sequence[Example],
    config: TuningConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = base.tokenizer
    codec = LabelCodec.for_tokenizer(tokenizer)
    parts = tuned_prompt(base.is_seq2seq)
    train_set, val_set = split_validation(examples, config.val_fraction, config.seed)
    train_items = encode_examples(train_set, tokenizer, codec, parts, config.max_input_tokens)
    val_items = encode_examples(val_set, tokenizer, codec, parts, config.max_input_tokens)
    pad_id = tokenizer.pad_token_id
    model = build_peft_model(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    batches_per_epoch = math.ceil(len(train_items) / config.batch_size)
    updates_per_epoch = math.ceil(batches_per_epoch / config.accumulation_steps)
    total_updates = updates_per_epoch * config.epochs
    result = TrainResult(model, n_train=len(train_items), n_val=len(val_items))
    best_val, best_state, stale, update = float("inf"), None, 0, 0
    started = time.perf_counter()
    model.train()
    for epoch in range(1, config.epochs + 1):
        epoch_loss, seen = 0.0, 0
        batches = epoch_batches(train_items, config.batch_size, rng)
        for index, items in enumerate(batches):
            if should_stop and should_stop():
                raise Cancelled()
            loss = batch_loss(model, items, base.is_seq2seq, pad_id, config)
            (loss / config.accumulation_steps).backward()
            epoch_loss += float(loss.detach()) * len(items)
            seen += len(items)
            result.step_losses.append(float(loss.detach()))
            if (index + 1) % config.accumulation_steps == 0 or index + 1 == len(batches):
                lr = lr_at(update, total_updates, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                update += 1
                if on_progress:
                    elapsed = time.perf_counter() - started
                    done = (epoch - 1) * len(batches) + index + 1
                    eta = elapsed / done * (config.epochs * len(batches) - done)
                    on_progress(Progress(epoch, config.epochs, update, total_updates, float(loss.detach()), lr, elapsed, eta))
        result.epoch_losses.append(epoch_loss / max(1, seen))
        val_loss = evaluate_loss(model, val_items, base.is_seq2seq, pad_id, config)
        result.val_losses.append(val_loss)
        if on_progress:
            elapsed = time.perf_counter() - started
            on_progress(
                Progress(epoch, config.epochs, update, total_updates, result.epoch_losses[-1], 0.0, elapsed,
                         elapsed / epoch * (config.epochs - epoch), epoch_end=True, val_loss=val_loss)
            )
        if not val_items or val_loss < best_val:
            best_val, stale, result.best_epoch = val_loss, 0, epoch
            best_state = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                result.stopped_early = True
                break
    if best_state is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in best_state:
                    p.copy_(best_state[name])
    model.eval()
    result.seconds = time.perf_counter() - started
    result.seconds_per_epoch = result.seconds / max(1, len(result.epoch_losses))
    return result

