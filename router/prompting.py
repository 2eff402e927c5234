"""Prompt text for each strategy, split into a fixed prefix and a per-complaint part.

The fixed prefix (instruction and shots) is identical for every complaint, so its
key/value cache is computed once per loaded model; only the per-complaint part
is prefilled on each call. The tuned strategy has no text prefix at all: its
prefix is the learned soft prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from router.codec import ANSWER_CUE
from router.dataset import Example
from router.departments import DEPARTMENTS, INSTRUCTION, format_departments

COMPLAINT_CUE = "Complaint:"


@dataclass(frozen=True)
class PromptParts:
    prefix: str  # shared by every complaint (may be empty)
    template: str  # per-complaint text with a '{complaint}' slot

    def request(self, complaint: str, context: str = "") -> str:
        """The per-complaint text; `context` (retrieved policy or precedents) goes before the complaint."""
        body = f"{context.strip()}\n\n{COMPLAINT_CUE} {complaint.strip()}" if context.strip() else complaint.strip()
        if context.strip() and self.template.startswith(COMPLAINT_CUE):
            return self.template.replace(COMPLAINT_CUE + " {complaint}", body, 1)
        return self.template.replace("{complaint}", body)


def tuned_prompt(seq2seq: bool = False) -> PromptParts:
    """No instruction: the soft prompt carries the task."""
    if seq2seq:
        return PromptParts("", COMPLAINT_CUE + " {complaint}")
    return PromptParts("", COMPLAINT_CUE + " {complaint}\n" + ANSWER_CUE)


def _has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _chat(tokenizer, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def instructed_prompt(tokenizer, shots: Sequence[Example] = (), seq2seq: bool = False) -> PromptParts:
    """Zero-shot (no shots) or multi-shot prompt with the business instruction."""
    if _has_chat_template(tokenizer) and not seq2seq:
        messages = [{"role": "system", "content": INSTRUCTION}]
        for shot in shots:
            messages.append({"role": "user", "content": shot.input})
            messages.append({"role": "assistant", "content": f"{ANSWER_CUE} {shot.output}"})
        prefix = _chat(tokenizer, messages, generation=False)
        marker = "\x00COMPLAINT\x00"
        full = _chat(tokenizer, messages + [{"role": "user", "content": marker}], generation=True)
        if not full.startswith(prefix):
            raise ValueError("chat template is not prefix-stable; cannot cache the shared prompt")
        template = full[len(prefix) :].replace(marker, "{complaint}") + ANSWER_CUE
        return PromptParts(prefix, template)
    lines = [INSTRUCTION, ""]
    for shot in shots:
        lines += [f"{COMPLAINT_CUE} {shot.input}", f"{ANSWER_CUE} {shot.output}", ""]
    prefix = "\n".join(lines)
    tail = COMPLAINT_CUE + " {complaint}" + ("" if seq2seq else "\n" + ANSWER_CUE)
    return PromptParts(prefix, tail)


def pick_shots(examples: Sequence[Example], k: int) -> list[Example]:
    """k training examples that together cover as many departments as possible.

    Deterministic: greedy on new departments covered, ties broken by preferring
    multi-department labels, then by file order.
    """
    if k <= 0 or not examples:
        return []
    chosen: list[Example] = []
    covered: set[str] = set()
    seen_labels: set[str] = set()
    pool = list(examples)
    while len(chosen) < min(k, len(pool)):
        def score(ex: Example):
            new = len(set(ex.departments) - covered)
            fresh_label = format_departments(ex.departments) not in seen_labels
            return (new, fresh_label, len(ex.departments) > 1, -len(ex.input))
        best = max((ex for ex in pool if ex not in chosen), key=score)
        chosen.append(best)
        covered |= set(best.departments)
        seen_labels.add(best.output)
    return chosen


__all__ = ["PromptParts", "tuned_prompt", "instructed_prompt", "pick_shots", "DEPARTMENTS"]
