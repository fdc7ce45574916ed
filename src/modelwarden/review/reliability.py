"""How far reviewers agree, per rubric dimension, and how they do on gold items.

Per dimension, at the dimension's level (nominal, ordinal or interval): Krippendorff's alpha over
every reviewed item, weighted Cohen's kappa for each pair of reviewers (unweighted for nominal,
linear weights for ordinal, quadratic for interval dimensions) and each reviewer against the
others' consensus. Pair preferences are one more dimension, nominal over the decoded ``A``,
``B`` and ``tie``. Gold items are left out of agreement (they would inflate it) and scored apart,
per reviewer, against their known answers.

A dimension whose alpha is below :data:`RELIABILITY_THRESHOLD` (Krippendorff's lowest bound for
tentative conclusions), or undefined, is unreliable: scorecards and gates leave it out.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import select

from modelwarden.review.queue import get_queue, queue_rubric
from modelwarden.review.rubrics import PAIRWISE_DECODED, PREFERENCE, Dimension
from modelwarden.stats.agreement import cohen_kappa, krippendorff_alpha, reviewer_vs_consensus
from modelwarden.store.state import StateStore
from modelwarden.store.tables import review_items, reviews

RELIABILITY_THRESHOLD = 0.667

PAIRWISE_KEY = "pairwise_preference"
KAPPA_WEIGHTS: dict[str, Literal["linear", "quadratic"] | None] = {
    "nominal": None,
    "ordinal": "linear",
    "interval": "quadratic",
}


@dataclass
class RatingTable:
    """The ratings of one dimension: items x reviewers, NaN where a reviewer gave none."""

    name: str
    dimension: Dimension
    items: list[str]
    reviewers: list[str]
    matrix: np.ndarray
    model_versions: list[str | None] = field(default_factory=list)

    @property
    def level(self) -> str:
        return str(self.dimension.level)

    @property
    def values(self) -> list[float] | None:
        return self.dimension.domain()


def rating_tables(state: StateStore, queue_name: str) -> dict[str, RatingTable]:
    """Every dimension's ratings on the queue's single items, and the decoded pair preferences.

    Gold items are left out: they calibrate reviewers and would inflate agreement.
    """
    queue = get_queue(state, queue_name)
    rubric = queue_rubric(queue)
    q = (
        select(
            reviews.c.item_id,
            reviews.c.reviewer,
            reviews.c.decoded,
            review_items.c.kind,
            review_items.c.model_version,
            review_items.c.position,
        )
        .join(review_items, review_items.c.id == reviews.c.item_id)
        .where(reviews.c.queue == queue_name, review_items.c.kind != "gold")
        .order_by(review_items.c.position, reviews.c.reviewer)
    )
    with state.engine.connect() as con:
        rows = list(con.execute(q))
    out: dict[str, RatingTable] = {}
    specs: list[tuple[str, Dimension, str]] = [(d.name, d, "single") for d in rubric.dimensions]
    specs.append((PAIRWISE_KEY, PAIRWISE_DECODED, "pairwise"))
    for key, dim, kind in specs:
        cells: dict[tuple[str, str], float] = {}
        versions: dict[str, str | None] = {}
        for r in rows:
            if r.kind != kind:
                continue
            value = (r.decoded or {}).get(dim.name)
            if value is None:
                continue
            cells[(r.item_id, r.reviewer)] = dim.encode(value)
            versions[r.item_id] = r.model_version
        if not cells:
            continue
        items = list(dict.fromkeys(i for i, _ in cells))
        raters = sorted({rv for _, rv in cells})
        mat = np.full((len(items), len(raters)), np.nan)
        pos_i = {x: k for k, x in enumerate(items)}
        pos_r = {x: k for k, x in enumerate(raters)}
        for (i, rv), v in cells.items():
            mat[pos_i[i], pos_r[rv]] = v
        out[key] = RatingTable(key, dim, items, raters, mat, [versions[i] for i in items])
    return out


def _nan_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def dimension_agreement(
    table: RatingTable, threshold: float = RELIABILITY_THRESHOLD
) -> dict[str, Any]:
    mat = table.matrix
    level = table.level
    values = table.values
    alpha = krippendorff_alpha(mat, level, values=values)
    rated = (~np.isnan(mat)).sum(axis=1)
    weights = KAPPA_WEIGHTS[level]
    labels = values if values is not None else sorted(set(mat[~np.isnan(mat)].tolist()))
    pairs = []
    for (ia, a), (ib, b) in itertools.combinations(enumerate(table.reviewers), 2):
        both = ~np.isnan(mat[:, ia]) & ~np.isnan(mat[:, ib])
        n = int(both.sum())
        if n == 0:
            continue
        kappa = cohen_kappa(
            mat[both, ia].tolist(), mat[both, ib].tolist(), weights=weights, labels=labels
        )
        pairs.append(
            {"a": a, "b": b, "n": n, "kappa": _nan_none(kappa), "weights": weights or "none"}
        )
    consensus = reviewer_vs_consensus(mat, table.reviewers, level)
    dim = table.dimension
    present = mat[~np.isnan(mat)]
    out: dict[str, Any] = {
        "name": table.name,
        "type": dim.type,
        "level": level,
        "alpha": _nan_none(alpha),
        "reliable": bool(math.isfinite(alpha) and alpha >= threshold),
        "n_items": int((rated >= 2).sum()),
        "n_ratings": int(present.size),
        "n_reviewers": len(table.reviewers),
        "pairs": pairs,
        "reviewers": [c.to_dict() for c in consensus],
    }
    if dim.type in ("numeric", "boolean"):
        out["mean"] = _nan_none(float(present.mean())) if present.size else None
    if dim.type in ("categorical", "boolean"):
        names = dim.choices() if dim.type == "categorical" else ["no", "yes"]
        counts = Counter(int(v) for v in present.tolist())
        out["distribution"] = {names[k]: counts.get(k, 0) for k in range(len(names))}
    return out


def gold_report(state: StateStore, queue_name: str) -> list[dict[str, Any]]:
    """Each reviewer's answers on gold items against the known answers."""
    queue = get_queue(state, queue_name)
    rubric = queue_rubric(queue)
    q = (
        select(reviews.c.reviewer, reviews.c.answers, review_items.c.gold)
        .join(review_items, review_items.c.id == reviews.c.item_id)
        .where(reviews.c.queue == queue_name, review_items.c.kind == "gold")
    )
    with state.engine.connect() as con:
        rows = list(con.execute(q))
    per: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = per.setdefault(
            r.reviewer,
            {"reviewer": r.reviewer, "items": 0, "checks": 0, "correct": 0, "by_dimension": {}},
        )
        entry["items"] += 1
        for name, expected in (r.gold or {}).items():
            if name not in rubric.names():
                continue
            ok = rubric.dimension(name).meets(r.answers.get(name), expected)
            d = entry["by_dimension"].setdefault(name, {"n": 0, "correct": 0})
            d["n"] += 1
            d["correct"] += int(ok)
            entry["checks"] += 1
            entry["correct"] += int(ok)
    out = []
    for name in sorted(per):
        e = per[name]
        e["accuracy"] = e["correct"] / e["checks"] if e["checks"] else None
        out.append(e)
    return out


def pairwise_report(state: StateStore, queue_name: str) -> dict[str, Any] | None:
    """Decoded preferences per pair of versions: how often A, B or neither was preferred."""
    q = (
        select(reviews.c.decoded, review_items.c.pair)
        .join(review_items, review_items.c.id == reviews.c.item_id)
        .where(reviews.c.queue == queue_name, review_items.c.kind == "pairwise")
    )
    with state.engine.connect() as con:
        rows = list(con.execute(q))
    if not rows:
        return None
    groups: dict[tuple[str | None, str | None], Counter[str]] = defaultdict(Counter)
    for r in rows:
        a = (r.pair or {}).get("a", {}).get("model_version")
        b = (r.pair or {}).get("b", {}).get("model_version")
        groups[(a, b)][r.decoded[PREFERENCE]] += 1
    return {
        "reviews": len(rows),
        "pairs": [
            {
                "a": a,
                "b": b,
                "a_preferred": c["A"],
                "b_preferred": c["B"],
                "ties": c["tie"],
                "n": sum(c.values()),
            }
            for (a, b), c in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
        ],
    }


def agreement_report(
    state: StateStore, queue_name: str, threshold: float = RELIABILITY_THRESHOLD
) -> dict[str, Any]:
    """Agreement per dimension, reviewer calibration on gold items and pair preferences."""
    queue = get_queue(state, queue_name)
    tables = rating_tables(state, queue_name)
    dims = [dimension_agreement(t, threshold) for t in tables.values()]
    return {
        "queue": queue_name,
        "rubric": queue["rubric"]["name"],
        "threshold": threshold,
        "reviewers": sorted({rv for t in tables.values() for rv in t.reviewers}),
        "dimensions": dims,
        "reliable": [d["name"] for d in dims if d["reliable"]],
        "unreliable": [d["name"] for d in dims if not d["reliable"]],
        "gold": gold_report(state, queue_name),
        "pairwise": pairwise_report(state, queue_name),
    }


__all__ = [
    "PAIRWISE_KEY",
    "RELIABILITY_THRESHOLD",
    "RatingTable",
    "agreement_report",
    "dimension_agreement",
    "gold_report",
    "pairwise_report",
    "rating_tables",
]
