"""Drift over stored windows: per plant and overall, baseline window against current window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelwarden.drift.centroid import SEED_THRESHOLD, check_drift
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
    embed: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """The seed's centroid check per plant and over all plants (``plant=None``).

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
            "method": "centroid_cosine (seed)",
            "baseline": baseline.label(),
            "current": current.label(),
            "n_baseline": len(b.request_ids),
            "n_current": len(c.request_ids),
            "threshold": threshold,
        }
        if min(len(b.request_ids), len(c.request_ids)) < MIN_SAMPLES:
            row.update(score=None, status="INSUFFICIENT_DATA")
        else:
            score, status = check_drift(b.vectors, c.vectors, threshold)
            row.update(score=float(np.round(score, 6)), status=status)
        rows.append(row)
    return rows
