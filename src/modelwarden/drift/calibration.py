"""Calibration: permutation nulls for mean-embedding statistics and multiplicity corrections.

Every permutation-calibrated detector here compares *feature means* of the two windows: raw
vectors (centroid tests), random Fourier features (MMD) or one-hot cluster labels (cluster
shares). For such statistics a relabelling of the pooled sample only changes which rows are summed,
so the null is computed as one dense 0/1 matrix product per chunk of permutations. That runs on
BLAS at full speed and never builds an n x n matrix.

The p-value is ``(1 + #{null >= observed}) / (1 + B)``: the observed labelling counts as one of
the equally likely relabellings, which makes the test exact at any B (Phipson & Smyth, 2010).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelwarden.drift.base import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_N,
    DEFAULT_PERMUTATIONS,
    Detector,
    DriftResult,
    check_positive_int,
)
from modelwarden.errors import InputError
from modelwarden.stats.multitest import benjamini_hochberg, holm

# statistic(mean_baseline, mean_current, n_baseline, n_current) -> one value per row
MeanStatistic = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]

# Ties between the observed value and a null value are counted against drift; floating-point
# sums of the same rows in a different order must not turn a tie into evidence.
_TIE_RTOL = 1e-5

# Up to this many pooled rows relabellings are drawn as random keys, above it one subset at a time.
_KEYS_UP_TO = 4096

# Bytes of the 0/1 relabelling matrix built per chunk.
CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class PermutationOutcome:
    observed: float
    null: np.ndarray
    p_value: float
    threshold: float
    n_permutations: int
    null_sample: int | None
    """Rows used for the null when the pooled sample was larger than ``max_null_n``."""

    @property
    def null_mean(self) -> float:
        return float(self.null.mean())


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """``(1 + #{null >= observed}) / (1 + B)``, with near-ties counted as ties."""
    tol = _TIE_RTOL * max(abs(observed), 1e-12)
    return float((1 + np.count_nonzero(null >= observed - tol)) / (1 + null.size))


def critical_value(null: np.ndarray, alpha: float) -> float:
    """The value ``c`` with ``observed > c`` exactly when the permutation p-value is <= alpha.

    At most ``floor(alpha * (B + 1)) - 1`` null values may reach the observed one, so ``c`` is
    that many places below the largest null value; ``inf`` when B is too small to ever reject.
    """
    allowed = int(np.floor(alpha * (null.size + 1) + 1e-9)) - 1
    if allowed < 0:
        return float("inf")
    return float(np.sort(null)[::-1][allowed])


class Relabeller:
    """Seeded random relabellings of a pooled sample ``[baseline rows; current rows]``.

    Yields, chunk by chunk, the row indices labelled "current" in each relabelling. The same seed
    gives the same relabellings whatever the chunk size, so detectors run with one seed share
    them, which is what lets the suite use their joint null.
    """

    def __init__(self, n_baseline: int, n_current: int, n_permutations: int, seed: int) -> None:
        self.n_baseline = n_baseline
        self.n_current = n_current
        self.n_permutations = n_permutations
        self.seed = seed

    def chunks(self, chunk: int) -> Iterator[np.ndarray]:
        if self.n_permutations * self.n_current <= _CACHE_ENTRIES:
            # The suite's members ask for the same relabellings one after the other.
            every = _relabellings(self.n_baseline, self.n_current, self.n_permutations, self.seed)
            for start in range(0, self.n_permutations, chunk):
                yield every[start : start + chunk]
            return
        yield from _draw(self.n_baseline, self.n_current, self.n_permutations, self.seed, chunk)


# Relabellings up to this many indices in all are kept for the next detector on the same windows.
_CACHE_ENTRIES = 16_000_000


@functools.lru_cache(maxsize=2)
def _relabellings(n_baseline: int, n_current: int, n_permutations: int, seed: int) -> np.ndarray:
    out = np.concatenate(list(_draw(n_baseline, n_current, n_permutations, seed, 256)))
    out = out.astype(np.int32 if n_baseline + n_current < 2**31 else np.int64)
    out.flags.writeable = False
    return out


def _draw(
    n_baseline: int, n_current: int, n_permutations: int, seed: int, chunk: int
) -> Iterator[np.ndarray]:
    rng = np.random.default_rng([seed, 0x5EED])
    n = n_baseline + n_current
    done = 0
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        if n <= _KEYS_UP_TO:
            # The rows with the n_current smallest of n random keys are a uniform random subset;
            # vectorised, this beats one call per relabelling on small windows.
            keys = rng.random((b, n))
            yield np.argpartition(keys, n_current - 1, axis=1)[:, :n_current]
        else:
            yield np.stack([rng.choice(n, n_current, replace=False) for _ in range(b)])
        done += b


def mean_permutation_test(
    features: np.ndarray,
    n_baseline: int,
    statistic: MeanStatistic,
    *,
    n_permutations: int,
    alpha: float,
    seed: int,
    center: bool = True,
    max_null_n: int | None = None,
    scale_power: float = 1.0,
    n_categories: int | None = None,
) -> PermutationOutcome:
    """Permutation test of a statistic of the two windows' feature means.

    ``features`` holds the pooled rows, baseline first. With ``n_categories`` it holds one
    category code per row instead, standing for one-hot rows; the window means are then the
    category shares and a relabelling is counted, not multiplied. When the pooled sample has more than
    ``max_null_n`` rows, the null is drawn from a fixed random subsample with the same window
    ratio and rescaled by ``(n_eff_sub / n_eff) ** scale_power``, where ``n_eff`` is
    ``1 / (1/n_b + 1/n_c)`` and the statistic shrinks like ``n_eff ** -scale_power`` under the null
    (1 for squared distances, 0.5 for distances, 0 for standardised statistics). This is the
    large-sample shape of the permutation null, and keeps the cost bounded at any window size.
    """
    n_total = features.shape[0]
    n_current = n_total - n_baseline
    if n_baseline < 1 or n_current < 1:
        raise InputError("both windows need at least one row", field="current")
    if n_categories is not None:
        features = np.asarray(features, dtype=np.int64)
        observed = _statistic_of_codes(features, n_categories, n_baseline, statistic)
    else:
        observed = _statistic_of_labels(features, n_baseline, statistic, center)

    null_rows = null_subsample(n_baseline, n_current, max_null_n, seed)
    null_features = features
    nb_null, nc_null = n_baseline, n_current
    if null_rows is not None:
        nb_null = int(np.count_nonzero(null_rows < n_baseline))
        nc_null = null_rows.size - nb_null
        null_features = features[null_rows]

    if n_categories is not None:
        null = _null_statistics_of_codes(
            null_features, n_categories, nb_null, nc_null, statistic, n_permutations, seed
        )
    else:
        null = _null_statistics(
            null_features, nb_null, nc_null, statistic, n_permutations, seed, center
        )
    if null_rows is not None:
        null = null * null_scale(n_baseline, n_current, nb_null, nc_null, scale_power)
    return PermutationOutcome(
        observed=observed,
        null=null,
        p_value=permutation_p_value(observed, null),
        threshold=critical_value(null, alpha),
        n_permutations=n_permutations,
        null_sample=None if null_rows is None else int(null_rows.size),
    )


def null_subsample(
    n_baseline: int, n_current: int, max_null_n: int | None, seed: int
) -> np.ndarray | None:
    """Pooled-row indices of the subsample a large pair of windows draws its null from.

    None when the windows have at most ``max_null_n`` rows together. The subsample keeps the
    windows' ratio and depends only on the sizes and the seed, so detectors with the same seed
    permute the same rows and their nulls stay joint (see :class:`~modelwarden.drift.suite.DriftSuite`).
    """
    n_total = n_baseline + n_current
    if max_null_n is None or n_total <= max_null_n:
        return None
    rng = np.random.default_rng([seed, 0x0B5])
    nb_null = max(1, round(max_null_n * n_baseline / n_total))
    nc_null = max(1, max_null_n - nb_null)
    return np.concatenate(
        [
            np.sort(rng.choice(n_baseline, nb_null, replace=False)),
            n_baseline + np.sort(rng.choice(n_current, nc_null, replace=False)),
        ]
    )


def null_scale(
    n_baseline: int, n_current: int, nb_null: int, nc_null: int, scale_power: float
) -> float:
    """Factor from a subsample's null to the full windows' (``(n_eff_sub / n_eff) ** power``)."""
    n_eff = 1.0 / (1.0 / n_baseline + 1.0 / n_current)
    n_eff_sub = 1.0 / (1.0 / nb_null + 1.0 / nc_null)
    return float((n_eff_sub / n_eff) ** scale_power)


def _centered(features: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray]:
    # Centering first keeps float32 sums of tens of thousands of rows accurate.
    offset = features.mean(axis=0, dtype=np.float64) if center else np.zeros(features.shape[1])
    if center:
        features = features - offset.astype(features.dtype)
    return features, offset


def _statistic_of_labels(
    features: np.ndarray, n_baseline: int, statistic: MeanStatistic, center: bool
) -> float:
    f, offset = _centered(features, center)
    n_current = f.shape[0] - n_baseline
    mean_b = f[:n_baseline].sum(axis=0, dtype=np.float64) / n_baseline + offset
    mean_c = f[n_baseline:].sum(axis=0, dtype=np.float64) / n_current + offset
    return float(statistic(mean_b[None, :], mean_c[None, :], n_baseline, n_current)[0])


def _statistic_of_codes(
    codes: np.ndarray, k: int, n_baseline: int, statistic: MeanStatistic
) -> float:
    n_current = codes.size - n_baseline
    share_b = np.bincount(codes[:n_baseline], minlength=k) / n_baseline
    share_c = np.bincount(codes[n_baseline:], minlength=k) / n_current
    return float(statistic(share_b[None, :], share_c[None, :], n_baseline, n_current)[0])


def _null_statistics_of_codes(
    codes: np.ndarray,
    k: int,
    n_baseline: int,
    n_current: int,
    statistic: MeanStatistic,
    n_permutations: int,
    seed: int,
) -> np.ndarray:
    total = np.bincount(codes, minlength=k).astype(np.float64)
    out = np.empty(n_permutations, dtype=np.float64)
    done = 0
    for idx in Relabeller(n_baseline, n_current, n_permutations, seed).chunks(1024):
        b = idx.shape[0]
        flat = (np.arange(b)[:, None] * k + codes[idx]).ravel()
        counts_c = np.bincount(flat, minlength=b * k).reshape(b, k).astype(np.float64)
        out[done : done + b] = statistic(
            (total - counts_c) / n_baseline, counts_c / n_current, n_baseline, n_current
        )
        done += b
    return out


def _null_statistics(
    features: np.ndarray,
    n_baseline: int,
    n_current: int,
    statistic: MeanStatistic,
    n_permutations: int,
    seed: int,
    center: bool,
) -> np.ndarray:
    f, offset = _centered(features, center)
    n_total = f.shape[0]
    total = f.sum(axis=0, dtype=np.float64)
    itemsize = f.dtype.itemsize
    chunk = max(1, min(n_permutations, CHUNK_BYTES // (n_total * itemsize)))
    out = np.empty(n_permutations, dtype=np.float64)
    done = 0
    for idx in Relabeller(n_baseline, n_current, n_permutations, seed).chunks(chunk):
        b = idx.shape[0]
        labels = np.zeros((b, n_total), dtype=f.dtype)
        labels[np.arange(b)[:, None], idx] = 1
        sums_c = (labels @ f).astype(np.float64)
        mean_c = sums_c / n_current + offset
        mean_b = (total - sums_c) / n_baseline + offset
        out[done : done + b] = statistic(mean_b, mean_c, n_baseline, n_current)
        done += b
    return out


CORRECTIONS: dict[str, Callable[[npt.ArrayLike], np.ndarray]] = {
    "holm": holm,
    "bh": benjamini_hochberg,
}


# Above this many pooled values the features are computed in float32: BLAS runs twice as fast and
# the memory halves, while the centred sums stay accurate to far below any drift worth reporting.
FLOAT32_ABOVE = 1_000_000


def work_dtype(n_rows: int, n_cols: int) -> type[np.floating]:
    return np.float32 if n_rows * n_cols > FLOAT32_ABOVE else np.float64


class PermutationDetector(Detector):
    """A detector calibrated by a permutation test over ``baseline ∪ current``.

    ``min_effect`` is a floor on the detector's effect size: a window is reported as drifted
    only when the test is significant *and* the effect is at least this large, so that a tiny
    shift that is significant only because the windows are huge does not alarm.
    """

    effect_name: str = "effect"

    def __init__(
        self,
        *,
        alpha: float = DEFAULT_ALPHA,
        min_n: int = DEFAULT_MIN_N,
        n_permutations: int = DEFAULT_PERMUTATIONS,
        seed: int = 0,
        min_effect: float = 0.0,
        max_null_n: int | None = 20_000,
    ) -> None:
        super().__init__(alpha=alpha, min_n=min_n)
        self.n_permutations = check_positive_int(n_permutations, "n_permutations")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        if not np.isfinite(min_effect) or min_effect < 0:
            raise InputError("min_effect must be a finite number >= 0", field="min_effect")
        self.min_effect = float(min_effect)
        self.max_null_n = (
            None if max_null_n is None else check_positive_int(max_null_n, "max_null_n", 4)
        )
        self.last_outcome: PermutationOutcome | None = None
        """The permutation null of the last ``test``, for combining detectors that share it."""

    def test(self, current: object) -> DriftResult:
        self.last_outcome = None
        return super().test(current)

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "n_permutations": self.n_permutations,
            "seed": self.seed,
            "min_effect": self.min_effect,
            "max_null_n": self.max_null_n,
        }

    def _mean_test(
        self,
        features: np.ndarray,
        n_baseline: int,
        statistic: MeanStatistic,
        *,
        scale_power: float,
        n_categories: int | None = None,
    ) -> PermutationOutcome:
        """:func:`mean_permutation_test` with this detector's permutations, alpha, seed and null
        sample size."""
        return mean_permutation_test(
            features,
            n_baseline,
            statistic,
            n_permutations=self.n_permutations,
            alpha=self.alpha,
            seed=self.seed,
            max_null_n=self.max_null_n,
            scale_power=scale_power,
            n_categories=n_categories,
        )

    def _decide(
        self,
        outcome: PermutationOutcome,
        *,
        score: float,
        effect: float,
        n_baseline: int,
        n_current: int,
        details: dict[str, Any],
    ) -> DriftResult:
        self.last_outcome = outcome
        significant = outcome.p_value <= self.alpha
        material = effect >= self.min_effect
        return self._result(
            drifted=significant and material,
            score=score,
            p_value=outcome.p_value,
            threshold=outcome.threshold,
            n_baseline=n_baseline,
            n_current=n_current,
            details={
                "effect": effect,
                "effect_name": self.effect_name,
                "significant": significant,
                "material": material,
                "null_mean": outcome.null_mean,
                "null_sample": outcome.null_sample,
                **details,
            },
        )


def joint_p_values(observed: np.ndarray, nulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permutation p-values of the observed labelling and of every relabelling, per statistic.

    ``observed[j]`` is statistic j on the real labels and ``nulls[j, b]`` on relabelling b (larger
    means more drift). Each labelling's p-value is its rank among all ``B + 1`` labellings, the
    observed one included, so the two are directly comparable.
    """
    m, b = nulls.shape
    total = b + 1
    p_obs = np.empty(m)
    p_null = np.empty((m, b))
    for j in range(m):
        tol = _TIE_RTOL * max(abs(float(observed[j])), 1e-12)
        obs = float(observed[j]) - tol
        values = np.sort(np.concatenate([[obs], nulls[j]]))
        p_obs[j] = (1 + np.count_nonzero(nulls[j] >= obs)) / total
        p_null[j] = (total - np.searchsorted(values, nulls[j], side="left")) / total
    return p_obs, p_null


def weighted_step_down(
    p_values: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    joint: np.ndarray | None = None,
    joint_members: Sequence[int] = (),
) -> np.ndarray:
    """Weighted Holm, with the joint permutation null where members share one.

    Members are tested in order of ``p / w``. At each step the remaining members' intersection
    hypothesis is rejected at ``c = p / w`` with probability at most
    ``P(min over shared members of P_j / w_j <= c) + c * (weight of the other members)``: the
    first term is read off the joint permutation null ``joint`` (one row of per-relabelling
    p-values per index in ``joint_members``, as from :func:`joint_p_values`), the second is
    Bonferroni's bound. With no shared null this is weighted Holm; with one shared null and
    equal weights it is the Westfall-Young step-down minP (Westfall & Young, 1993), which,
    unlike Holm, does not pay for members that are strongly correlated. Family-wise error is
    controlled under any dependence between the shared and the other members.
    """
    p = np.asarray(p_values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.shape != w.shape or (w <= 0).any():
        raise InputError("one positive weight per p-value is required", field="weights")
    w = w / w.sum()
    members = list(joint_members)
    in_joint = np.zeros(p.size, dtype=bool)
    in_joint[members] = True
    if joint is not None:
        # Column 0 is the observed labelling, so the null counts include it.
        rows = np.concatenate([p[members][:, None], joint], axis=1) / w[members][:, None]
    q = p / w
    order = np.argsort(q, kind="stable")
    adjusted = np.empty(p.size)
    running = 0.0
    for step, j in enumerate(order):
        remaining = order[step:]
        c = q[j] * (1 + 1e-12)
        bound = c * float(w[remaining[~in_joint[remaining]]].sum())
        shared = [members.index(int(i)) for i in remaining if in_joint[i]]
        if shared and joint is not None:
            smallest = rows[shared].min(axis=0)
            bound += float(np.count_nonzero(smallest <= c)) / rows.shape[1]
        running = max(running, min(bound, 1.0))
        adjusted[j] = running
    return adjusted


def westfall_young(observed: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    """Step-down minP adjusted p-values for statistics computed on the *same* relabellings."""
    p_obs, p_null = joint_p_values(observed, nulls)
    m = p_obs.size
    return weighted_step_down(p_obs, np.ones(m), joint=p_null, joint_members=range(m))
