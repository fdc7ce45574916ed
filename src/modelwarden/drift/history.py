"""What drift monitoring keeps on disk: the results as a time series, and the reservoir baselines.

**Results** go to the ``drift_results`` table of the state store (SQLite by default). A drift
result is a small row that is written by the CLI, the HTTP API and the weekly report, sometimes
at the same time, and must be *replaced*, not duplicated, when the same window is run again: a
unique key and an upsert in one transaction give exactly that, while the append-only Parquet log
store would need a read-side deduplication and compaction for a table of a few rows a day. The
key is (kind, signal, scope, model version, window, baseline, method); a re-run of a key
replaces its values and its ``run_at``.

**Reservoirs** are files under ``DATA/drift/reservoirs/``, one ``.npz`` per (scope, kind,
embedder) holding the sample's vectors, request ids, texts and the generator state, and one JSON
file beside it with the windows folded in and whether the baseline is pinned. Both are written
under a temporary name, fsync'd and renamed into place, under a lock file, so a crash or a
concurrent update leaves the old reservoir or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    select,
)

from modelwarden.drift.reservoir import Reservoir
from modelwarden.errors import InputError, NotFoundError
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore, conflict_insert
from modelwarden.store.tables import DRIFT_KEY_COLUMNS, drift_results

ALL_VERSIONS = ""
ALL_PLANTS = "all plants"

KEY_COLUMNS = DRIFT_KEY_COLUMNS


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if np.isfinite(f) else None


def history_points(rows: Sequence[dict[str, Any]], run_at: datetime) -> list[dict[str, Any]]:
    """The rows of a drift run as stored points: one per row and one per suite member."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if "window_start" not in r:
            continue
        base = {
            "kind": r["kind"],
            "signal": r.get("signal") or r.get("embedder") or r["kind"],
            "scope": r["scope"],
            "model_version": r.get("model_version") or ALL_VERSIONS,
            "window_start": _iso(r["window_start"]),
            "window_end": _iso(r["window_end"]),
            "baseline": r["baseline_key"],
            "run_at": _iso(run_at),
            "alpha": _finite(r.get("alpha")),
            "n_baseline": r.get("n_baseline"),
            "n_current": r.get("n_current"),
            "baseline_detail": r.get("baseline"),
        }
        topics = (r.get("explanation") or {}).get("topics") or []
        out.append(
            {
                **base,
                "method": r["method"],
                "parent_method": None,
                "statistic": _finite(r.get("score")),
                "p_value": _finite(r.get("p_value")),
                "threshold": _finite(r.get("threshold")),
                "status": r["status"],
                "topics": json.dumps(topics, ensure_ascii=False) if topics else None,
            }
        )
        for name, m in (r.get("members") or {}).items():
            out.append(
                {
                    **base,
                    "method": name,
                    "parent_method": r["method"],
                    "statistic": _finite(m.get("score")),
                    "p_value": _finite(m.get("p_value")),
                    "threshold": _finite(m.get("threshold")),
                    "status": m.get("status") or "INSUFFICIENT_DATA",
                    "topics": None,
                }
            )
    return out


def record_results(
    settings: Settings, rows: Sequence[dict[str, Any]], run_at: datetime | None = None
) -> int:
    """Store a drift run's rows (upsert by key); returns the number of points written."""
    points = history_points(rows, run_at or datetime.now(UTC))
    if not points:
        return 0
    store = StateStore.of(settings)
    try:
        stmt = conflict_insert(store.engine.dialect.name, drift_results)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(KEY_COLUMNS),
            set_={c: stmt.excluded[c] for c in points[0] if c not in KEY_COLUMNS},
        )
        with store.engine.begin() as conn:
            conn.execute(stmt, points)
    finally:
        store.close()
    return len(points)


def read_history(
    settings: Settings,
    *,
    plant: str | None = None,
    version: str | None = None,
    kind: str | None = None,
    method: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    members: bool = False,
) -> list[dict[str, Any]]:
    """Stored drift points, oldest window first. ``members`` adds the suite members' rows."""
    store = StateStore.of(settings)
    t = drift_results
    q = select(t)
    if plant:
        q = q.where(t.c.scope == plant)
    if version:
        q = q.where(t.c.model_version == version)
    if kind:
        q = q.where(t.c.kind == kind)
    if method:
        q = q.where(t.c.method == method)
    elif not members:
        q = q.where(t.c.parent_method.is_(None))
    if since is not None:
        q = q.where(t.c.window_start >= _iso(since))
    if until is not None:
        q = q.where(t.c.window_end <= _iso(until))
    q = q.order_by(
        t.c.window_start,
        t.c.kind,
        t.c.signal,
        t.c.scope,
        t.c.model_version,
        t.c.baseline,
        t.c.parent_method.is_not(None),
        t.c.method,
    )
    try:
        with store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
    finally:
        store.close()
    for r in rows:
        r.pop("id", None)
        r["model_version"] = r["model_version"] or None
        r["topics"] = json.loads(r["topics"]) if r["topics"] else []
    return rows


# ---- reservoirs --------------------------------------------------------------------------------

DEFAULT_RESERVOIR_SIZE = 2000
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def reservoir_dir(settings: Settings) -> Path:
    return settings.data_dir / "drift" / "reservoirs"


def _stem(scope: str, kind: str, embedder: str) -> str:
    scope_part = "all" if scope == ALL_PLANTS else "plant-" + _SAFE.sub("_", scope)
    return f"{scope_part}.{kind}.{_SAFE.sub('_', embedder)}"


@dataclass
class ReservoirInfo:
    """A reservoir's bookkeeping: what was folded in, and whether it may change."""

    scope: str
    kind: str
    embedder: str
    size: int
    seed: int
    pinned: bool = False
    folded: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    updated_at: str | None = None

    @property
    def folded_until(self) -> datetime | None:
        if not self.folded:
            return None
        return max(datetime.fromisoformat(w["until"]) for w in self.folded)

    def describe(self, reservoir: Reservoir) -> str:
        until = self.folded_until
        return (
            f"reservoir ({len(reservoir.ids)} of {reservoir.seen} rows, "
            f"{len(self.folded)} windows"
            + (f", through {until:%Y-%m-%d}" if until else "")
            + (", pinned" if self.pinned else "")
            + ")"
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def reservoir_lock(settings: Settings) -> Iterator[None]:
    """An exclusive lock on the reservoirs, held while one is read, changed and written."""
    d = reservoir_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_reservoir(
    settings: Settings, scope: str, kind: str, embedder: str
) -> tuple[Reservoir, ReservoirInfo] | None:
    stem = _stem(scope, kind, embedder)
    d = reservoir_dir(settings)
    arrays_path, info_path = d / f"{stem}.npz", d / f"{stem}.json"
    if not (arrays_path.exists() and info_path.exists()):
        return None
    with np.load(arrays_path, allow_pickle=False) as arrays:
        res = Reservoir.from_arrays(arrays)
    info = ReservoirInfo(**json.loads(info_path.read_text(encoding="utf-8")))
    return res, info


def save_reservoir(settings: Settings, res: Reservoir, info: ReservoirInfo) -> None:
    d = reservoir_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    stem = _stem(info.scope, info.kind, info.embedder)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=True, **res.to_arrays())
    info.updated_at = _iso(datetime.now(UTC))
    # Arrays first, then the bookkeeping: a crash between them re-folds a window at worst,
    # which update() refuses because the window is not after the recorded ones.
    _fsync_write(d / f"{stem}.npz", buf.getvalue())
    _fsync_write(d / f"{stem}.json", json.dumps(info.to_dict(), indent=1).encode())


def list_reservoirs(settings: Settings) -> list[tuple[Reservoir, ReservoirInfo]]:
    d = reservoir_dir(settings)
    out = []
    for info_path in sorted(d.glob("*.json")) if d.exists() else []:
        info = ReservoirInfo(**json.loads(info_path.read_text(encoding="utf-8")))
        loaded = load_reservoir(settings, info.scope, info.kind, info.embedder)
        if loaded is not None:
            out.append(loaded)
    return out


def delete_reservoir(settings: Settings, scope: str, kind: str, embedder: str) -> bool:
    d = reservoir_dir(settings)
    stem = _stem(scope, kind, embedder)
    found = False
    for suffix in (".json", ".npz"):
        p = d / f"{stem}{suffix}"
        if p.exists():
            p.unlink()
            found = True
    return found


def set_pinned(settings: Settings, scope: str, kind: str, embedder: str, pinned: bool) -> None:
    with reservoir_lock(settings):
        loaded = load_reservoir(settings, scope, kind, embedder)
        if loaded is None:
            raise NotFoundError(
                f"no reservoir for {scope} ({kind}, {embedder}); "
                "build one with: modelwarden baseline update",
                field="plant",
            )
        res, info = loaded
        info.pinned = pinned
        save_reservoir(settings, res, info)


def check_kind(kind: str) -> str:
    if kind not in ("prompt", "response"):
        raise InputError("kind must be prompt or response", field="kind")
    return kind
