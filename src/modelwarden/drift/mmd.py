"""Maximum mean discrepancy with a Gaussian kernel, calibrated by permutation.

Up to ``exact_max_n`` pooled rows the kernel matrix is built exactly. Above it the kernel is
replaced by random Fourier features z(x) (Rahimi & Recht, 2007), for which
MMD² = ||mean z(baseline) - mean z(current)||², so the cost is linear in n and the permutation
null is a matrix product over features; no n x n matrix is ever built.

The bandwidth is the median pairwise distance of a random subsample of the *pooled* rows. The
subsample ignores which window a row came from, so choosing the kernel from the data does not
break the exchangeability the permutation test relies on.

Blind spots: with the median bandwidth the kernel looks at the bulk of the distribution; a small
change confined to a tight region (a narrow new topic, a few outliers) is diluted, which is what
the cluster-share test covers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelwarden.drift.base import DriftResult, check_positive_int
from modelwarden.drift.calibration import (
    PermutationDetector,
    PermutationOutcome,
    Relabeller,
    critical_value,
    permutation_p_value,
)
from modelwarden.drift.distance import pooled
from modelwarden.errors import InputError


def median_bandwidth(x: np.ndarray, *, sample: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance over at most ``sample`` random rows of ``x``."""
    rng = np.random.default_rng([seed, 0xB4D])
    rows = x if x.shape[0] <= sample else x[rng.choice(x.shape[0], sample, replace=False)]
    d2 = _squared_distances(rows.astype(np.float64), rows.astype(np.float64))
    iu = np.triu_indices(rows.shape[0], k=1)
    if iu[0].size == 0:
        return 1.0
    med = float(np.sqrt(np.median(d2[iu])))
    # Identical rows give a zero median; any positive bandwidth then gives the same (zero) MMD.
    return med if med > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = np.einsum("ij,ij->i", a, a)[:, None]
    bb = np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(aa + bb - 2.0 * (a @ b.T), 0.0)


def random_fourier_features(
    x: np.ndarray, bandwidth: float, n_features: int, seed: int
) -> np.ndarray:
    """``[cos(xW), sin(xW)] / sqrt(D/2)`` with W ~ N(0, 1/bandwidth²): z(x)·z(y) ≈ k(x, y)."""
    half = max(1, n_features // 2)
    rng = np.random.default_rng([seed, 0xF0F])
    w = (rng.standard_normal((x.shape[1], half)) / bandwidth).astype(x.dtype)
    proj = x @ w
    out = np.empty((x.shape[0], 2 * half), dtype=x.dtype)
    np.cos(proj, out=out[:, :half])
    np.sin(proj, out=out[:, half:])
    out *= np.asarray(1.0 / np.sqrt(half), dtype=x.dtype)
    return out


def _squared_mean_difference(mean_b: np.ndarray, mean_c: np.ndarray, *_: int) -> np.ndarray:
    diff = mean_c - mean_b
    return np.einsum("ij,ij->i", diff, diff)


class MMDDetector(PermutationDetector):
    """Kernel two-sample test (Gretton et al., 2012), Gaussian kernel, median-heuristic bandwidth.

    ``score`` is the (biased, V-statistic) MMD², the quantity the permutation null calibrates;
    the effect size in ``details`` is the unbiased MMD² estimate, near zero without drift at
    any window size, which is what ``min_effect`` is compared with.
    """

    method = "mmd"
    effect_name = "mmd2_unbiased"

    def __init__(
        self,
        *,
        bandwidth: float | None = None,
        bandwidth_scale: float = 1.0,
        n_features: int = 512,
        exact_max_n: int = 2000,
        bandwidth_sample: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
            raise InputError(
                "bandwidth must be a positive number or None (median heuristic)", field="bandwidth"
            )
        if not (np.isfinite(bandwidth_scale) and bandwidth_scale > 0):
            raise InputError("bandwidth_scale must be a positive number", field="bandwidth_scale")
        self.bandwidth = None if bandwidth is None else float(bandwidth)
        self.bandwidth_scale = float(bandwidth_scale)
        self.n_features = check_positive_int(n_features, "n_features", minimum=2)
        self.exact_max_n = check_positive_int(exact_max_n, "exact_max_n", minimum=0)
        self.bandwidth_sample = check_positive_int(bandwidth_sample, "bandwidth_sample", 2)

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "bandwidth": self.bandwidth,
            "bandwidth_scale": self.bandwidth_scale,
            "n_features": self.n_features,
            "exact_max_n": self.exact_max_n,
        }

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        x = pooled(baseline, current)
        n_b, n_c = baseline.shape[0], current.shape[0]
        sigma = (
            self.bandwidth
            or median_bandwidth(x, sample=self.bandwidth_sample, seed=self.seed)
            * self.bandwidth_scale
        )
        if x.shape[0] <= self.exact_max_n:
            outcome, effect = self._exact(x.astype(np.float64), n_b, sigma)
            mode = "exact"
        else:
            outcome, effect = self._fourier(x, n_b, sigma)
            mode = "random_fourier_features"
        return self._decide(
            outcome,
            score=outcome.observed,
            effect=effect,
            n_baseline=n_b,
            n_current=n_c,
            details={"bandwidth": sigma, "mode": mode, "mmd": float(np.sqrt(max(effect, 0.0)))},
        )

    def _exact(self, x: np.ndarray, n_b: int, sigma: float) -> tuple[PermutationOutcome, float]:
        n = x.shape[0]
        n_c = n - n_b
        k = np.exp(-_squared_distances(x, x) / (2.0 * sigma**2))
        weights = np.concatenate([np.full(n_b, -1.0 / n_b), np.full(n_c, 1.0 / n_c)])
        observed = float(weights @ k @ weights)
        null = np.empty(self.n_permutations)
        done = 0
        chunk = max(1, min(self.n_permutations, 2**22 // max(n, 1)))
        for idx in Relabeller(n_b, n_c, self.n_permutations, self.seed).chunks(chunk):
            b = idx.shape[0]
            a = np.full((b, n), -1.0 / n_b)
            a[np.arange(b)[:, None], idx] = 1.0 / n_c
            null[done : done + b] = np.einsum("ij,ij->i", a @ k, a)
            done += b
        outcome = PermutationOutcome(
            observed=observed,
            null=null,
            p_value=permutation_p_value(observed, null),
            threshold=critical_value(null, self.alpha),
            n_permutations=self.n_permutations,
            null_sample=None,
        )
        return outcome, _unbiased_from_kernel(k, n_b)

    def _fourier(self, x: np.ndarray, n_b: int, sigma: float) -> tuple[PermutationOutcome, float]:
        z = random_fourier_features(x, sigma, self.n_features, self.seed)
        outcome = self._mean_test(
            z,
            n_b,
            _squared_mean_difference,
            scale_power=1.0,
        )
        return outcome, _unbiased_from_features(z, n_b)


def _unbiased_from_kernel(k: np.ndarray, n_b: int) -> float:
    n_c = k.shape[0] - n_b
    if n_b < 2 or n_c < 2:
        return float("nan")
    kbb, kcc, kbc = k[:n_b, :n_b], k[n_b:, n_b:], k[:n_b, n_b:]
    within_b = (kbb.sum() - np.trace(kbb)) / (n_b * (n_b - 1))
    within_c = (kcc.sum() - np.trace(kcc)) / (n_c * (n_c - 1))
    return float(within_b + within_c - 2.0 * kbc.mean())


def _unbiased_from_features(z: np.ndarray, n_b: int) -> float:
    n_c = z.shape[0] - n_b
    if n_b < 2 or n_c < 2:
        return float("nan")
    zb, zc = z[:n_b], z[n_b:]
    sb = zb.sum(axis=0, dtype=np.float64)
    sc = zc.sum(axis=0, dtype=np.float64)
    norms_b = float(np.einsum("ij,ij->", zb, zb, dtype=np.float64))
    norms_c = float(np.einsum("ij,ij->", zc, zc, dtype=np.float64))
    within_b = (sb @ sb - norms_b) / (n_b * (n_b - 1))
    within_c = (sc @ sc - norms_c) / (n_c * (n_c - 1))
    return float(within_b + within_c - 2.0 * (sb @ sc) / (n_b * n_c))
