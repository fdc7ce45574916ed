"""Centroid distances, calibrated by permutation, and the seed's uncalibrated check in the contract.

Blind spots: both centroid statistics see only the mean. The cosine distance also cannot see a
shift along the mean direction (the seed's own example), and neither sees a change of spread or
a change of topic mix that leaves the mean where it was.
"""

from __future__ import annotations

import numpy as np

from modelwarden.drift.base import Detector, DriftResult, check_positive_int
from modelwarden.drift.calibration import PermutationDetector, work_dtype
from modelwarden.drift.centroid import SEED_THRESHOLD, centroid_cosine_distance, check_drift
from modelwarden.errors import InputError


def pooled(baseline: np.ndarray, current: np.ndarray) -> np.ndarray:
    """``[baseline; current]`` in the working precision for their size."""
    dtype = work_dtype(baseline.shape[0] + current.shape[0], baseline.shape[1])
    return np.concatenate([baseline.astype(dtype, copy=False), current.astype(dtype, copy=False)])


def _cosine_distance_rows(mean_b: np.ndarray, mean_c: np.ndarray, *_: int) -> np.ndarray:
    nb = np.linalg.norm(mean_b, axis=1)
    nc = np.linalg.norm(mean_c, axis=1)
    dot = np.einsum("ij,ij->i", mean_b, mean_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = dot / (nb * nc)
    # A zero centroid has cosine similarity 0 with everything, as in sklearn.
    sim = np.where((nb == 0) | (nc == 0), 0.0, sim)
    return np.clip(1.0 - sim, 0.0, 2.0)


def _euclidean_distance_rows(mean_b: np.ndarray, mean_c: np.ndarray, *_: int) -> np.ndarray:
    return np.linalg.norm(mean_c - mean_b, axis=1)


class CentroidCosineDetector(PermutationDetector):
    """The seed's statistic (cosine distance of the centroids), calibrated by permutation.

    The score is exactly the seed's number; what changes is the decision, which now comes from
    the permutation null instead of a fixed 0.02.
    """

    method = "centroid_cosine"
    effect_name = "cosine_distance"

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        score = centroid_cosine_distance(baseline, current)
        outcome = self._mean_test(
            pooled(baseline, current),
            baseline.shape[0],
            _cosine_distance_rows,
            scale_power=1.0,
        )
        return self._decide(
            outcome,
            score=score,
            effect=score,
            n_baseline=baseline.shape[0],
            n_current=current.shape[0],
            details={"seed_threshold": SEED_THRESHOLD},
        )


class CentroidEuclideanDetector(PermutationDetector):
    """Euclidean distance between the centroids, calibrated by permutation.

    Sees a mean shift in any direction, including along the mean (which the cosine misses). Its
    effect size is the shift in units of the baseline's spread, ``||Δμ|| / sqrt(tr Σ_baseline)``,
    so the floor means the same for raw and normalised vectors. ``||Δμ||²`` is estimated without
    the bias sampling noise adds to it (``tr Σ (1/n_b + 1/n_c)``), so that the effect of no shift
    is near zero at any window size rather than shrinking only as the windows grow.
    """

    method = "centroid_euclidean"
    effect_name = "standardized_shift"

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        mean_b = baseline.mean(axis=0, dtype=np.float64)
        mean_c = current.mean(axis=0, dtype=np.float64)
        score = float(np.linalg.norm(mean_c - mean_b))
        var_b = (
            float(np.sum(baseline.var(axis=0, ddof=1, dtype=np.float64)))
            if len(baseline) > 1
            else 0.0
        )
        var_c = (
            float(np.sum(current.var(axis=0, ddof=1, dtype=np.float64)))
            if len(current) > 1
            else 0.0
        )
        unbiased = max(score**2 - var_b / len(baseline) - var_c / len(current), 0.0)
        spread = float(np.sqrt(var_b))
        effect = np.sqrt(unbiased) / spread if spread > 0 else (0.0 if score == 0 else float("inf"))
        outcome = self._mean_test(
            pooled(baseline, current),
            baseline.shape[0],
            _euclidean_distance_rows,
            scale_power=0.5,
        )
        return self._decide(
            outcome,
            score=score,
            effect=effect,
            n_baseline=baseline.shape[0],
            n_current=current.shape[0],
            details={"baseline_spread": spread},
        )


class SeedCentroidDetector(Detector):
    """The seed notebook's ``check_drift`` in the detector contract: fixed threshold, no p-value.

    Kept for parity with the notebook only; it reports "OK" on the notebook's own drift example.
    It has no minimum window size, as in the notebook.
    """

    method = "seed"

    def __init__(
        self, *, threshold: float = SEED_THRESHOLD, alpha: float = 0.05, min_n: int = 1
    ) -> None:
        super().__init__(alpha=alpha, min_n=check_positive_int(min_n, "min_n"))
        if not np.isfinite(threshold) or threshold < 0:
            raise InputError("threshold must be a finite number >= 0", field="threshold")
        self.threshold = float(threshold)

    @property
    def params(self) -> dict[str, object]:
        return {**super().params, "threshold": self.threshold}

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        score, status = check_drift(baseline, current, self.threshold)
        return self._result(
            drifted=status == "ALERT",
            score=score,
            p_value=None,
            threshold=self.threshold,
            n_baseline=baseline.shape[0],
            n_current=current.shape[0],
            details={"calibrated": False},
        )
