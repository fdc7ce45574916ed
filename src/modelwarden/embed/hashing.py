"""A feature-hashing embedder: fast, deterministic, no model. For tests and smoke runs only.

It hashes word unigrams and bigrams into ``dim`` signed buckets (blake2b, so the vectors are the
same in every process) and L2-normalises. Texts that share words get similar vectors, which is
enough to exercise drift and clustering code, but it knows nothing of meaning: use
:class:`~modelwarden.embed.minilm.MiniLMEmbedder` for real monitoring.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    def __init__(self, dim: int = 384) -> None:
        if dim < 8:
            raise ValueError("dim must be at least 8")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        cache: dict[str, tuple[int, float]] = {}
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            tokens = words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]
            for tok in tokens:
                if tok not in cache:
                    cache[tok] = self._bucket(tok)
                j, sign = cache[tok]
                out[i, j] += sign
            if progress and (i + 1) % batch_size == 0:
                progress(batch_size)
        if progress and len(texts) % batch_size:
            progress(len(texts) % batch_size)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
