"""Drift service: what the CLI, the HTTP API and the report call to test drift.

Windows are resolved here once for every entry point; the statistics live in the detectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from modelwarden.drift.centroid import check_drift
from modelwarden.drift.monitor import (
    BASELINE_RESERVOIR,
    drift_over_windows,
    parse_drift_by,
    quality_over_windows,
    test_vectors,
)
from modelwarden.errors import InputError
from modelwarden.settings import Settings
from modelwarden.store.reads import require_data
from modelwarden.windows import Window, default_windows, parse_window_arg

__all__ = [
    "BASELINE_RESERVOIR",
    "compare_files",
    "drift_over_windows",
    "is_vector_file",
    "load_vectors",
    "parse_drift_by",
    "quality_over_windows",
    "resolve_windows",
]


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
