"""Drift service: what the CLI, the HTTP API and the report call to test drift.

Windows are resolved here once for every entry point; the statistics live in the detectors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from modelwarden.drift.baseline import baseline_rows, update_baselines
from modelwarden.drift.centroid import check_drift
from modelwarden.drift.history import (
    ALL_PLANTS,
    check_kind,
    delete_reservoir,
    read_history,
    reservoir_lock,
    set_pinned,
)
from modelwarden.drift.monitor import (
    BASELINE_RESERVOIR,
    drift_over_windows,
    parse_drift_by,
    quality_over_windows,
    test_vectors,
)
from modelwarden.embed.service import embedder_key
from modelwarden.errors import InputError, NotFoundError
from modelwarden.settings import Settings
from modelwarden.store.reads import require_data
from modelwarden.windows import Window, default_windows, parse_time, parse_window_arg

__all__ = [
    "BASELINE_RESERVOIR",
    "DRIFT_KINDS",
    "DriftRun",
    "baseline_rows",
    "compare_files",
    "drift_history",
    "drift_over_windows",
    "is_vector_file",
    "load_vectors",
    "parse_drift_by",
    "pin_baseline",
    "quality_over_windows",
    "reset_baseline",
    "resolve_windows",
    "run_drift",
    "update_baseline",
]

DRIFT_KINDS = ("prompt", "response", "quality")


def _check_drift_kind(kind: str) -> str:
    if kind not in DRIFT_KINDS:
        raise InputError("kind must be prompt, response or quality", field="kind")
    return kind


def _time(value: str | None, field: str) -> datetime | None:
    return parse_time(value, field) if value else None


@dataclass
class DriftRun:
    """The rows of one drift test and the title a person reads above them."""

    rows: list[dict[str, Any]]
    title: str

    @property
    def alert(self) -> bool:
        return any(r["status"] == "ALERT" for r in self.rows)


def run_drift(
    settings: Settings,
    baseline: str | None = None,
    current: str | None = None,
    *,
    plant: str | None = None,
    version: str | None = None,
    by: str = "plant_id",
    kind: str = "prompt",
    method: str = "suite",
    alpha: float = 0.05,
    threshold: float = 0.02,
    files: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DriftRun:
    """Drift between two windows (or, with ``files``, two files of embeddings) as given by a user.

    ``baseline`` and ``current`` are window arguments (``2026-W43..2026-W45``, dates,
    ``reservoir``) or, when ``files`` is allowed, paths of ``.npy``/Parquet/JSONL embeddings.
    The CLI allows files; the HTTP API does not read the server's disk.
    """
    # lazy: the detectors load SciPy, which drift_history and the baseline commands do not need
    from modelwarden.drift.registry import EMBEDDING_DETECTORS

    _check_drift_kind(kind)
    if method not in EMBEDDING_DETECTORS:
        raise InputError(
            f"unknown method {method!r}; choose from {', '.join(EMBEDDING_DETECTORS)}",
            field="method",
        )
    by_cols = parse_drift_by(by)
    if files and (is_vector_file(baseline) or is_vector_file(current)):
        row = compare_files(baseline, current, kind, method, alpha, threshold)
        return DriftRun([row], f"Drift: {baseline} → {current}")
    b, c = resolve_windows(settings, baseline, current)
    rows = drift_over_windows(
        settings,
        b,
        c,
        plant=plant,
        version=version,
        by=by_cols,
        kind=kind,
        threshold=threshold,
        method=method,
        alpha=alpha,
        progress=progress,
        on_total=on_total,
    )
    b_label = b if isinstance(b, str) else b.label()
    title = f"Drift ({kind}{'' if kind == 'quality' else 's'}): {b_label} → {c.label()}"
    return DriftRun(rows, title)


def drift_history(
    settings: Settings,
    *,
    plant: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    method: str | None = None,
    since: str | None = None,
    until: str | None = None,
    members: bool = False,
) -> list[dict[str, Any]]:
    """Stored drift points, oldest window first; ``since``/``until`` are ISO dates or times."""
    if kind is not None:
        _check_drift_kind(kind)
    return read_history(
        settings,
        plant=plant,
        version=version,
        kind=kind,
        method=method,
        since=_time(since, "since"),
        until=_time(until, "until"),
        members=members,
    )


def update_baseline(
    settings: Settings,
    *,
    kind: str = "prompt",
    plant: str | None = None,
    since: str | None = None,
    until: str | None = None,
    window: str = "week",
    size: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Fold the windows since the last update into the reservoirs (see ``update_baselines``)."""
    return update_baselines(
        settings,
        kind=kind,
        plant=plant,
        since=_time(since, "since"),
        until=_time(until, "until"),
        window=window,
        size=size,
        seed=seed,
        alpha=alpha,
    )


def reset_baseline(
    settings: Settings, kind: str = "prompt", plant: str | None = None
) -> dict[str, Any]:
    """Delete a reservoir of the current embedder; NotFoundError when there is none."""
    check_kind(kind)
    scope = plant or ALL_PLANTS
    name = embedder_key(settings, None)
    with reservoir_lock(settings):
        found = delete_reservoir(settings, scope, kind, name)
    if not found:
        raise NotFoundError(f"no reservoir for {scope} ({kind}, {name})", field="plant")
    return {"scope": scope, "kind": kind, "embedder": name, "reset": True}


def pin_baseline(
    settings: Settings, kind: str = "prompt", plant: str | None = None, pinned: bool = True
) -> dict[str, Any]:
    """Freeze (or, with ``pinned=False``, release) a reservoir of the current embedder."""
    check_kind(kind)
    scope = plant or ALL_PLANTS
    name = embedder_key(settings, None)
    set_pinned(settings, scope, kind, name, pinned)
    return {"scope": scope, "kind": kind, "embedder": name, "pinned": pinned}


def resolve_windows(
    settings: Settings, baseline: str | None, current: str | None
) -> tuple[Window | str, Window]:
    """Baseline and current windows from what a user gave; the defaults come from the store.

    ``baseline`` may be ``reservoir`` (the stored rolling baseline) instead of a window.
    """
    if baseline is not None and baseline.lower() == BASELINE_RESERVOIR:
        c = (
            parse_window_arg(current, "current")
            if current
            else default_windows(*require_data(settings))[1]
        )
        return BASELINE_RESERVOIR, c
    if baseline and current:
        return parse_window_arg(baseline, "baseline"), parse_window_arg(current, "current")
    b, c = default_windows(*require_data(settings))
    b = parse_window_arg(baseline, "baseline") if baseline else b
    c = parse_window_arg(current, "current") if current else c
    return b, c


def compare_files(
    baseline: str | None,
    current: str | None,
    kind: str,
    method: str,
    alpha: float,
    threshold: float,
) -> dict[str, Any]:
    """One drift row for two files of embeddings (``.npy``, Parquet or JSONL)."""
    if kind == "quality":
        raise InputError("quality drift compares windows, not embedding files", field="kind")
    if not (baseline and current):
        raise InputError("give both --baseline and --current", field="baseline")
    if not (is_vector_file(baseline) and is_vector_file(current)):
        raise InputError("compare a file with a file (or a window with a window)", field="current")
    b_arr = load_vectors(baseline, "baseline")
    c_arr = load_vectors(current, "current")
    if b_arr.shape[1] != c_arr.shape[1]:
        raise InputError(
            f"baseline has {b_arr.shape[1]} dimensions and current has {c_arr.shape[1]}",
            field="current",
        )
    row: dict[str, Any] = {
        "scope": "files",
        "method": method,
        "n_baseline": len(b_arr),
        "n_current": len(c_arr),
    }
    if method == "seed":
        score, status = check_drift(b_arr, c_arr, threshold)
        row.update(score=score, threshold=threshold, p_value=None, status=status)
    else:
        row.update(test_vectors(b_arr, c_arr, method, alpha))
    return row


def load_vectors(path: str, field: str) -> Any:
    """Reference embeddings from ``.npy``, Parquet or JSONL (a ``prompt_embedding`` column)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file", field=field)
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix in (".parquet", ".pq"):
            col = next(
                (
                    c
                    for c in ("prompt_embedding", "embedding", "vector")
                    if c in pq.read_schema(p).names
                ),
                None,
            )
            if col is None:
                raise InputError(
                    f"{path}: no prompt_embedding, embedding or vector column", field=field
                )
            arr = np.asarray(pq.read_table(p, columns=[col]).column(col).to_pylist(), float)
        else:
            rows = [
                json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()
            ]
            arr = np.asarray(
                [r.get("prompt_embedding") or r.get("embedding") for r in rows], dtype=float
            )
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read embeddings ({exc})", field=field) from exc
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"{path}: expected a non-empty 2-D array of embeddings", field=field)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: embeddings contain NaN or infinite values", field=field)
    return arr.astype(np.float32)


def is_vector_file(value: str | None) -> bool:
    return value is not None and value.lower().endswith((".npy", ".parquet", ".pq", ".jsonl"))
