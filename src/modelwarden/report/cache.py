"""Results the weekly report already computed, kept until the data under them changes.

The report's drift section is the calibrated suite (permutation-calibrated centroid, MMD,
classifier and cluster tests, thousands of permutations per row) for prompts and responses, per
plant, plus the embedding of any answer without a vector: most of the report's time and all of
its memory (the embedding model). Its KPI tables and the store's time span are Ibis queries,
each compiled and run over every request. Re-running any of them on unchanged data gives the
same rows, so they are kept in ``DATA/cache/drift/`` under a key made of everything they depend
on: the question (kind, windows, grouping, method, threshold, embedder), the cap on a drift
window's rows (``drift_window_max``) and a fingerprint of the
log store's files (name, size and modification time of every Parquet part of requests, feedback,
escalations and embeddings; parts are written once under new names and never changed in place).
Any ingest, embedding or compaction changes the fingerprint, and the rows are computed again.

Every new batch of data makes a new fingerprint, so the folder is pruned after each write: an
entry not used for ``report_cache_days`` days goes, and beyond ``report_cache_mb`` megabytes the
entries used longest ago go first. An entry's modification time is its last use (a lookup that
hits sets it; access times are not kept by every file system). Entries are written to a file of
their own name first and renamed into place, so pruning (which looks only at finished entries)
never removes one another process is writing, and a reader holding an entry that is removed
reads it to the end or misses and computes again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelwarden.settings import Settings

CACHE_DIR = "cache/drift"
VERSION = 2  # 2: drift rows say whether a window was sampled
# A temporary file this old belongs to a writer that died: removed by the next prune.
STALE_TMP_S = 24 * 3600


def store_fingerprint(settings: Settings) -> str:
    """A digest of the log store's files: changes with any write to the store."""
    h = hashlib.sha256()
    root = settings.log_dir
    if root.exists():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                st = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (datetime, date)):
        return {"__dt__": v.isoformat()}
    raise TypeError(f"cannot keep {type(v).__name__} in the drift cache")


def _revive(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__dt__"}:
            return datetime.fromisoformat(obj["__dt__"])
        return {k: _revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_revive(v) for v in obj]
    return obj


def _key(settings: Settings, question: dict[str, Any], fingerprint: str) -> str:
    blob = json.dumps(
        {
            "v": VERSION,
            "q": question,
            "store": fingerprint,
            "embedder": settings.embedder,
            "window_max": settings.drift_window_max,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(settings: Settings, key: str) -> Path:
    return settings.data_dir / CACHE_DIR / f"{key}.json"


def remember(
    settings: Settings,
    question: dict[str, Any],
    rows: list[dict[str, Any]],
    fingerprint: str | None = None,
) -> None:
    """Keep ``rows`` under the store as it is now (after a report's embedding wrote to it), or
    under ``fingerprint`` when the caller has just taken it."""
    fp = fingerprint if fingerprint is not None else store_fingerprint(settings)
    key = _key(settings, question, fp)
    _write(settings, key, rows)
    prune(settings, keep={key})


def _write(settings: Settings, key: str, rows: list[dict[str, Any]]) -> None:
    try:
        text = json.dumps(rows, default=_plain, allow_nan=True)
    except TypeError:
        return  # not representable: not kept
    target = _path(settings, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of this writer's own: two processes writing one key never share a temporary file.
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lookup(settings: Settings, question: dict[str, Any], fingerprint: str) -> list[Any] | None:
    """The rows kept for ``question`` under the store ``fingerprint``, or None. A hit marks the
    entry used now (its modification time), which keeps it from the next prune."""
    path = _path(settings, _key(settings, question, fingerprint))
    try:
        rows = list(_revive(json.loads(path.read_text(encoding="utf-8"))))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # an unreadable entry is recomputed
    with contextlib.suppress(OSError):  # pruned meanwhile: the rows read are still good
        os.utime(path)
    return rows


def prune(
    settings: Settings, keep: set[str] | frozenset[str] = frozenset(), now: float | None = None
) -> list[str]:
    """Remove the entries not used for ``report_cache_days`` days, then, while the rest exceed
    ``report_cache_mb``, the ones used longest ago; ``keep`` (keys just written) stay. Returns
    the keys removed."""
    folder = settings.data_dir / CACHE_DIR
    now = time.time() if now is None else now
    max_age = settings.report_cache_days * 86400
    budget = settings.report_cache_mb * 1024 * 1024
    entries: list[tuple[float, int, str, Path]] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    for name in names:
        path = folder / name
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # removed by another process meanwhile
        if name.startswith(".") and name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TMP_S:
                path.unlink(missing_ok=True)
            continue
        if name.endswith(".json"):
            entries.append((st.st_mtime, st.st_size, name.removesuffix(".json"), path))
    removed: list[str] = []
    entries.sort(reverse=True)  # the most recently used first
    total = 0
    for used, size, key, path in entries:
        if key not in keep and (now - used > max_age or total + size > budget):
            path.unlink(missing_ok=True)
            removed.append(key)
        else:
            total += size
    return removed


def cached_rows(
    settings: Settings,
    question: dict[str, Any],
    compute: Callable[[], list[dict[str, Any]]],
    fingerprint: str | None = None,
) -> list[dict[str, Any]]:
    """The rows for ``question`` from the cache, else ``compute()``d and kept.

    ``fingerprint`` is the store's, when the caller has just taken it (one walk of the store for
    all of a report's questions). Computed rows are kept under the store's fingerprint from
    before and after the computation: computing may embed answers (which writes to the store),
    and the next run sees the store as it is after.
    """
    before = fingerprint if fingerprint is not None else store_fingerprint(settings)
    hit = lookup(settings, question, before)
    if hit is not None:
        return hit
    rows = compute()
    keys = {_key(settings, question, fp) for fp in {before, store_fingerprint(settings)}}
    for key in keys:
        _write(settings, key, rows)
    prune(settings, keep=keys)
    return rows
