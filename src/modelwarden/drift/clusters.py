"""Topic-share drift: clusters of the pooled windows, then a test of the cluster shares.

When users start asking more about one topic, every vector still looks like a normal prompt and
the mean barely moves; what changes is how much traffic each region of embedding space gets.
Counting rows per cluster turns that into a 2 x K table, and a test on the table is about as
powerful as any test can be for a change of mixture weights.

The clusters are fitted on a random subsample of baseline ∪ current that ignores which window a
row came from. Under no drift the windows are exchangeable and so is the fitted partition, so the
permutation test stays exact; fitting on the baseline alone would give the baseline rows a
partition tailored to them. A topic that exists only in the current window also gets a cluster
of its own this way, instead of being folded into its nearest baseline topic.

The partition comes from Ward's method on at most ``select_sample`` rows, cut at the number of
clusters with the best silhouette (chosen on the same window-blind subsample), then refined by
Lloyd's iterations. Random k-means++ seeding was tried first: in a few hundred dimensions it
regularly puts two seeds in one topic and merges two others, and the test loses a third of its
power when that happens.

Blind spots: a change inside a cluster (same topics, different wording, a shifted style) does not
move the shares, and a new topic with only a handful of rows in the subsample can be merged
into its nearest neighbour by the silhouette choice; the MMD, centroid and classifier members
cover those, and :func:`modelwarden.drift.explain_drift` lists the most novel prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from modelwarden.drift.base import DriftResult, check_positive_int
from modelwarden.drift.calibration import PermutationDetector
from modelwarden.drift.distance import pooled
from modelwarden.errors import InputError

Statistic = Literal["growth", "maxz", "chi2"]


@dataclass(frozen=True)
class KMeansFit:
    centres: np.ndarray
    inertia: float
    n_iter: int

    def assign(self, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Index of the nearest centre for every row of ``x``."""
        c = self.centres.astype(x.dtype, copy=False)
        cc = np.einsum("ij,ij->i", c, c)
        out = np.empty(x.shape[0], dtype=np.int64)
        for start in range(0, x.shape[0], chunk):
            block = x[start : start + chunk]
            out[start : start + chunk] = np.argmin(cc[None, :] - 2.0 * (block @ c.T), axis=1)
        return out


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_init: int = 3,
    max_iter: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    init: np.ndarray | None = None,
) -> KMeansFit:
    """Lloyd's k-means from ``init``, or from greedy k-means++ seeds (best of ``n_init`` runs)."""
    x = np.asarray(x, dtype=np.float64)
    if init is not None:
        k, n_init = init.shape[0], 1
    k = max(1, min(k, x.shape[0]))
    rng = np.random.default_rng([seed, 0xC1])
    xx = np.einsum("ij,ij->i", x, x)
    rows = np.arange(x.shape[0])
    best: KMeansFit | None = None
    for _ in range(n_init):
        centres = (
            np.array(init, dtype=np.float64)
            if init is not None
            else _greedy_kmeans_plus_plus(x, xx, k, rng)
        )
        prev = np.inf
        inertia = np.inf
        n_iter = 0
        for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
            cc = np.einsum("ij,ij->i", centres, centres)
            d2 = np.maximum(xx[:, None] - 2.0 * (x @ centres.T) + cc[None, :], 0.0)
            labels = np.argmin(d2, axis=1)
            closest = d2[rows, labels]
            inertia = float(closest.sum())
            onehot = np.zeros((x.shape[0], k))
            onehot[rows, labels] = 1.0
            counts = onehot.sum(axis=0)
            sums = onehot.T @ x
            empty = counts == 0
            centres = np.where(empty[:, None], centres, sums / np.maximum(counts, 1)[:, None])
            if empty.any():
                # An empty cluster restarts at the rows worst served by the others.
                far = np.argsort(closest)[::-1][: int(empty.sum())]
                centres[empty] = x[far]
            elif prev - inertia <= tol * max(prev, 1e-12):
                break
            prev = inertia
        fit = KMeansFit(centres=centres, inertia=inertia, n_iter=n_iter)
        if best is None or fit.inertia < best.inertia:
            best = fit
    assert best is not None
    return best


def _greedy_kmeans_plus_plus(
    x: np.ndarray, xx: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """k-means++ seeding that keeps the best of a few sampled candidates at each step.

    Plain k-means++ often puts two seeds in one well-separated cluster, a local optimum Lloyd
    never leaves; trying ``2 + log k`` candidates per step (as scikit-learn does) avoids most.
    """
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = np.maximum(xx - 2.0 * (x @ centres[0]) + centres[0] @ centres[0], 0.0)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:
            centres[i:] = x[rng.integers(n, size=k - i)]
            break
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        cx = x[cand]
        d2 = np.maximum(
            xx[None, :] - 2.0 * (cx @ x.T) + np.einsum("ij,ij->i", cx, cx)[:, None], 0.0
        )
        pots = np.minimum(closest[None, :], d2)
        j = int(np.argmin(pots.sum(axis=1)))
        centres[i] = cx[j]
        closest = pots[j]
    return centres


def pairwise_distances(x: np.ndarray) -> np.ndarray:
    xx = np.einsum("ij,ij->i", x, x)
    return np.sqrt(np.maximum(xx[:, None] + xx[None, :] - 2.0 * (x @ x.T), 0.0))


def silhouette(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Rousseeuw, 1987) from a distance matrix; 0 for one cluster."""
    ks, own = np.unique(labels, return_inverse=True)
    if ks.size < 2:
        return 0.0
    n = labels.size
    onehot = np.zeros((n, ks.size))
    onehot[np.arange(n), own] = 1.0
    sizes = onehot.sum(axis=0)
    sum_to = distances @ onehot
    own_size = sizes[own]
    a = sum_to[np.arange(n), own] / np.maximum(own_size - 1, 1)
    other = sum_to / sizes[None, :]
    other[np.arange(n), own] = np.inf
    b = other.min(axis=1)
    s = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


def ward_tree(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ward linkage of the rows of ``x`` and their pairwise distance matrix."""
    distances = pairwise_distances(x)
    condensed = distances[np.triu_indices(x.shape[0], k=1)]
    return linkage(condensed, method="ward"), distances


def ward_labels(tree: np.ndarray, k: int) -> np.ndarray:
    """Labels 0..k'-1 of the Ward tree cut into at most ``k`` clusters."""
    _, labels = np.unique(fcluster(tree, k, criterion="maxclust"), return_inverse=True)
    return labels


def choose_clusters(
    x: np.ndarray, candidates: tuple[int, ...]
) -> tuple[int, np.ndarray, dict[int, float]]:
    """The candidate k whose Ward partition of ``x`` has the best silhouette.

    Returns k, the Ward labels at that k, and every candidate's silhouette. Ward's tree gives
    every k from one O(n²) pass and, unlike random seeding, does not put two seeds in one
    well-separated topic, a local optimum k-means cannot leave in high dimensions.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 3:
        return 1, np.zeros(x.shape[0], dtype=np.int64), {}
    tree, distances = ward_tree(x)
    scores: dict[int, float] = {}
    labels_by_k: dict[int, np.ndarray] = {}
    for k in candidates:
        if k >= x.shape[0]:
            continue
        labels = ward_labels(tree, k)
        labels_by_k[k] = labels
        scores[k] = silhouette(distances, labels)
    if not scores:
        return 1, np.zeros(x.shape[0], dtype=np.int64), scores
    best = max(scores, key=lambda k: (round(scores[k], 6), -k))
    return best, labels_by_k[best], scores


def _share_z(mean_b: np.ndarray, mean_c: np.ndarray, n_b: int, n_c: int) -> np.ndarray:
    """Two-proportion z of every cluster's share, current against baseline (pooled variance)."""
    p = (n_b * mean_b + n_c * mean_c) / (n_b + n_c)
    var = p * (1.0 - p) * (1.0 / n_b + 1.0 / n_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (mean_c - mean_b) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)


def _max_growth_z(mean_b: np.ndarray, mean_c: np.ndarray, n_b: int, n_c: int) -> np.ndarray:
    return _share_z(mean_b, mean_c, n_b, n_c).max(axis=1)


def _max_abs_z(mean_b: np.ndarray, mean_c: np.ndarray, n_b: int, n_c: int) -> np.ndarray:
    return np.abs(_share_z(mean_b, mean_c, n_b, n_c)).max(axis=1)


def _chi2(mean_b: np.ndarray, mean_c: np.ndarray, n_b: int, n_c: int) -> np.ndarray:
    p = (n_b * mean_b + n_c * mean_c) / (n_b + n_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0, (mean_c - mean_b) ** 2 / p, 0.0)
    return terms.sum(axis=1) * (n_b * n_c / (n_b + n_c))


_STATISTICS = {"growth": _max_growth_z, "maxz": _max_abs_z, "chi2": _chi2}

DEFAULT_CANDIDATES = tuple(range(2, 21))


class ClusterShareDetector(PermutationDetector):
    """Test of the share of traffic per cluster, calibrated by permutation.

    ``statistic="growth"`` (default) is the largest standardised *gain* of one cluster's share:
    a topic that appears or grows is what calls for new training data, and asking only about
    gains halves the multiplicity a two-sided test pays, which is worth several points of power
    on a topic going from 10% to 15% of traffic. A topic that fades shows up as a change of
    distribution in the MMD and centroid members of the suite; ``"maxz"`` (largest change either
    way) and ``"chi2"`` (Pearson's chi-square of the 2 x K table, better when many clusters move
    a little) are the two-sided alternatives. The effect size is the largest gain of one
    cluster's share (0.05 = five points of traffic); the total variation distance between the
    windows' shares is in the details.
    """

    method = "clusters"
    effect_name = "max_share_gain"

    def __init__(
        self,
        *,
        n_clusters: int | None = None,
        candidates: tuple[int, ...] = DEFAULT_CANDIDATES,
        statistic: Statistic = "growth",
        fit_sample: int = 2000,
        select_sample: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if n_clusters is not None:
            n_clusters = check_positive_int(n_clusters, "n_clusters", minimum=2)
        if not candidates or any(int(k) < 2 for k in candidates):
            raise InputError("candidates must be cluster counts >= 2", field="candidates")
        if statistic not in _STATISTICS:
            raise InputError(f"statistic must be one of {sorted(_STATISTICS)}", field="statistic")
        self.n_clusters = n_clusters
        self.candidates = tuple(sorted({int(k) for k in candidates}))
        self.statistic: Statistic = statistic
        self.fit_sample = check_positive_int(fit_sample, "fit_sample", minimum=2)
        self.select_sample = check_positive_int(select_sample, "select_sample", minimum=2)

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "n_clusters": self.n_clusters,
            "candidates": list(self.candidates),
            "statistic": self.statistic,
            "fit_sample": self.fit_sample,
            "select_sample": self.select_sample,
        }

    def partition(self, x: np.ndarray) -> tuple[KMeansFit, np.ndarray, dict[int, float]]:
        """Clusters fitted on a window-blind subsample of the pooled rows ``x``; labels of all.

        Ward's method on up to ``select_sample`` rows picks k (by silhouette) and the starting
        centres; Lloyd's iterations on up to ``fit_sample`` rows refine them.
        """
        rng = np.random.default_rng([self.seed, 0xC5])
        n = x.shape[0]
        fit_idx = (
            np.arange(n)
            if n <= self.fit_sample
            else np.sort(rng.choice(n, self.fit_sample, replace=False))
        )
        fit_rows = np.asarray(x[fit_idx], dtype=np.float64)
        sel = (
            fit_rows
            if fit_rows.shape[0] <= self.select_sample
            else fit_rows[np.sort(rng.choice(fit_rows.shape[0], self.select_sample, replace=False))]
        )
        if self.n_clusters is None:
            _, sel_labels, scores = choose_clusters(sel, self.candidates)
        else:
            scores = {}
            sel_labels = (
                ward_labels(ward_tree(sel)[0], self.n_clusters)
                if sel.shape[0] > 2
                else np.zeros(sel.shape[0], dtype=np.int64)
            )
        k = int(sel_labels.max()) + 1
        onehot = np.zeros((sel.shape[0], k))
        onehot[np.arange(sel.shape[0]), sel_labels] = 1.0
        init = (onehot.T @ sel) / onehot.sum(axis=0)[:, None]
        km = kmeans(fit_rows, k, init=init, seed=self.seed)
        return km, km.assign(x), scores

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        x = pooled(baseline, current)
        n_b, n_c = baseline.shape[0], current.shape[0]
        km, labels, scores = self.partition(x)
        k = km.centres.shape[0]
        outcome = self._mean_test(
            labels,
            n_b,
            _STATISTICS[self.statistic],
            scale_power=0.0,
            n_categories=k,
        )
        share_b = np.bincount(labels[:n_b], minlength=k) / n_b
        share_c = np.bincount(labels[n_b:], minlength=k) / n_c
        z = _share_z(share_b[None, :], share_c[None, :], n_b, n_c)[0]
        tv = 0.5 * float(np.abs(share_c - share_b).sum())
        order = np.argsort(-np.abs(z), kind="stable")
        table = [
            {
                "cluster": int(i),
                "share_baseline": float(share_b[i]),
                "share_current": float(share_c[i]),
                "z": float(z[i]),
            }
            for i in order
        ]
        return self._decide(
            outcome,
            score=outcome.observed,
            effect=float(np.max(share_c - share_b)),
            n_baseline=n_b,
            n_current=n_c,
            details={
                "statistic": self.statistic,
                "share_tv": tv,
                "n_clusters": k,
                "silhouette": {str(c): s for c, s in scores.items()},
                "clusters": table,
            },
        )
