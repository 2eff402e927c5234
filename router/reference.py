"""The plain, uncached path: every step re-runs the tuned model's forward on the whole sequence.

Slow on purpose. It is the ground truth the fast path (prefix KV cache, batching,
forced multi-token steps) must agree with, and the baseline the benchmark
compares against. For PEFT methods it is PEFT's own forward (PEFT has had bugs where
the soft prompt was silently dropped when a cache was passed; this path passes none);
for a late prompt it is the model's plain forward through every layer with the
prompt's keys/values inserted in front, recomputing the whole complaint at every step.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch

from router.codec import LabelCodec
from router.decoding import Decoded, Feed, Logits, decode_batch
from router.devices import device_of
from router.prompting import tuned_prompt


class UncachedStepper:
    """The plain reference: every step runs the whole sequence again (no cache, no drafts)."""

    def __init__(self, forward):
        self.forward = forward  # ids [1, L] -> logits [L, vocab] for the text positions
        self.sequences: list[list[int]] = []

    @torch.no_grad()
    def start(self, requests: Sequence[Sequence[int]]) -> list[Logits]:
        self.sequences = [list(r) for r in requests]
        return [self.forward(seq)[-1] for seq in self.sequences]

    @torch.no_grad()
    def feed(self, pending: dict[int, Feed]) -> dict[int, Logits]:
        out = {}
        for i, tokens in pending.items():
            self.sequences[i] += tokens
            out[i] = self.forward(self.sequences[i])[-len(tokens):]
        return out


def peft_forward(peft_model):
    """Logits of the tuned model's forward for the text positions (virtual-token positions stripped)."""
    def run(ids: list[int]) -> torch.Tensor:
        tensor = torch.tensor([ids], device=device_of(peft_model))
        logits = peft_model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0]
        return logits[-len(ids):]
    return run


class LatePromptReference:
    """A late prompt applied the plain way: a fresh cache holding only the prompt, the whole text fed after it."""

    def __init__(self, model, layers: list[tuple[torch.Tensor, torch.Tensor]], init_ids: list[int]):
        self.model, self.layers, self.init_ids = model, layers, list(init_ids)

    def _cache(self):
        from transformers import DynamicCache

        return DynamicCache([(k.clone(), v.clone()) for k, v in self.layers])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        n, width, device = len(self.init_ids), input_ids.shape[1], input_ids.device
        return self.model(input_ids=input_ids, attention_mask=torch.ones(1, n + width, dtype=torch.long, device=device),
                          position_ids=torch.arange(n, n + width, device=device)[None], past_key_values=self._cache())

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_allowed_tokens_fn=None, **kwargs):
        """HF generate() over the prompt's cache: the prompt's token ids stand in front (generate skips the cached
        positions), and are stripped from the output."""
        n = len(self.init_ids)
        full = torch.cat([torch.tensor([self.init_ids], device=input_ids.device), input_ids], dim=1)
        allowed = None if prefix_allowed_tokens_fn is None else (lambda b, seq: prefix_allowed_tokens_fn(b, seq[n:]))
        out = self.model.generate(input_ids=full, attention_mask=torch.ones_like(full), past_key_values=self._cache(),
                                  prefix_allowed_tokens_fn=allowed, **kwargs)
        return out[:, n:]


class EnsembleReference:
    """A prompt ensemble's plain path: every member's plain model, every member run on every complaint."""

    def __init__(self, members: list):
        self.members = members


def load_reference(base, artifact_path):
    """The plain model for an artifact: PEFT's own (LoRA wraps a copy: it would otherwise modify the shared base),
    or for a late prompt the frozen base with the prompt's keys/values in a fresh cache."""
    import copy

    from peft import PeftModel

    from router.artifact import read_metadata
    from router.ensemble import PROMPT_ENSEMBLE, read_ensemble_config
    from router.modelio import use_attention
    from router.soft_prompt import LATE_PROMPT, late_prompt_layers, read_late_prompt

    method = read_metadata(artifact_path).get("method")
    if method == PROMPT_ENSEMBLE:
        names = read_ensemble_config(artifact_path)["members"]
        return EnsembleReference([load_reference(base, Path(artifact_path) / name) for name in names])
    if method == LATE_PROMPT:
        config, keys, values = read_late_prompt(artifact_path)
        return LatePromptReference(base.model, late_prompt_layers(base.model, config, keys, values), config["init_ids"])
    lora = method == "lora"
    # the same attention kernel as the fast path's tuned copy: the comparison is about the path, not the kernel
    target = use_attention(copy.deepcopy(base.model), base.tuned_attention) if lora else base.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PeftModel.from_pretrained(target, str(artifact_path), is_trainable=False)
    return model.eval()


def route_uncached(base, peft_model, texts: Sequence[str]) -> list[Decoded]:
    """Tuned routing through PEFT's forward with no cache at all (causal models)."""
    codec = LabelCodec.for_tokenizer(base.tokenizer)
    parts = tuned_prompt(False)
    requests = [base.tokenizer(parts.request(t), add_special_tokens=False)["input_ids"] for t in texts]
    return decode_batch(UncachedStepper(peft_forward(peft_model)), codec, requests)


def generate_reference(base, peft_model, texts: Sequence[str]) -> list[tuple[list[str], float]]:
    """Plain PEFT + generate(): one complaint at a time, greedy under the department grammar.

    Returns (departments, latency ms) per complaint. The baseline the fast path is measured against. A prompt
    ensemble runs each member this way and votes (router.ensemble), its latency the members' summed.
    """
    import time

    if isinstance(peft_model, EnsembleReference):
        from router.ensemble import voted_departments

        runs = [generate_reference(base, member, texts) for member in peft_model.members]
        return [(voted_departments([names for names, _ in per_text]), sum(ms for _, ms in per_text))
                for per_text in zip(*runs)]

    from router.grammar import prefix_allowed_tokens_fn

    codec = LabelCodec.for_tokenizer(base.tokenizer)
    parts = tuned_prompt(False)
    results = []
    for text in texts:
        ids = torch.tensor([base.tokenizer(parts.request(text), add_special_tokens=False)["input_ids"]],
                           device=device_of(peft_model))
        started = time.perf_counter()
        with torch.no_grad():
            out = peft_model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                prefix_allowed_tokens_fn=prefix_allowed_tokens_fn(codec, ids.shape[1]),
                pad_token_id=base.tokenizer.pad_token_id, eos_token_id=codec.eos_id,
            )
        elapsed = (time.perf_counter() - started) * 1000
        answer = out[0, ids.shape[1]:].tolist()
        if codec.eos_id in answer:
            answer = answer[: answer.index(codec.eos_id)]
        names = [n.strip() for n in base.tokenizer.decode(answer).split(",") if n.strip()]
        results.append((names, elapsed))
    return results
