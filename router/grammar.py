"""The department-list grammar as a `prefix_allowed_tokens_fn` for Hugging Face `generate()`.

Used by the reference path (plain PEFT + generate) so it answers under the same
constraint as the fast trie decoder; greedy generate then makes the same choices.
"""

from __future__ import annotations

from router.codec import LabelCodec


def allowed_next(codec: LabelCodec, generated: list[int]) -> list[int]:
    """Tokens that may follow `generated` (the answer so far, after the answer cue)."""
    n = len(codec.name_ids)
    last = -1  # canonical index of the last complete department
    position = 0
    while True:
        # at the start of a department name: which names can follow, and how far does `generated` go into one?
        candidates = [d for d in range(n) if d > last]
        rest = generated[position:]
        matching = [d for d in candidates if tuple(rest[: len(codec.name_ids[d])]) == codec.name_ids[d][: len(rest)]]
        complete = [d for d in matching if len(rest) >= len(codec.name_ids[d])]
        if not complete:
            depth = len(rest)
            return sorted({codec.name_ids[d][depth] for d in matching if len(codec.name_ids[d]) > depth})
        last = complete[0]
        position += len(codec.name_ids[last])
        after = generated[position:]
        sep = list(codec.sep_ids)
        if last == n - 1:
            return [codec.eos_id]
        if not after:
            return [sep[0], codec.eos_id]
        if after[: len(sep)] != sep[: len(after)]:
            return [codec.eos_id]
        if len(after) < len(sep):
            return [sep[len(after)]]
        position += len(sep)


def prefix_allowed_tokens_fn(codec: LabelCodec, prompt_length: int):
    def allowed(batch_id: int, input_ids) -> list[int]:
        return allowed_next(codec, input_ids[prompt_length:].tolist())
    return allowed
