"""Reservoir-sampled baselines kept up to date, one per (plant or all plants, kind, embedder).

A fixed baseline window ages: after a few months it no longer says what normal traffic looks
like. A reservoir is a uniform random sample of every row of every window folded into it, so it
follows slow, accepted change while staying a fixed size. It must not absorb drift, though, or
an alert would become the new normal by the next week; so :func:`update_baselines` folds windows
in oldest first, and folds a window only when the drift suite judged it ``OK`` against the
reservoir as it was. A window that alerts is skipped and listed (and stays skipped: a later
update starts after it), one with too few rows to judge is skipped too. The first window of an
empty reservoir is folded without a test, since there is nothing to test it against; so are the
next ones while the reservoir holds fewer rows than a test needs.

A pinned reservoir is never changed (an auditor's reference); ``reset`` deletes one so that the
next update starts it again from the first window it is given.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from modelwarden.drift.history import (
    ALL_PLANTS,
    DEFAULT_RESERVOIR_SIZE,
    ReservoirInfo,
    check_kind,
    list_reservoirs,
    load_reservoir,
    record_results,
    reservoir_lock,
    save_reservoir,
)
from modelwarden.drift.monitor import (
    BASELINE_RESERVOIR,
    MIN_SAMPLES,
    Window,
    drift_row,
)
from modelwarden.drift.reservoir import Reservoir
from modelwarden.embed.sampling import id_hashes
from modelwarden.embed.service import WindowReader, WindowVectors, embed_missing, embedder_key
from modelwarden.errors import InputError
from modelwarden.settings import Settings
from modelwarden.store.reads import plants, require_data

STEPS = {"day": timedelta(days=1), "week": timedelta(weeks=1)}


def _align(ts: datetime, step: str) -> datetime:
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if step == "week" else day


def reservoir_seed(seed: int, scope: str, kind: str) -> int:
    """A per-reservoir seed derived from the user's seed, so reservoirs draw independently."""
    return (seed * 1_000_003 + zlib.crc32(f"{scope}|{kind}".encode())) % 2**32


def update_baselines(
    settings: Settings,
    *,
    kind: str = "prompt",
    embedder: str | None = None,
    plant: str | None = None,
    until: datetime | None = None,
    since: datetime | None = None,
    window: str = "week",
    size: int = DEFAULT_RESERVOIR_SIZE,
    seed: int = 0,
    method: str = "suite",
    alpha: float = 0.05,
    embed: bool = True,
) -> list[dict[str, Any]]:
    """Fold every complete window after the last folded one (up to ``until``) into the reservoirs.

    Reservoirs are kept for all plants and for each plant (or only ``plant``). Returns one row
    per reservoir and window with the decision: ``folded``, ``initial``, ``drifted`` (skipped,
    the window alerted) or ``too few rows`` (skipped); the tests are stored in the drift history
    with the baseline ``reservoir``.
    """
    check_kind(kind)
    if window not in STEPS:
        raise InputError("window must be day or week", field="window")
    step = STEPS[window]
    lo, hi = require_data(settings)
    end = _align(until, window) if until is not None else _align(hi, window)
    if until is None and hi >= end + step - timedelta(hours=1):
        # Data up to the last hour of the window: the window is complete (as for reports).
        end += step
    name = embedder_key(settings, embedder)
    first = _align(since or lo, window)
    if embed and name != "inline":
        embed_missing(settings, kind, embedder, first, end)
    # Plants first: the all-plants reservoir leaves out the rows of a plant whose window drifted.
    scopes: list[str | None] = [plant] if plant else [*plants(settings, first, end), None]
    drifted: dict[str, set[str]] = {}
    decisions: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    # One store connection for every window of every reservoir (a connection lists and
    # registers the store's files).
    # A window is read whole up to the drift cap, and never below the reservoir's size: a
    # sampled window is folded as the window it stands for (Reservoir.add's stream_rows).
    max_rows = max(settings.drift_window_max, size)
    with (
        reservoir_lock(settings),
        WindowReader(settings, kind, name, max_rows=max_rows) as reader,
    ):
        for scope in scopes:
            key = scope or ALL_PLANTS
            loaded = load_reservoir(settings, key, kind, name)
            if loaded is None:
                res = Reservoir(size=size, seed=reservoir_seed(seed, key, kind))
                info = ReservoirInfo(scope=key, kind=kind, embedder=name, size=size, seed=res.seed)
            else:
                res, info = loaded
            if info.pinned:
                decisions.append(
                    {
                        "scope": key,
                        "kind": kind,
                        "window": None,
                        "decision": "pinned",
                        "n": 0,
                        "reservoir_rows": len(res.ids),
                    }
                )
                continue
            marks = [datetime.fromisoformat(w["until"]) for w in info.folded + info.skipped]
            start = max([first, *marks])
            changed = False
            w_since = start
            while w_since + step <= end:
                w = Window(w_since, w_since + step)
                w_since += step
                cur = reader.read(w.since, w.until, plant=scope)
                entry = {
                    "since": w.since.isoformat(),
                    "until": w.until.isoformat(),
                    "label": w.label(),
                    "rows": len(cur.request_ids),
                }
                if not cur.request_ids:
                    continue
                if len(res.ids) < MIN_SAMPLES:
                    decision = "initial"
                elif len(cur.request_ids) < MIN_SAMPLES:
                    decision = "too few rows"
                else:
                    ref = WindowVectors(list(res.ids), list(res.texts), res.vectors)
                    row = drift_row(
                        ref,
                        cur,
                        scope,
                        None,
                        kind=kind,
                        embedder=name,
                        method=method,
                        alpha=alpha,
                        explain=True,
                    )
                    row.update(
                        baseline=info.describe(res),
                        baseline_key=BASELINE_RESERVOIR,
                        current=w.label(),
                        window_start=w.since,
                        window_end=w.until,
                    )
                    tests.append(row)
                    decision = "folded" if row["status"] == "OK" else "drifted"
                    entry.update(status=row["status"], p_value=row.get("p_value"))
                if decision == "drifted" and scope is not None:
                    drifted.setdefault(w.label(), set()).add(scope)
                left_out = sorted(drifted.get(w.label(), ())) if scope is None else []
                if decision in ("initial", "folded"):
                    if left_out:
                        cur = _without_plants(settings, reader, w, left_out)
                        entry["left_out"] = left_out
                    res.add(cur.vectors, cur.request_ids, cur.texts, stream_rows=cur.n_total)
                    info.folded.append({**entry, "decision": decision})
                else:
                    info.skipped.append({**entry, "decision": decision})
                changed = True
                decisions.append(
                    {
                        "scope": key,
                        "kind": kind,
                        "window": w.label(),
                        "decision": decision,
                        "n": len(cur.request_ids),
                        "reservoir_rows": len(res.ids),
                        "p_value": entry.get("p_value"),
                        "left_out": ", ".join(left_out) or None,
                    }
                )
            if changed:
                save_reservoir(settings, res, info)
    if tests:
        record_results(settings, tests)
    return decisions


def _without_plants(
    settings: Settings, reader: WindowReader, w: Window, left_out: list[str]
) -> WindowVectors:
    """The window's rows of every plant but ``left_out``, plant by plant, oldest first."""
    kept = [(p, None) for p in plants(settings, w.since, w.until) if p not in left_out]
    parts = reader.read_scopes(w.since, w.until, kept)
    parts = [x for x in parts if x.request_ids]
    if not parts:
        return WindowVectors([], [], np.zeros((0, 0), np.float32))
    if any(x.sampled for x in parts):
        # Plants sampled apart, each at the cap: take from each in proportion to its window,
        # so that the union is a uniform sample of the union.
        rate = min(len(x.request_ids) / (x.n_total or 1) for x in parts)
        parts = [_thinned(x, rate) for x in parts]
    return WindowVectors(
        [i for x in parts for i in x.request_ids],
        [t for x in parts for t in x.texts],
        np.concatenate([x.vectors for x in parts]),
        n_total=sum(x.n_total or 0 for x in parts),
    )


def _thinned(x: WindowVectors, rate: float) -> WindowVectors:
    """About ``rate`` of ``x``'s window: the first rows of ``x`` in its own sample order (the id
    hash), so the rows kept are still a uniform sample."""
    keep_n = max(1, round(rate * (x.n_total or 0)))
    if keep_n >= len(x.request_ids):
        return x
    order = np.sort(np.argsort(id_hashes(x.request_ids), kind="stable")[:keep_n])
    return WindowVectors(
        [x.request_ids[i] for i in order],
        [x.texts[i] for i in order],
        x.vectors[order],
        n_total=x.n_total,
    )


def baseline_rows(settings: Settings) -> list[dict[str, Any]]:
    """Every stored reservoir: scope, kind, embedder, rows kept of rows seen, windows, update."""
    out = []
    for res, info in list_reservoirs(settings):
        until = info.folded_until
        out.append(
            {
                "scope": info.scope,
                "kind": info.kind,
                "embedder": info.embedder,
                "rows": len(res.ids),
                "size": res.size,
                "rows_seen": res.seen,
                "windows_folded": len(info.folded),
                "windows_skipped": len(info.skipped),
                "folded_through": until.date().isoformat() if until else None,
                "skipped": [w["label"] + " (" + w["decision"] + ")" for w in info.skipped],
                "pinned": info.pinned,
                "updated_at": info.updated_at,
            }
        )
    return out
