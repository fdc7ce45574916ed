"""Drift over stored windows: per plant and overall, baseline window against current window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelwarden.drift.centroid import SEED_THRESHOLD, check_drift
from modelwarden.errors import InputError
from modelwarden.service import embed_missing, embedder_key, plants, window_vectors
from modelwarden.settings import Settings

MIN_SAMPLES = 20


@dataclass
class Window:
    since: datetime
    until: datetime

    def label(self) -> str:
        return f"{self.since:%Y-%m-%d} .. {self.until:%Y-%m-%d}"


def drift_over_windows(
    settings: Settings,
    baseline: Window,
    current: Window,
    *,
    plant: str | None = None,
    kind: str = "prompt",
    embedder: str | None = None,
    threshold: float = SEED_THRESHOLD,
    method: str = "suite",
    alpha: float = 0.05,
    explain: bool = True,
    embed: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Drift per plant and over all plants (``plant=None``), by ``method`` (default the suite).

    ``method="seed"`` is the notebook's uncalibrated centroid check against ``threshold``;
    every other method is calibrated at ``alpha``. An alert comes with its explanation: the
    clusters of prompts that are new or grew, and the most novel prompts.

    Requests of either window without a stored vector from this embedder are embedded first
    (unless ``embed`` is False). A scope with fewer than ``MIN_SAMPLES`` vectors on either side
    is reported as ``INSUFFICIENT_DATA`` rather than guessed.
    """
    name = embedder_key(settings, embedder)
    if embed and name != "inline":
        for w in (baseline, current):
            embed_missing(
                settings, kind, embedder, w.since, w.until, progress=progress, on_total=on_total
            )
    scopes: list[str | None] = (
        [plant] if plant else [None, *plants(settings, baseline.since, current.until)]
    )
    rows = []
    for scope in scopes:
        b = window_vectors(settings, kind, name, baseline.since, baseline.until, plant=scope)
        c = window_vectors(settings, kind, name, current.since, current.until, plant=scope)
        row: dict[str, Any] = {
            "scope": scope or "all plants",
            "kind": kind,
            "embedder": name,
            "method": "centroid_cosine (seed)" if method == "seed" else method,
            "baseline": baseline.label(),
            "current": current.label(),
            "n_baseline": len(b.request_ids),
            "n_current": len(c.request_ids),
            "threshold": threshold if method == "seed" else None,
            "p_value": None,
            "alpha": None if method == "seed" else alpha,
        }
        if min(len(b.request_ids), len(c.request_ids)) < MIN_SAMPLES:
            row.update(score=None, status="INSUFFICIENT_DATA")
        elif method == "seed":
            score, status = check_drift(b.vectors, c.vectors, threshold)
            row.update(score=float(np.round(score, 6)), status=status)
        else:
            row.update(test_vectors(b.vectors, c.vectors, method, alpha))
            if explain and row["status"] == "ALERT":
                row["explanation"] = explanation(b, c, alpha)
        rows.append(row)
    return rows


def test_vectors(baseline: np.ndarray, current: np.ndarray, method: str,
                 alpha: float) -> dict[str, Any]:
    """A calibrated detector's verdict on two sets of vectors, as a flat row."""
    from modelwarden.drift import get_detector

    try:
        det = get_detector(method, alpha=alpha)
    except InputError as exc:
        if exc.field != "alpha":
            raise
        det = get_detector(method)
    res = det.fit(baseline).test(current)
    out = {
        "score": None if res.score is None else float(res.score),
        "p_value": None if res.p_value is None else float(res.p_value),
        "threshold": None if res.threshold is None else float(res.threshold),
        "status": res.status,
    }
    members = res.details.get("members") if isinstance(res.details, dict) else None
    if isinstance(members, dict):
        out["members"] = {
            k: {f: v.get(f) for f in ("status", "score", "p_value", "threshold")}
            for k, v in members.items() if isinstance(v, dict)
        }
    return out


def explanation(b: Any, c: Any, alpha: float, top: int = 3) -> dict[str, Any]:
    """The clusters that are new or grew most, and the single most novel prompts."""
    from modelwarden.drift import explain_drift

    exp = explain_drift(b.vectors, c.vectors, texts_current=c.texts, texts_baseline=b.texts,
                        alpha=alpha)
    topics = []
    for ch in exp.emerging[:top]:
        reps = [getattr(e, "text", None) or str(e) for e in ch.representatives]
        topics.append({
            "status": ch.status,
            "share_baseline": round(float(ch.share_baseline), 4),
            "share_current": round(float(ch.share_current), 4),
            "key_terms": list(ch.key_terms)[:6],
            "examples": [r for r in reps if r][:2],
        })
    novel = [getattr(n, "text", None) for n in exp.novel[:top]]
    return {"topics": topics, "novel_prompts": [t for t in novel if t]}
