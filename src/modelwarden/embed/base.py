"""The Embedder protocol: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. ``name`` keys stored embeddings, so it changes with the model."""

    name: str
    dim: int

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``, float32, rows of unit length.

        ``progress`` is called with the number of texts finished after each batch.
        """
        ...
