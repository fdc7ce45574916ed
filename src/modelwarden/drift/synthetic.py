"""Seeded synthetic embeddings for tests, benchmarks and demos: topics as clusters on the sphere.

Sentence embeddings of prompts on one topic sit in a cone around a topic direction; a change of
what users ask about is a change of how much traffic each cone gets. ``topic_mixture`` draws
L2-normalised vectors ``normalize(centre + noise * g / sqrt(dim))``: with ``noise=1`` a prompt's
cosine to its topic centre is about 0.7 and to another topic about 0, close to what MiniLM gives
for prompts on one subject against prompts on unrelated ones.
"""

from __future__ import annotations

import numpy as np

from modelwarden.errors import InputError


def topic_centres(n_topics: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """``n_topics`` random unit vectors in ``dim`` dimensions."""
    rng = np.random.default_rng([seed, 0x70])
    c = rng.standard_normal((n_topics, dim))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def mixture_weights(n_topics: int, topic: int = 0, share: float | None = None) -> np.ndarray:
    """Equal topic shares, except ``topic`` which gets ``share`` (the others split the rest)."""
    if share is None:
        return np.full(n_topics, 1.0 / n_topics)
    if not 0.0 <= share <= 1.0:
        raise InputError("share must be between 0 and 1", field="share")
    w = np.full(n_topics, (1.0 - share) / (n_topics - 1))
    w[topic] = share
    return w


def topic_mixture(
    centres: np.ndarray,
    weights: np.ndarray,
    n: int,
    *,
    seed: int | np.random.Generator = 0,
    noise: float = 1.0,
    dtype: type[np.floating] = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors drawn from the topic mixture, and the topic of each."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (centres.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise InputError("weights must be one non-negative number per topic", field="weights")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    dim = centres.shape[1]
    topics = rng.choice(centres.shape[0], size=n, p=w / w.sum())
    x = np.empty((n, dim), dtype=dtype)
    step = 8192
    for start in range(0, n, step):
        t = topics[start : start + step]
        block = centres[t] + noise * rng.standard_normal((t.size, dim)) / np.sqrt(dim)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[start : start + step] = block
    return x, topics
