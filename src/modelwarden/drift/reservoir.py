"""A uniform random sample of a stream of rows, kept up to date window by window.

:class:`Reservoir` is Vitter's Algorithm R: the first ``size`` rows fill the sample; row ``t``
(0-based) after that replaces a uniformly chosen slot with probability ``size / (t + 1)``. After
any number of rows every row seen so far is in the sample with the same probability, and the
sample is a uniform random subset. The random generator's state is part of the reservoir, so
folding a stream in one piece or in many (across restarts) gives the same sample for a seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwarden.drift.base import check_positive_int
from modelwarden.errors import DimensionError, InputError


@dataclass
class Reservoir:
    """Up to ``size`` rows (vector, id, text) drawn uniformly from all rows folded in."""

    size: int
    seed: int = 0
    seen: int = 0
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    rng_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.size = check_positive_int(self.size, "size")
        self.seed = check_positive_int(self.seed, "seed", minimum=0)

    def _rng(self) -> np.random.Generator:
        rng = np.random.default_rng(self.seed)
        if self.rng_state is not None:
            rng.bit_generator.state = self.rng_state
        return rng

    @property
    def dim(self) -> int | None:
        return int(self.vectors.shape[1]) if self.vectors.size else None

    def add(
        self,
        vectors: np.ndarray,
        ids: list[str],
        texts: list[str] | None = None,
        stream_rows: int | None = None,
    ) -> int:
        """Fold rows in, in the given order; returns how many of them entered the sample.

        With ``stream_rows`` (more than the rows given) the rows are a uniform sample of a
        window of that many (a sampled drift window): the window is folded as ``stream_rows``
        rows, and the ones that enter the reservoir are drawn from the sample, which is as
        uniform as drawing them from the window. The sample must hold at least as many rows as
        enter (at most ``size``).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        n = len(ids)
        if n == 0:
            return 0
        if stream_rows is not None and stream_rows < n:
            raise InputError(
                f"stream_rows ({stream_rows}) is fewer than the {n} rows given",
                field="stream_rows",
            )
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise InputError(f"expected {n} vectors, got shape {vectors.shape}", field="vectors")
        if not np.isfinite(vectors).all():
            raise InputError("vectors contain NaN or infinite values", field="vectors")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise DimensionError(
                f"the reservoir holds {self.dim}-dimensional vectors, got {vectors.shape[1]}",
                field="vectors",
                expected=self.dim,
                got=int(vectors.shape[1]),
            )
        texts = list(texts) if texts is not None else [""] * n
        if len(texts) != n:
            raise InputError(f"{len(texts)} texts for {n} rows", field="texts")
        if self.vectors.size == 0:
            self.vectors = np.zeros((0, vectors.shape[1]), np.float32)
        if stream_rows is not None and stream_rows > n:
            return self._add_sampled(vectors, ids, texts, stream_rows)
        rng = self._rng()
        fill = max(0, min(self.size - len(self.ids), n))
        entered = fill
        if fill:
            self.vectors = np.concatenate([self.vectors, vectors[:fill]])
            self.ids.extend(ids[:fill])
            self.texts.extend(texts[:fill])
        rest = n - fill
        if rest:
            # Row t (0-based over the whole stream) draws j uniform in [0, t]; j < size replaces
            # slot j. One vectorised draw per row, applied in stream order.
            t = self.seen + fill + np.arange(rest)
            j = rng.integers(0, t + 1)
            vectors_out = np.array(self.vectors)
            for i in np.flatnonzero(j < self.size):
                slot = int(j[i])
                vectors_out[slot] = vectors[fill + i]
                self.ids[slot] = ids[fill + i]
                self.texts[slot] = texts[fill + i]
                entered += 1
            self.vectors = vectors_out
        self.seen += n
        self.rng_state = dict(rng.bit_generator.state)
        return entered

    def _add_sampled(
        self, vectors: np.ndarray, ids: list[str], texts: list[str], stream_rows: int
    ) -> int:
        rng = self._rng()
        n = len(ids)
        fill = max(0, min(self.size - len(self.ids), stream_rows))
        rest = stream_rows - fill
        t = self.seen + fill + np.arange(rest)
        j = rng.integers(0, t + 1) if rest else np.zeros(0, np.int64)
        hits = j[j < self.size]
        # A slot written several times keeps the last row written to it.
        slots = np.unique(hits)
        need = fill + slots.size
        if need > n:
            raise InputError(
                f"a sample of {n} rows cannot give the {need} rows that enter the reservoir",
                field="vectors",
            )
        pick = rng.choice(n, need, replace=False)
        take, put = pick[:fill], pick[fill:]
        vectors_out = np.concatenate([self.vectors, vectors[take]])
        self.ids.extend(ids[i] for i in take)
        self.texts.extend(texts[i] for i in take)
        vectors_out[slots] = vectors[put]
        for slot, i in zip(slots.tolist(), put.tolist(), strict=True):
            self.ids[slot] = ids[i]
            self.texts[slot] = texts[i]
        self.vectors = vectors_out
        self.seen += stream_rows
        self.rng_state = dict(rng.bit_generator.state)
        return int(need)

    # -- persistence as plain arrays and JSON -----------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = {"size": self.size, "seed": self.seed, "seen": self.seen, "rng": self.rng_state}
        return {
            "vectors": self.vectors,
            "ids": np.asarray(self.ids, dtype=object).astype(str),
            "texts": np.asarray(self.texts, dtype=object).astype(str),
            "meta": np.asarray(json.dumps(meta)),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> Reservoir:
        meta = json.loads(str(arrays["meta"]))
        return cls(
            size=int(meta["size"]),
            seed=int(meta["seed"]),
            seen=int(meta["seen"]),
            vectors=np.asarray(arrays["vectors"], dtype=np.float32),
            ids=[str(x) for x in arrays["ids"]],
            texts=[str(x) for x in arrays["texts"]],
            rng_state=meta["rng"],
        )
