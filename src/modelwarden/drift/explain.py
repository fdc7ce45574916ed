"""What drifted: which topics of current prompts are new or grew, in words a person can check.

The clusters are the ones the ``clusters`` detector tests: k-means fitted on a subsample of
baseline ∪ current drawn without looking at which window a row came from, with the number of
clusters chosen by silhouette. Fitting on both windows lets a topic that only exists now get a
cluster of its own (fitted on the baseline alone it would be split among the old topics it is
nearest to), and measuring both windows' shares on one partition keeps the comparison fair. The
explanation describes; the decision to alert stays with the calibrated tests, so this choice
cannot add false alarms.

Per cluster it reports the share of each window, a two-proportion z, the current prompts closest
to the cluster centre and key terms by class-based TF-IDF (the cluster's texts against all the
others). Separately it lists the most novel current prompts: those farthest from their nearest
baseline neighbour, which catches a new request type too rare to form a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

from modelwarden.drift.base import as_embeddings, check_same_dim, jsonable
from modelwarden.drift.calibration import work_dtype
from modelwarden.drift.clusters import DEFAULT_CANDIDATES, ClusterShareDetector
from modelwarden.drift.distance import pooled
from modelwarden.errors import InputError

ClusterStatus = Literal["new", "grew", "shrank", "stable"]

# A cluster counts as new when it is at least this many times more common now than before.
NEW_RATIO = 4.0


@dataclass(frozen=True)
class Example:
    index: int
    """Row in its window."""
    window: Literal["baseline", "current"]
    distance: float
    text: str | None = None


@dataclass(frozen=True)
class ClusterChange:
    cluster: int
    status: ClusterStatus
    share_baseline: float
    share_current: float
    change: float
    z: float
    count_baseline: int
    count_current: int
    representatives: list[Example] = field(default_factory=list)
    key_terms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NovelPrompt:
    index: int
    """Row in the current window."""
    nn_distance: float
    """Distance to the nearest baseline vector."""
    text: str | None = None


@dataclass(frozen=True)
class DriftExplanation:
    n_baseline: int
    n_current: int
    n_clusters: int
    clusters: list[ClusterChange]
    """Every cluster, largest gain of share first."""
    novel: list[NovelPrompt]
    median_nn_distance: float
    """Median over current rows of the distance to the nearest baseline vector, for scale."""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def emerging(self) -> list[ClusterChange]:
        """Clusters that are new or grew significantly, largest gain first."""
        return [c for c in self.clusters if c.status in ("new", "grew")]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["emerging"] = [c.cluster for c in self.emerging]
        return jsonable(out)


def explain_drift(
    baseline: object,
    current: object,
    *,
    texts_current: Sequence[str] | None = None,
    texts_baseline: Sequence[str] | None = None,
    n_clusters: int | None = None,
    candidates: tuple[int, ...] = DEFAULT_CANDIDATES,
    alpha: float = 0.05,
    n_representatives: int = 3,
    n_terms: int = 8,
    n_novel: int = 5,
    max_baseline_nn: int = 20_000,
    seed: int = 0,
) -> DriftExplanation:
    """Explain the difference between two windows of embeddings by topic clusters.

    ``texts_current`` / ``texts_baseline`` are the prompts behind the vectors (optional, same
    order); without them the examples carry row indices only and no key terms are computed.
    A cluster "grew" or "shrank" when its z passes a Bonferroni bound at ``alpha`` over clusters.
    """
    b = as_embeddings(baseline, "baseline")
    c = as_embeddings(current, "current")
    check_same_dim(b, c)
    tc = _texts(texts_current, c.shape[0], "texts_current")
    tb = _texts(texts_baseline, b.shape[0], "texts_baseline")
    n_b, n_c = b.shape[0], c.shape[0]
    x = pooled(b, c)
    detector = ClusterShareDetector(
        n_clusters=n_clusters, candidates=candidates, seed=seed, alpha=alpha
    )
    km, labels, _ = detector.partition(x)
    k = km.centres.shape[0]
    lab_b, lab_c = labels[:n_b], labels[n_b:]
    count_b = np.bincount(lab_b, minlength=k)
    count_c = np.bincount(lab_c, minlength=k)
    share_b, share_c = count_b / n_b, count_c / n_c
    p = (count_b + count_c) / (n_b + n_c)
    var = p * (1 - p) * (1 / n_b + 1 / n_c)
    z = np.where(var > 0, (share_c - share_b) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    z_crit = float(stats.norm.isf(alpha / (2 * k)))

    centres = km.centres.astype(x.dtype)
    dist_to_centre = np.linalg.norm(x - centres[labels], axis=1)
    terms = _key_terms(labels, tb, tc, n_b, k, n_terms) if (tb or tc) else [[] for _ in range(k)]

    changes: list[ClusterChange] = []
    for j in range(k):
        status: ClusterStatus = "stable"
        if count_c[j] >= 3 and share_c[j] >= NEW_RATIO * share_b[j] and z[j] >= z_crit:
            status = "new"
        elif z[j] >= z_crit:
            status = "grew"
        elif z[j] <= -z_crit:
            status = "shrank"
        changes.append(
            ClusterChange(
                cluster=j,
                status=status,
                share_baseline=float(share_b[j]),
                share_current=float(share_c[j]),
                change=float(share_c[j] - share_b[j]),
                z=float(z[j]),
                count_baseline=int(count_b[j]),
                count_current=int(count_c[j]),
                representatives=_representatives(
                    j, labels, dist_to_centre, n_b, tb, tc, n_representatives
                ),
                key_terms=terms[j],
            )
        )
    changes.sort(key=lambda ch: (-ch.change, ch.cluster))

    novel, median_nn = _novel(b, c, tc, n_novel, max_baseline_nn, seed)
    return DriftExplanation(
        n_baseline=n_b,
        n_current=n_c,
        n_clusters=k,
        clusters=changes,
        novel=novel,
        median_nn_distance=median_nn,
        notes={
            "clusters_fitted_on": "window-blind subsample of baseline and current",
            "z_critical": z_crit,
            "new_ratio": NEW_RATIO,
        },
    )


def _texts(texts: Sequence[str] | None, n: int, name: str) -> list[str] | None:
    if texts is None:
        return None
    out = [str(t) for t in texts]
    if len(out) != n:
        raise InputError(f"{name} has {len(out)} texts for {n} vectors", field=name)
    return out


def _representatives(
    cluster: int,
    labels: np.ndarray,
    dist: np.ndarray,
    n_b: int,
    tb: list[str] | None,
    tc: list[str] | None,
    n: int,
) -> list[Example]:
    members_c = np.flatnonzero(labels[n_b:] == cluster)
    if members_c.size:
        rows, window, texts, offset = members_c, "current", tc, n_b
    else:
        rows, window, texts, offset = np.flatnonzero(labels[:n_b] == cluster), "baseline", tb, 0
    order = rows[np.argsort(dist[rows + offset], kind="stable")][:n]
    return [
        Example(
            index=int(i),
            window=window,  # type: ignore[arg-type]
            distance=float(dist[i + offset]),
            text=None if texts is None else texts[i],
        )
        for i in order
    ]


def _key_terms(
    labels: np.ndarray, tb: list[str] | None, tc: list[str] | None, n_b: int, k: int, n_terms: int
) -> list[list[str]]:
    """Top terms per cluster by class-based TF-IDF (Grootendorst, 2022).

    Each cluster's texts are one document; a term's weight is its frequency in the cluster times
    ``log(1 + A / f_t)``, where ``A`` is the average number of words per cluster and ``f_t`` the
    term's frequency over all clusters, so words common everywhere sink.
    """
    # lazy: scikit-learn's text module is slow to import and only an alert's topics need it
    from sklearn.feature_extraction.text import CountVectorizer

    docs = [[] for _ in range(k)]  # type: list[list[str]]
    if tb is not None:
        for text, lab in zip(tb, labels[:n_b], strict=True):
            docs[lab].append(text)
    if tc is not None:
        for text, lab in zip(tc, labels[n_b:], strict=True):
            docs[lab].append(text)
    joined = [" ".join(d) for d in docs]
    try:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][\w-]+\b")
        counts = vectorizer.fit_transform(joined).toarray().astype(np.float64)
    except ValueError:  # nothing but stop words
        return [[] for _ in range(k)]
    vocab = np.array(vectorizer.get_feature_names_out())
    words_per_cluster = counts.sum(axis=1)
    avg_words = max(float(words_per_cluster.mean()), 1.0)
    term_freq = counts.sum(axis=0)
    tf = counts / np.maximum(words_per_cluster, 1.0)[:, None]
    weights = tf * np.log1p(avg_words / np.maximum(term_freq, 1.0))[None, :]
    out: list[list[str]] = []
    for j in range(k):
        order = np.argsort(-weights[j], kind="stable")
        out.append([str(vocab[t]) for t in order[:n_terms] if counts[j, t] > 0])
    return out


def _novel(
    b: np.ndarray, c: np.ndarray, tc: list[str] | None, n: int, max_baseline: int, seed: int
) -> tuple[list[NovelPrompt], float]:
    rng = np.random.default_rng([seed, 0x2E])
    ref = (
        b if b.shape[0] <= max_baseline else b[rng.choice(b.shape[0], max_baseline, replace=False)]
    )
    dtype = work_dtype(ref.shape[0], ref.shape[1])
    ref = ref.astype(dtype, copy=False)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    nn = np.empty(c.shape[0])
    step = max(1, 2**24 // max(ref.shape[0], 1))
    for start in range(0, c.shape[0], step):
        block = c[start : start + step].astype(dtype, copy=False)
        d2 = np.einsum("ij,ij->i", block, block)[:, None] + ref_sq[None, :] - 2.0 * (block @ ref.T)
        nn[start : start + step] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    top = np.argsort(-nn, kind="stable")[:n]
    return (
        [
            NovelPrompt(index=int(i), nn_distance=float(nn[i]), text=None if tc is None else tc[i])
            for i in top
        ],
        float(np.median(nn)),
    )
