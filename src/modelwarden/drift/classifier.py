"""Domain classifier: can a linear model tell the current window from the baseline?

The model is linear discriminant analysis with Ledoit-Wolf shrinkage towards the diagonal,
cross-fitted over k folds: the class means of each fold's model come from the other folds, and
the fold is scored with it. Unlike the centroid distance, LDA weighs directions by their noise (a
Mahalanobis view), so a small shift along a quiet direction is seen even when loud directions
dominate the distance.

Calibration is by permutation, on the same relabellings as the other permutation detectors. Summing
the folds' Mann-Whitney statistics and using its normal null looks natural but is not valid:
the folds' models share most of their training rows, their held-out AUCs are positively
correlated, and that test raised about twice the nominal false alarms on windows of a hundred
768-d vectors. Refitting per relabelling is cheap because the covariance is estimated from all
rows *without their window labels*: it is the same for every relabelling, and since for LDA
the between-window part of it only rescales the direction, nothing is lost. A relabelling then
changes the class means alone, and the held-out scores' means and spread follow from per-fold
sums and scatter matrices: one matrix product per chunk of relabellings, as for the centroid tests.

The statistic is the held-out separation d' (difference of the windows' mean held-out scores over
their pooled spread), averaged over folds; the held-out AUC of the real labels is reported as the
effect size. Blind spots: a linear score cannot see a change of spread or of topic mix that keeps
the mean.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import linalg, stats
from threadpoolctl import ThreadpoolController

from modelwarden.drift.base import DriftResult, check_positive_int
from modelwarden.drift.calibration import (
    CHUNK_BYTES,
    PermutationDetector,
    PermutationOutcome,
    Relabeller,
    critical_value,
    null_scale,
    null_subsample,
    permutation_p_value,
)
from modelwarden.drift.distance import pooled
from modelwarden.errors import InputError

Solver = Callable[[np.ndarray], np.ndarray]


class ClassifierDetector(PermutationDetector):
    """Cross-fitted shrinkage-LDA domain classifier, calibrated by permutation."""

    method = "classifier"
    effect_name = "auc_excess"

    def __init__(self, *, n_folds: int = 5, shrinkage: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
        if shrinkage is not None and not (0.0 <= shrinkage <= 1.0):
            raise InputError("shrinkage must be in [0, 1] or None (Ledoit-Wolf)", field="shrinkage")
        self.shrinkage = shrinkage

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "n_folds": self.n_folds, "shrinkage": self.shrinkage}

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        n_b, n_c = baseline.shape[0], current.shape[0]
        x = pooled(baseline, current)
        x -= x.mean(axis=0, dtype=np.float64).astype(x.dtype)
        folds = min(self.n_folds, x.shape[0] // 2)
        # Very large windows draw the null from a fixed subsample, as the mean-based detectors
        # do: under the null the held-out d' of any window-blind direction is a standardised
        # mean difference, so it shrinks like n_eff ** -0.5 and the subsample's null is rescaled
        # by that. The covariance estimated on the subsample is window-blind too, so the model
        # on all rows reuses it rather than estimating its own.
        rows = null_subsample(n_b, n_c, self.max_null_n, self.seed)
        if rows is None:
            model = null_model = _CrossFit(x, folds, self.shrinkage, self.seed)
            nb_null, nc_null = n_b, n_c
        else:
            nb_null = int(np.count_nonzero(rows < n_b))
            nc_null = rows.size - nb_null
            sub = x[rows]
            sub -= sub.mean(axis=0, dtype=np.float64).astype(sub.dtype)
            null_model = _CrossFit(
                sub, min(self.n_folds, sub.shape[0] // 2), self.shrinkage, self.seed
            )
            model = _CrossFit(
                x, folds, self.shrinkage, self.seed, solver=(null_model.solve, null_model.gammas[0])
            )
        observed, auc = model.statistics(np.arange(n_b, x.shape[0])[None, :], with_auc=True)
        n_null = nb_null + nc_null
        null = np.empty(self.n_permutations)
        chunk = max(1, min(self.n_permutations, CHUNK_BYTES // (n_null * x.itemsize)))
        done = 0
        for idx in Relabeller(nb_null, nc_null, self.n_permutations, self.seed).chunks(chunk):
            null[done : done + idx.shape[0]] = null_model.statistics(idx)[0]
            done += idx.shape[0]
        if rows is not None:
            null *= null_scale(n_b, n_c, nb_null, nc_null, 0.5)
        outcome = PermutationOutcome(
            observed=float(observed[0]),
            null=null,
            p_value=permutation_p_value(float(observed[0]), null),
            threshold=critical_value(null, self.alpha),
            n_permutations=self.n_permutations,
            null_sample=None if rows is None else int(rows.size),
        )
        return self._decide(
            outcome,
            score=outcome.observed,
            effect=auc - 0.5,
            n_baseline=n_b,
            n_current=n_c,
            details={
                "auc": auc,
                "n_folds": model.n_folds,
                "shrinkage_used": model.gammas,
                "score_is": "held-out d' averaged over folds",
            },
        )


class _CrossFit:
    """Fold models that share one window-blind covariance and differ in their class means."""

    def __init__(
        self,
        x: np.ndarray,
        n_folds: int,
        shrinkage: float | None,
        seed: int,
        solver: tuple[Solver, float] | None = None,
    ) -> None:
        """``solver``: a covariance solve (and its shrinkage) to reuse; the model then scores
        rows directly, which is cheaper than scatter matrices for a few relabellings."""
        n, d = x.shape
        rng = np.random.default_rng([seed, 0xF01D])
        # Folds ignore the windows, so a relabelling never changes which rows a model saw.
        fold_of = rng.permutation(n) % max(n_folds, 2)
        # Rows are stored fold by fold so that a fold is a slice, not a gather, per chunk.
        order = np.argsort(fold_of, kind="stable")
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n)
        self.x = x[order]
        self.n_folds = int(fold_of.max()) + 1
        bounds = np.searchsorted(fold_of[order], np.arange(self.n_folds + 1))
        self.rows = [slice(int(bounds[f]), int(bounds[f + 1])) for f in range(self.n_folds)]
        self.sums = np.stack([self.x[r].sum(axis=0, dtype=np.float64) for r in self.rows])
        self.sizes = np.array([r.stop - r.start for r in self.rows], dtype=np.float64)
        if solver is not None:
            solver_fn, gamma = solver
            self.by_scatter = False
        elif n >= d:
            self.scatter = np.stack(
                [(self.x[r].T @ self.x[r]).astype(np.float64) for r in self.rows]
            )
            solver_fn, gamma = _primal_solver(self.x, self.scatter.sum(axis=0), shrinkage)
            self.by_scatter = True
        else:
            solver_fn, gamma = _dual_solver(self.x, shrinkage)
            self.by_scatter = False
        self.solve = solver_fn
        self.gammas = [gamma]

    def quadratic(self, fold: int, w: np.ndarray) -> np.ndarray:
        """Sum over the fold's rows of (x · w)², for every column w."""
        # A flag rather than a bound method kept on the instance: that would be a reference
        # cycle, and the arrays of a cycle wait for the garbage collector, which counts objects,
        # not bytes (windows of 60,000 rows kept hundreds of MB alive per test).
        if self.by_scatter:
            return self._scatter_quadratic(fold, w)
        return self._row_quadratic(fold, w)

    def _scatter_quadratic(self, fold: int, w: np.ndarray) -> np.ndarray:
        """Sum over the fold's rows of (x · w)², for every column w."""
        return np.einsum("ij,ij->j", w, self.scatter[fold] @ w)

    def _row_quadratic(self, fold: int, w: np.ndarray) -> np.ndarray:
        scores = self.x[self.rows[fold]] @ w.astype(self.x.dtype)
        return np.einsum("ij,ij->j", scores, scores, dtype=np.float64)

    def statistics(
        self, current_idx: np.ndarray, *, with_auc: bool = False
    ) -> tuple[np.ndarray, float]:
        """Held-out d' averaged over folds, one per relabelling (row of ``current_idx``)."""
        b, n = current_idx.shape[0], self.x.shape[0]
        labels = np.zeros((b, n), dtype=self.x.dtype)
        labels[np.arange(b)[:, None], self.position[current_idx]] = 1
        # Per fold and relabelling: the sum and count of the rows labelled current.
        cur_sums = [(labels[:, r] @ self.x[r]).astype(np.float64) for r in self.rows]
        cur_counts = [labels[:, r].sum(axis=1, dtype=np.float64) for r in self.rows]
        all_cur_sums = np.sum(cur_sums, axis=0)
        all_cur_counts = np.sum(cur_counts, axis=0)
        total = np.zeros(b)
        used = np.zeros(b)
        u_sum = pairs = 0.0
        for f, rows in enumerate(self.rows):
            size = self.sizes[f]
            train_c = all_cur_counts - cur_counts[f]
            train_b = (self.sizes.sum() - size) - train_c
            sum_c = all_cur_sums - cur_sums[f]
            sum_b = (self.sums.sum(axis=0) - self.sums[f]) - sum_c
            ok = (train_c > 0) & (train_b > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                diff = sum_c / train_c[:, None] - sum_b / train_b[:, None]
            diff[~ok] = 0.0
            w = self.solve(diff.T)  # (d, b): one LDA direction per relabelling
            # Held-out scores x·w: their sums over current rows and over the fold, and the sum
            # of their squares, without forming the scores.
            h_c = cur_counts[f]
            h_b = size - h_c
            score_c = np.einsum("ij,ji->i", cur_sums[f], w)
            score_all = self.sums[f] @ w
            square = self.quadratic(f, w)
            good = ok & (h_c > 0) & (h_b > 0) & (size > 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                m_c = score_c / h_c
                m_b = (score_all - score_c) / h_b
                within = (square - h_c * m_c**2 - h_b * m_b**2) / (size - 2)
                d_prime = (m_c - m_b) / np.sqrt(within)
            good &= np.isfinite(d_prime) & (within > 0)
            total += np.where(good, d_prime, 0.0)
            used += good
            if with_auc and good[0]:
                scores = self.x[rows] @ w[:, 0].astype(self.x.dtype)
                u, p = _mann_whitney(scores, labels[0, rows] > 0)
                u_sum += u
                pairs += p
        stat = np.where(used > 0, total / np.maximum(used, 1), 0.0)
        return stat, (u_sum / pairs if pairs else 0.5)


def _ledoit_wolf(frob: float, residual_norms: np.ndarray, d: int) -> float:
    """Ledoit-Wolf shrinkage of a correlation matrix towards the identity.

    ``frob`` is the squared Frobenius norm of the correlation estimate and ``residual_norms``
    the squared norms of the standardised rows; this is scikit-learn's
    ``ledoit_wolf_shrinkage`` (whose target's scale is 1 here) without the data matrix.
    """
    n = residual_norms.size
    delta = frob - d
    if delta <= 0 or n == 0:
        return 1.0
    beta = (float(np.sum(residual_norms**2)) / n - frob) / n
    return float(np.clip(beta / delta, 0.0, 1.0))


def _scales(variances: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.maximum(variances, 0.0))
    return np.where(sd > 0, sd, 1.0)


# Shrinkage goes towards the diagonal (each dimension keeps its own variance; only the
# correlations shrink). Shrinking towards a multiple of the identity, the textbook target,
# lifts every quiet dimension to the average variance and blinds the classifier to exactly the
# shifts it is in the suite to see.


def _primal_solver(
    x_train: np.ndarray, gram: np.ndarray, shrinkage: float | None
) -> tuple[Solver, float]:
    """``v -> (shrunk covariance of x_train)⁻¹ v``; ``gram`` is ``x_trainᵀ x_train``."""
    n, d = x_train.shape
    mean = x_train.mean(axis=0, dtype=np.float64)
    cov = gram / n - np.outer(mean, mean)
    scale = _scales(np.diag(cov).copy())
    corr = cov / np.outer(scale, scale)
    if shrinkage is None:
        z = (x_train - mean.astype(x_train.dtype)) / scale.astype(x_train.dtype)
        gamma = _ledoit_wolf(
            float(np.sum(corr * corr)), np.einsum("ij,ij->i", z, z, dtype=np.float64), d
        )
    else:
        gamma = float(shrinkage)
    reg = (1.0 - gamma) * corr
    reg[np.diag_indices(d)] += max(gamma, 1e-9)
    # One explicit inverse, then plain products: a triangular solve per chunk of relabellings
    # is many times slower for the small right-hand sides each chunk has.
    inverse = _spd_inverse(reg) / np.outer(scale, scale)
    return (lambda v: inverse @ v), gamma


def _dual_solver(x_train: np.ndarray, shrinkage: float | None) -> tuple[Solver, float]:
    """The same solve through the n x n Gram matrix, for fewer rows than dimensions (Woodbury)."""
    n, d = x_train.shape
    xc = x_train.astype(np.float64) - x_train.mean(axis=0, dtype=np.float64)
    scale = _scales(np.mean(xc * xc, axis=0))
    xs = xc / scale
    k = xs @ xs.T
    gamma = (
        _ledoit_wolf(float(np.sum(k * k)) / n**2, np.diag(k).copy(), d)
        if shrinkage is None
        else float(shrinkage)
    )
    # (a I + b Xᵀ X)⁻¹ v = (v - Xᵀ (a/b I + X Xᵀ)⁻¹ X v) / a, in standardised coordinates
    a = max(gamma, 1e-9)
    b = (1.0 - gamma) / n
    if b <= 0:
        return (lambda v: v / (a * scale[:, None] ** 2)), gamma
    inner = k.copy()
    inner[np.diag_indices(n)] += a / b
    inner_inverse = _spd_inverse(inner)

    def solve(v: np.ndarray) -> np.ndarray:
        vs = v / scale[:, None]
        return (vs - xs.T @ (inner_inverse @ (xs @ vs))) / a / scale[:, None]

    return solve, gamma


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    # A factorisation of a few hundred rows gains nothing from threads, and on a busy machine
    # multithreaded LAPACK spends most of its time waiting for the other thread: one Cholesky of
    # a 384 x 384 matrix was measured at 1 ms on one thread and 100-1000 ms on two under load.
    with _single_blas_thread():
        factor = linalg.cho_factor(a, check_finite=False)
        return linalg.cho_solve(factor, np.eye(a.shape[0]), check_finite=False)


@functools.lru_cache(maxsize=1)
def _threadpools() -> Any:
    return ThreadpoolController()


def _single_blas_thread() -> Any:
    try:
        return _threadpools().limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to inspect the libraries
        return contextlib.nullcontext()


def _mann_whitney(scores: np.ndarray, is_current: np.ndarray) -> tuple[float, float]:
    """U of current over baseline scores, and the number of pairs."""
    n_c = int(is_current.sum())
    n_b = scores.size - n_c
    if n_b == 0 or n_c == 0:
        return 0.0, 0.0
    ranks = stats.rankdata(scores)
    return float(ranks[is_current].sum() - n_c * (n_c + 1) / 2.0), float(n_b * n_c)
