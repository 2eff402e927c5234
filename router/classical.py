"""Classical multi-label classifiers: one-vs-rest logistic regression over TF-IDF features.

The `tfidf` evaluation baseline, and the draft that proposes an answer for the
language model to verify in one forward pass (see ``router.decoding``).
A department is predicted when its probability is >= 0.5, and at least the most probable one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from router.dataset import Example
from router.departments import DEPARTMENTS


def _targets(examples: Sequence[Example]) -> np.ndarray:
    return np.array([[d in ex.departments for d in DEPARTMENTS] for ex in examples], dtype=int)


def _decide(probabilities: np.ndarray) -> list[list[str]]:
    out = []
    for row in probabilities:
        chosen = [d for d, p in zip(DEPARTMENTS, row) if p >= 0.5] or [DEPARTMENTS[int(np.argmax(row))]]
        out.append(chosen)
    return out


class OneVsRest:
    def __init__(self, featurize, fit_featurizer=None):
        self.featurize, self.fit_featurizer = featurize, fit_featurizer
        self.coef = np.zeros((len(DEPARTMENTS), 0))  # [departments, features], one logistic regression per row
        self.bias = np.zeros(len(DEPARTMENTS))

    def fit(self, examples: Sequence[Example]) -> "OneVsRest":
        from sklearn.linear_model import LogisticRegression

        texts = [ex.input for ex in examples]
        features = self.fit_featurizer(texts) if self.fit_featurizer else self.featurize(texts)
        targets = _targets(examples)
        models = [LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced").fit(features, targets[:, column])
                  for column in range(len(DEPARTMENTS))]
        self.coef = np.vstack([m.coef_ for m in models])
        self.bias = np.array([m.intercept_[0] for m in models])
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(department) per text: the binary models' sigmoid, computed as one product for all seven."""
        features = self.featurize(list(texts))
        return 1.0 / (1.0 + np.exp(-(np.asarray(features @ self.coef.T) + self.bias)))

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        return _decide(self.predict_proba(texts))


class TfidfFeatures:
    """Word 1-2-grams and character 3-5-grams, TF-IDF weighted (a picklable featurizer)."""

    def __init__(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)

    def fit_transform(self, texts):
        from scipy.sparse import hstack

        return hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)]).tocsr()

    def __call__(self, texts):
        from scipy.sparse import hstack

        return hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()


def tfidf_baseline(train: Sequence[Example]) -> OneVsRest:
    features = TfidfFeatures()
    return OneVsRest(features, features.fit_transform).fit(train)
