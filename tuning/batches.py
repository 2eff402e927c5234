"""Turning labeled examples into padded training batches for a causal or seq2seq model."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from router.codec import LabelCodec
from router.dataset import Example
from router.prompting import PromptParts

IGNORE = -100


@dataclass
class Encoded:
    prompt: list[int]
    answer: list[int]


def encode_examples(examples: Sequence[Example], tokenizer, codec: LabelCodec, parts: PromptParts, max_tokens: int,
                    contexts: Sequence[str] | None = None) -> list[Encoded]:
    """Prompt and answer token ids; `contexts` (retrieved text, one per example) go before each complaint as
    serving puts them (PromptParts.request)."""
    out = []
    for ex, context in zip(examples, contexts if contexts is not None else [""] * len(examples)):
        prompt = list(tokenizer(parts.request(ex.input, context), add_special_tokens=False)["input_ids"])
        if len(prompt) > max_tokens:  # keep the tail: it holds the answer cue
            prompt = prompt[-max_tokens:]
        out.append(Encoded(prompt, codec.answer_ids(ex.departments)))
    return out


def causal_batch(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+answer with loss on the answer tokens only."""
    rows = [i.prompt + i.answer for i in items]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, (item, row) in enumerate(zip(items, rows)):
        ids[n, : len(row)] = torch.tensor(row)
        mask[n, : len(row)] = 1
        labels[n, len(item.prompt) : len(row)] = torch.tensor(item.answer)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def seq2seq_batch(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(i.prompt) for i in items)
    answer_width = max(len(i.answer) for i in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full((len(items), answer_width), IGNORE, dtype=torch.long)
    for n, item in enumerate(items):
        ids[n, : len(item.prompt)] = torch.tensor(item.prompt)
        mask[n, : len(item.prompt)] = 1
        labels[n, : len(item.answer)] = torch.tensor(item.answer)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def epoch_batches(items: Sequence[Encoded], batch_size: int, rng: random.Random) -> list[list[Encoded]]:
    """Shuffled batches of similar length (less padding), in shuffled order."""
    order = list(items)
    rng.shuffle(order)
    chunk = batch_size * 8
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: len(i.prompt))
        batches += [block[k : k + batch_size] for k in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches


def keeps_logits_subset(model) -> bool:
    """Whether the causal LM under `model` (PEFT-wrapped or not) takes `logits_to_keep` with positions."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def virtual_tokens(model) -> int:
    """Positions a PEFT prompt-tuning model prepends to the input (0 for prefix tuning and LoRA)."""
    config = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", None))
    if config is None or not getattr(config, "is_prompt_learning", False):
        return 0
    return 0 if config.peft_type.value == "PREFIX_TUNING" else int(config.num_virtual_tokens)


def answer_loss(model, batch: dict[str, torch.Tensor], virtual: int, autocast) -> torch.Tensor:
    """The causal LM loss on answer tokens, with the LM head applied only where an answer token is predicted.

    Equal to the model's own loss (mean cross-entropy over every answer token) but skips the
    hidden x vocabulary product at prompt positions, about a fifth of a small model's compute.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)  # positions whose next token is an answer token
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with autocast:
        logits = model(**inputs, logits_to_keep=keep + virtual).logits
    chosen = targets[:, keep]
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), chosen.reshape(-1), ignore_index=IGNORE
    )
