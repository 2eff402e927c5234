"""A cheap draft answer that the language model verifies (speculative decoding).

A TF-IDF classifier fitted on the training file proposes departments in about
2 ms. Its answer's tokens are appended to the complaint in the prefill, so a
single forward pass yields the model's logits at every decision point along the
draft. The decoder accepts the draft exactly as far as the model's own greedy
choices agree with it and continues normally from the first disagreement, so
the answer is the model's, never the draft's; only the number of forward passes
changes. The fitted draft is cached on disk, keyed by the training data.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Sequence

from router import atomic
from router.classical import OneVsRest, tfidf_baseline
from router.dataset import Example

log = logging.getLogger(__name__)

_FORMAT = "tfidf-draft-2"  # bump when the pickled classifier changes shape


class Draft:
    """Proposes a department list per complaint."""

    def __init__(self, classifier: OneVsRest):
        self.classifier = classifier

    def propose(self, texts: Sequence[str]) -> list[list[str]]:
        return self.classifier.predict(list(texts)) if texts else []

    @classmethod
    def fit(cls, examples: Sequence[Example]) -> "Draft":
        return cls(tfidf_baseline(examples))


def _key(examples: Sequence[Example]) -> str:
    import sklearn

    digest = hashlib.sha256(f"{_FORMAT}|{sklearn.__version__}".encode())
    for ex in examples:
        digest.update(f"{ex.input}\t{','.join(ex.departments)}\n".encode())
    return digest.hexdigest()[:24]


def load_or_fit_draft(examples: Sequence[Example], cache_dir: Path | None) -> Draft | None:
    """The draft for these training examples (from the cache when fitted before), or None without examples."""
    if len({d for ex in examples for d in ex.departments}) < 2:
        return None  # nothing to learn from
    path = cache_dir / "drafts" / f"{_key(examples)}.pkl" if cache_dir else None
    if path is not None and path.is_file():
        try:
            with path.open("rb") as handle:
                return pickle.load(handle)
        except Exception as exc:  # a stale or truncated cache file: refit below
            log.warning("ignoring unreadable draft cache %s: %s", path, exc)
    try:
        draft = Draft.fit(examples)
    except ValueError as exc:  # e.g. a department with no example: route without a draft
        log.warning("no draft for speculative decoding: %s", exc)
        return None
    if path is not None:
        try:
            with atomic.atomic_open(path, "wb") as handle:  # unique temp name, then renamed: safe for replicas
                pickle.dump(draft, handle)
        except OSError as exc:
            log.warning("could not cache the draft in %s: %s", path, exc)
    return draft
