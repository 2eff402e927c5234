"""Retrieved context for training examples: the blocks serving puts in front of a complaint, built for a tune.

Serving (``rag.grounding``) retrieves precedents from the precedent store, which holds the training file. A
training example retrieved from that store would find itself, and its label, at the top: the model would
learn to copy. So precedents for a training example come from the training split in an in-memory Chroma
collection (same MiniLM embeddings, same cosine space as the store), with the example itself and its
near-duplicates left out (``near_duplicate``): what the model sees in training is what a complaint it has
never seen gets at serving time. Policy passages come from the configured store, exactly as at serving.
Both are formatted by the grounder's own block functions, so training and serving prompts cannot drift.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from rag.grounding import PRECEDENT_CHARS, ChromaGrounder, compose
from rag.store import query_in_chunks
from router.dataset import Example, normalize
from router.results import Passage
from router.served_context import uses_policy, uses_precedents

NEAR_DUPLICATE_WORDS = 0.5  # word-set overlap (Jaccard) at or above which two complaints are near-duplicates
NEAR_DUPLICATE_COSINE = 0.95  # embedding similarity at or above which two complaints are near-duplicates
CANDIDATES = 9  # precedents looked at beyond the k shown, when simulating corrections
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(normalize(text)))


def near_duplicate(a: str, b: str, cosine: float = 0.0) -> bool:
    """The same complaint up to case and spacing, mostly the same words, or nearly the same embedding."""
    if normalize(a) == normalize(b) or cosine >= NEAR_DUPLICATE_COSINE:
        return True
    wa, wb = words(a), words(b)
    return bool(wa and wb) and len(wa & wb) / len(wa | wb) >= NEAR_DUPLICATE_WORDS


class LeaveOutPrecedents:
    """Precedents for texts from a labeled pool, never the text itself or a near-duplicate of it."""

    def __init__(self, pool: Sequence[Example], embed: Callable[[list[str]], list[list[float]]] | None = None):
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        if embed is None:
            from rag.embeddings import load_encoder

            embed = load_encoder().embed
        self.embed = embed
        self.pool = list(pool)
        vectors = embed([ex.input for ex in self.pool]) if self.pool else []
        self._client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        self._name = f"triage-training-{uuid.uuid4().hex[:12]}"
        self._col = self._client.create_collection(self._name, embedding_function=None,
                                                   configuration={"hnsw": {"space": "cosine"}})
        for start in range(0, len(self.pool), 1024):
            chunk = range(start, min(start + 1024, len(self.pool)))
            self._col.add(ids=[str(i) for i in chunk], embeddings=[vectors[i] for i in chunk],
                          documents=[self.pool[i].input for i in chunk],
                          metadatas=[{"departments": self.pool[i].output} for i in chunk])

    def close(self) -> None:
        self._client.delete_collection(self._name)

    def search_many(self, texts: Sequence[str], k: int) -> list[list[Passage]]:
        """For each text, its k nearest pool examples that are not near-duplicates of it (one embedding call)."""
        texts = list(texts)
        if not texts or not self.pool:
            return [[] for _ in texts]
        vectors = self.embed(texts)
        out: list[list[Passage] | None] = [None] * len(texts)
        want = min(len(self.pool), k + 8)
        pending = list(range(len(texts)))
        while pending:
            found = query_in_chunks(self._col, [vectors[i] for i in pending], want)
            retry = []
            for row, i in enumerate(pending):
                kept = [Passage(f"train:{pid}", str(meta["departments"]), doc, round(1.0 - float(dist), 4), "precedent")
                        for pid, doc, meta, dist in zip(found["ids"][row], found["documents"][row],
                                                        found["metadatas"][row], found["distances"][row])
                        if not near_duplicate(texts[i], doc, 1.0 - float(dist))]
                if len(kept) >= k or want >= len(self.pool):
                    out[i] = kept[:k]
                else:
                    retry.append(i)
            pending, want = retry, min(len(self.pool), want * 4)
        return out  # type: ignore[return-value]  # every slot is filled


class Built(NamedTuple):
    """What a tune trains and validates on: each example's context, and the examples themselves (with simulated
    corrections, some relabeled to the simulated rule's new label)."""

    train: list[str]
    val: list[str]
    train_set: list[Example]
    val_set: list[Example]


@dataclass
class TrainingContexts:
    """Which context a tune puts in front of its examples, and how many of each kind (recorded in the artifact)."""

    kind: str
    policy_k: int
    precedents_k: int
    simulated_corrections: float = 0.0  # share of examples given a simulated correction (rag.simulated_corrections)
    seed: int = 0
    precedent_chars: int = PRECEDENT_CHARS  # how much of each precedent's complaint the prompt shows (0: none)
    made: dict | None = None  # how many simulated corrections the last build made, per split

    def build(self, settings, train_set: Sequence[Example], val_set: Sequence[Example],
              pool: Sequence[Example] | None = None,
              on_progress: Callable[[str], None] | None = None) -> tuple[list[str], list[str]]:
        """The context of every training and validation example; precedents from `pool` (default: train_set),
        the training split, never from the validation split."""
        built = self.build_for_tune(settings, train_set, val_set, pool, on_progress)
        return built.train, built.val

    def build_for_tune(self, settings, train_set: Sequence[Example], val_set: Sequence[Example],
                       pool: Sequence[Example] | None = None,
                       on_progress: Callable[[str], None] | None = None) -> Built:
        """build()'s contexts and the training and validation examples as trained: with simulated corrections,
        an example whose precedents show a correction that applies to it takes the correction's rule's new label."""
        train_set, val_set = list(train_set), list(val_set)
        pool = list(train_set) if pool is None else list(pool)
        every = [ex.input for ex in list(train_set) + list(val_set)]
        hits: list = [None] * len(every)
        found: list = [None] * len(every)
        if uses_policy(self.kind):
            if on_progress:
                on_progress(f"retrieving policy passages for {len(every)} examples")
            grounder = ChromaGrounder(settings)
            hits = grounder.policy_hits_many(every, self.policy_k)
        if uses_precedents(self.kind):
            if on_progress:
                on_progress(f"retrieving precedents for {len(every)} examples from the {len(pool)} "
                            "training examples (each without itself and its near-duplicates)")
            index = LeaveOutPrecedents(pool)
            try:
                wanted = self.precedents_k + (CANDIDATES if self.simulated_corrections else 0)
                found = index.search_many(every, wanted)
            finally:
                index.close()
            if self.simulated_corrections:
                found, train_set, val_set = self._simulate(found, pool, train_set, val_set, on_progress)
        contexts = [compose(h, f, self.precedent_chars).context for h, f in zip(hits, found)]
        return Built(contexts[: len(train_set)], contexts[len(train_set) :], train_set, val_set)

    def _simulate(self, found, pool, train_set, val_set, on_progress):
        from rag.simulated_corrections import simulate_corrections

        n = len(train_set)
        train = simulate_corrections(train_set, found[:n], pool, self.precedents_k, self.simulated_corrections,
                                     self.seed)
        val = simulate_corrections(val_set, found[n:], pool, self.precedents_k, self.simulated_corrections,
                                   self.seed + 1)
        self.made = {"train": {"applies": train.applied, "does_not_apply": train.not_applied},
                     "validation": {"applies": val.applied, "does_not_apply": val.not_applied}}
        if on_progress:
            on_progress(f"simulated corrections: {train.applied} that apply and {train.not_applied} that do not "
                        f"among {n} training examples; {val.applied} and {val.not_applied} among {len(val_set)} "
                        "validation examples")
        return train.precedents + val.precedents, train.examples, val.examples

    def to_json(self) -> dict:
        data = {"kind": self.kind}
        if uses_policy(self.kind):
            data["policy_k"] = self.policy_k
        if uses_precedents(self.kind):
            data.update(precedents_k=self.precedents_k, precedent_chars=self.precedent_chars, leave_out={
                "near_duplicate_word_overlap": NEAR_DUPLICATE_WORDS, "near_duplicate_cosine": NEAR_DUPLICATE_COSINE})
            if self.simulated_corrections:
                data["simulated_corrections"] = {"share": self.simulated_corrections, "seed": self.seed,
                                                 "candidates": self.precedents_k + CANDIDATES, **(self.made or {})}
        return data
