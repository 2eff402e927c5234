"""How department lists become token ids and back, for one tokenizer.

The answer format is ``Departments: Warehouse, Packaging<eos>``. Each
department name is a fixed token sequence; decoding walks a trie of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.departments import DEPARTMENTS

ANSWER_CUE = "Departments:"


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _ids_after(tokenizer, prefix: str, full: str) -> list[int]:
    head, whole = _ids(tokenizer, prefix), _ids(tokenizer, full)
    if whole[: len(head)] != head or len(whole) == len(head):
        raise ValueError(f"tokenizer does not split {full!r} after {prefix!r}; cannot build the department trie")
    return whole[len(head) :]


@dataclass(frozen=True)
class LabelCodec:
    name_ids: tuple[tuple[int, ...], ...]  # per department, canonical order
    sep_ids: tuple[int, ...]
    eos_id: int

    @classmethod
    def for_tokenizer(cls, tokenizer) -> "LabelCodec":
        names = tuple(tuple(_ids_after(tokenizer, ANSWER_CUE, f"{ANSWER_CUE} {name}")) for name in DEPARTMENTS)
        sep = tuple(_ids_after(tokenizer, f"{ANSWER_CUE} {DEPARTMENTS[0]}", f"{ANSWER_CUE} {DEPARTMENTS[0]},"))
        codec = cls(names, sep, int(tokenizer.eos_token_id))
        codec._verify(tokenizer)
        return codec

    def _verify(self, tokenizer) -> None:
        for i, a in enumerate(self.name_ids):
            for j, b in enumerate(self.name_ids):
                if i != j and b[: len(a)] == a:
                    raise ValueError(f"department {DEPARTMENTS[i]!r} tokenizes as a prefix of {DEPARTMENTS[j]!r}")
        whole = _ids(tokenizer, f"{ANSWER_CUE} Warehouse, Packaging")
        built = _ids(tokenizer, ANSWER_CUE) + list(self.name_ids[3] + self.sep_ids + self.name_ids[5])
        if whole != built:
            raise ValueError("tokenizer merges department names with separators; the trie would be wrong")
        if self.eos_id in self.sep_ids or any(self.eos_id in ids for ids in self.name_ids):
            raise ValueError("end-of-sequence token appears inside a department name")

    @property
    def token_ids(self) -> list[int]:
        """Every token the decoder can read a probability for: name tokens, separators, end."""
        return sorted({t for ids in self.name_ids for t in ids} | set(self.sep_ids) | {self.eos_id})

    def draft_ids(self, departments) -> list[int]:
        """Tokens the decoder feeds when it chooses `departments`: each name and a separator.

        The last canonical department ends every answer, so the decoder never feeds it; nor is the end token fed.
        """
        indices = sorted({DEPARTMENTS.index(d) for d in departments})
        out: list[int] = []
        for index in indices:
            if index == len(DEPARTMENTS) - 1:
                break
            out.extend(self.name_ids[index] + self.sep_ids)
        return out

    def answer_ids(self, departments) -> list[int]:
        """Target token ids (after the answer cue) for a canonical department list, ending in eos."""
        indices = [DEPARTMENTS.index(d) for d in departments]
        out: list[int] = []
        for position, index in enumerate(sorted(indices)):
            if position:
                out.extend(self.sep_ids)
            out.extend(self.name_ids[index])
        out.append(self.eos_id)
        return out
