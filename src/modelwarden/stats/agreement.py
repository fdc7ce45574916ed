"""Agreement between human reviewers: Krippendorff's alpha, weighted Cohen's kappa, and each
reviewer against the consensus of the others.

Krippendorff's alpha follows "Computing Krippendorff's Alpha-Reliability" (2011) through the
coincidence matrix: every unit with at least two ratings contributes each ordered pair of its
values, weighted 1/(m_u - 1); alpha = 1 - (n - 1) * sum(o_ck * d2_ck) / sum(n_c * n_k * d2_ck).
Missing ratings (NaN or None) are allowed; units with fewer than two ratings do not count.
Levels: ``nominal``, ``ordinal`` (distance by the marginal counts of the values between),
``interval`` (squared difference) and ``ratio``.

Cohen's kappa takes two raters' labels and is scikit-learn's ``cohen_kappa_score`` with missing
ratings left out; ``weights`` ``linear`` or ``quadratic`` weigh a disagreement by the distance
between the two labels' positions in the sorted label list.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelwarden.errors import InputError

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")


def _ratings_matrix(data: Any, name: str = "ratings") -> np.ndarray:
    try:
        try:
            arr = np.asarray(data, dtype=np.float64)
        except TypeError:
            arr = np.array(
                [[np.nan if v is None else v for v in row] for row in data], dtype=np.float64
            )
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be a units x raters matrix of numbers (NaN or None for missing): {exc}",
            field=name,
        ) from exc
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a units x raters matrix, got {arr.ndim} dimensions", field=name
        )
    if np.isinf(arr).any():
        raise InputError(f"{name} contains infinite values", field=name)
    return arr


def coincidence_matrix(
    data: Any, values: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The coincidence matrix ``o`` of a units x raters matrix and the values of its rows."""
    arr = _ratings_matrix(data)
    present = ~np.isnan(arr)
    observed = np.unique(arr[present])
    if values is None:
        domain = observed
    else:
        domain = np.unique(np.asarray(values, dtype=np.float64))
        outside = np.setdiff1d(observed, domain)
        if outside.size:
            raise InputError(
                f"rating {outside[0]:g} is not one of the given values", field="values"
            )
    k = domain.size
    if k == 0:
        return np.zeros((0, 0)), domain
    units, _ = np.nonzero(present)
    idx = np.searchsorted(domain, arr[present])
    counts = np.bincount(units * k + idx, minlength=arr.shape[0] * k).reshape(arr.shape[0], k)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts = counts[pairable].astype(np.float64)
    inv = 1.0 / (m[pairable] - 1.0)
    o = (counts * inv[:, None]).T @ counts
    o -= np.diag((counts * inv[:, None]).sum(axis=0))
    return o, domain


def _distance(level: str, domain: np.ndarray, n_c: np.ndarray) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(domain.size)
    if level == "interval":
        return (domain[:, None] - domain[None, :]) ** 2
    if level == "ratio":
        s = domain[:, None] + domain[None, :]
        d = domain[:, None] - domain[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(s != 0, (d / np.where(s != 0, s, 1.0)) ** 2, 0.0)
        return out
    if level == "ordinal":
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(domain.size), np.arange(domain.size))
        hi = np.maximum.outer(np.arange(domain.size), np.arange(domain.size))
        between = cum[hi] - cum[lo] + n_c[lo]  # n_lo + ... + n_hi
        return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    raise InputError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}", field="level")


def krippendorff_alpha(
    data: Any, level: Level | str = "interval", values: Sequence[float] | None = None
) -> float:
    """Krippendorff's alpha of a units x raters matrix (NaN or None for a missing rating).

    ``values`` optionally lists the allowed values, and every rating is checked against it; values
    nobody used have no count, so they change no distance and alpha stays the same. NaN when
    fewer than two pairable values exist or all are equal (no variation to agree on).
    """
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}", field="level")
    o, domain = coincidence_matrix(data, values)
    n_c = o.sum(axis=1)
    n = float(n_c.sum())
    if n <= 1:
        return float("nan")
    d2 = _distance(level, domain, n_c)
    observed = float((o * d2).sum())
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected == 0.0:
        return float("nan")
    return 1.0 - (n - 1.0) * observed / expected


def cohen_kappa(
    rater_a: Sequence[Any],
    rater_b: Sequence[Any],
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[Any] | None = None,
) -> float:
    """Cohen's kappa of two raters over the same items, unweighted or weighted.

    Items where either rating is missing (None or NaN) are left out. ``labels`` fixes the label
    order (and so the weighted distances); by default the sorted labels either rater used.
    """
    if len(rater_a) != len(rater_b):
        raise InputError(
            f"the raters rated {len(rater_a)} and {len(rater_b)} items", field="rater_b"
        )
    if weights not in (None, "linear", "quadratic"):
        raise InputError(f"unknown weights {weights!r}; use linear or quadratic", field="weights")
    pairs = [
        (x, y) for x, y in zip(rater_a, rater_b, strict=True) if not _missing(x) and not _missing(y)
    ]
    if labels is not None:
        known = set(labels)
        pairs = [(x, y) for x, y in pairs if x in known and y in known]
    if not pairs:
        return float("nan")
    # scikit-learn is imported on first use: it added 0.5 s to importing the statistics
    # (python -X importtime, 2 shared cores under load), which the HTTP server does at start.
    from sklearn.exceptions import UndefinedMetricWarning  # lazy: see above
    from sklearn.metrics import cohen_kappa_score  # lazy: see above

    with warnings.catch_warnings():
        # One label in common: kappa is undefined, and NaN says so.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(
            [x for x, _ in pairs],
            [y for _, y in pairs],
            labels=None if labels is None else list(labels),
            weights=weights,
            replace_undefined_by=float("nan"),
        )
    return float(kappa)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


@dataclass(frozen=True)
class ReviewerAgreement:
    """One reviewer against the consensus of the other reviewers on the same units.

    ``agreement``: fraction of units where the rating equals the consensus; ``alpha``:
    Krippendorff's alpha of the two columns (reviewer, consensus) at the chosen level;
    ``bias``: mean of rating minus consensus and ``mean_abs_deviation`` (not for nominal).
    """

    reviewer: str
    n: int
    agreement: float
    alpha: float
    bias: float
    mean_abs_deviation: float

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in self.__dict__.items()
        }


def _consensus(others: np.ndarray, level: str) -> float:
    vals = others[~np.isnan(others)]
    if vals.size == 0:
        return float("nan")
    if level == "nominal":
        counts = Counter(vals.tolist()).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return float("nan")  # a tie has no consensus
        return float(counts[0][0])
    if level == "ordinal":
        return float(np.median(vals))
    return float(vals.mean())


def reviewer_vs_consensus(
    ratings: Any,
    reviewers: Sequence[str] | None = None,
    level: Level | str = "ordinal",
) -> list[ReviewerAgreement]:
    """Each reviewer (a column of a units x reviewers matrix) against the others' consensus.

    The consensus of a unit leaves the reviewer out: the mode of the others' ratings (nominal;
    a tie gives none), their median (ordinal) or mean (interval, ratio). Units where the reviewer
    gave no rating or no consensus exists are skipped.
    """
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}", field="level")
    arr = _ratings_matrix(ratings)
    n_rev = arr.shape[1]
    names = list(reviewers) if reviewers is not None else [f"r{j + 1}" for j in range(n_rev)]
    if len(names) != n_rev:
        raise InputError(f"{len(names)} reviewer names for {n_rev} columns", field="reviewers")
    out = []
    for j, name in enumerate(names):
        others = np.delete(arr, j, axis=1)
        mine, cons = [], []
        for u in range(arr.shape[0]):
            if np.isnan(arr[u, j]):
                continue
            c = _consensus(others[u], level)
            if not np.isnan(c):
                mine.append(arr[u, j])
                cons.append(c)
        x, c_arr = np.asarray(mine), np.asarray(cons)
        n = int(x.size)
        if n == 0:
            out.append(ReviewerAgreement(name, 0, *(float("nan"),) * 4))
            continue
        alpha = krippendorff_alpha(np.column_stack([x, c_arr]), level) if n > 1 else float("nan")
        numeric = level != "nominal"
        out.append(
            ReviewerAgreement(
                reviewer=name,
                n=n,
                agreement=float(np.mean(x == c_arr)),
                alpha=alpha,
                bias=float(np.mean(x - c_arr)) if numeric else float("nan"),
                mean_abs_deviation=float(np.mean(np.abs(x - c_arr))) if numeric else float("nan"),
            )
        )
    return out
