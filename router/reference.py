"""The plain, uncached path: every step re-runs PEFT's own forward on the whole sequence.

Slow on purpose. It is the ground truth the fast path (prefix KV cache, batching,
forced multi-token steps) must agree with, and the baseline the benchmark
compares against. PEFT has had bugs where the soft prompt was silently dropped
when a cache was passed; this path passes none.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from router.codec import LabelCodec
from router.decoding import Decoded, Feed, Logits, decode_batch
from router.prompting import tuned_prompt


class UncachedStepper:
    speculates = False

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
    """Logits of PEFT's forward for the text positions (virtual-token positions stripped)."""
    def run(ids: list[int]) -> torch.Tensor:
        tensor = torch.tensor([ids])
        logits = peft_model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).logits[0]
        return logits[-len(ids):]
    return run


def load_peft(base, artifact_path):
    """PEFT's own model for an artifact (LoRA wraps a copy: it would otherwise modify the shared base)."""
    import copy

    from peft import PeftModel

    from router.artifact import read_metadata
    from router.modelio import use_attention

    lora = read_metadata(artifact_path).get("method") == "lora"
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

    Returns (departments, latency ms) per complaint. The baseline the fast path is measured against.
    """
    import time

    from router.grammar import prefix_allowed_tokens_fn

    codec = LabelCodec.for_tokenizer(base.tokenizer)
    parts = tuned_prompt(False)
    results = []
    for text in texts:
        ids = torch.tensor([base.tokenizer(parts.request(text), add_special_tokens=False)["input_ids"]])
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
