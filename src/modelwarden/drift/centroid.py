"""The seed notebook's drift check, kept exactly for parity: centroid cosine distance.

Beware: this metric cannot see a shift along the mean direction, and its fixed threshold is not
calibrated. On the seed's own simulated drift (``randn*0.1+0.5`` against ``randn*0.1+0.8``) it gives
about 0.0004 and reports "OK". The calibrated suite in :mod:`modelwarden.drift` does not rely on it.
"""

from __future__ import annotations

import numpy as np

from modelwarden.errors import DimensionError, InputError

SEED_THRESHOLD = 0.02


def _as_matrix(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array of embeddings, got {arr.ndim} dimensions", field=name
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty", field=name)
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinite values", field=name)
    return arr


def centroid_cosine_distance(baseline: object, current: object) -> float:
    """1 - cosine similarity of the two centroids, as ``sklearn.metrics.pairwise.cosine_distances``."""
    b = _as_matrix(baseline, "baseline_embeds")
    c = _as_matrix(current, "current_embeds")
    if b.shape[1] != c.shape[1]:
        raise DimensionError(
            f"baseline has {b.shape[1]} dimensions and current has {c.shape[1]}",
            field="current_embeds",
        )
    cb, cc = b.mean(axis=0), c.mean(axis=0)
    nb, nc = np.linalg.norm(cb), np.linalg.norm(cc)
    if nb == 0 or nc == 0:
        # sklearn treats a zero vector as having cosine similarity 0 with everything.
        return 1.0
    sim = float(np.dot(cb, cc) / (nb * nc))
    return float(np.clip(1.0 - sim, 0.0, 2.0))


def check_drift(
    baseline_embeds: object, current_embeds: object, threshold: float = SEED_THRESHOLD
) -> tuple[float, str]:
    """The seed's ``check_drift``: returns ``(drift_score, "OK" | "ALERT")``.

    ``drift_score`` is the cosine distance between the two centroids; the status is ``"ALERT"``
    when it is strictly greater than ``threshold``.
    """
    if not np.isfinite(threshold) or threshold < 0:
        raise InputError("threshold must be a finite number >= 0", field="threshold")
    score = centroid_cosine_distance(baseline_embeds, current_embeds)
    return score, ("ALERT" if score > threshold else "OK")
