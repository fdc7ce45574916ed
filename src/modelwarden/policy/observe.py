"""What the SOP engine looks at, read from the log store: requests, effective feedback, escalations.

Shadow copies are left out (they serve nobody). A request's feedback is its latest feedback event,
else its inline score, and it counts from the moment it was known (``score_at``), so a replay of
history does not see feedback before it arrived. Escalations belong to the plant and version of
the request they are about and count at their own timestamp.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwarden.policy.engine import Observations
from modelwarden.settings import Settings
from modelwarden.store.engines import to_arrow
from modelwarden.store.logstore import LogStore
from modelwarden.store.reads import open_store, shared_strings
from modelwarden.store.schema import SCHEMAS
from modelwarden.store.tables import as_utc


def _us(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(
        col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )


def _bools(col: pa.ChunkedArray) -> np.ndarray:
    """A boolean column without nulls as a numpy array."""
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=bool)


def load_observations(
    settings: Settings, since: datetime | None, until: datetime | None
) -> Observations:
    """Requests with ``since < timestamp <= until`` and escalations in the same range."""
    store = open_store(settings)
    # Only the tables it reads: making a table over files reads each file's footer.
    con = store.connect(kinds=["feedback"])
    try:
        # The requests and escalations of the range from the directories of its days only.
        lo, hi = as_utc(since), as_utc(until)
        first = lo.date() if lo is not None else None
        last = hi.date() if hi is not None else None
        store.days_table(con, "requests", first, last, "requests_in_range")
        store.days_table(con, "escalations", first, last, "escalations_in_range")
        return _load(store, con, since, until)
    finally:
        # Now rather than when the collector finds it: the connection's DuckDB database (its
        # buffers and threads) and the directory handles of its tables.
        store.close(con)


_ESC_COLS = ("timestamp", "category", "confirmed")
_KEY_COLS = ("request_id", "plant_id", "model_version")
_ID_LIST_MAX = 1000


def _escalations(store: LogStore, con: Any, esc: pa.Table) -> pa.Table:
    """The escalations ``esc`` with the plant and version of the requests they are about.

    An escalation is about a request of the range's days as a rule: those are looked up in the
    range's own table. Only the ids not found there are looked for in every stored request (an
    escalation may be about an older one), and only when there are such ids, since that table
    lists and reads the key columns of the whole store.
    """
    if not esc.num_rows:
        empty = [SCHEMAS["requests"].field(c) for c in _KEY_COLS]
        return esc.join(pa.schema(empty).empty_table(), "request_id")
    ids = pc.unique(esc.column("request_id"))
    keys = _keys_of(con, con.table("requests_in_range"), ids)
    missing = pc.filter(ids, pc.invert(pc.is_in(ids, keys.column("request_id"))))
    if len(missing):
        older = _keys_of(con, store.table(con, "requests"), missing)
        keys = pa.concat_tables([keys, older.cast(keys.schema)])
    return esc.join(keys, "request_id", join_type="inner")


def _keys_of(con: Any, table: Any, ids: pa.Array) -> pa.Table:
    """``request_id, plant_id, model_version`` of the rows of ``table`` with one of ``ids``."""
    keys = table.select(*_KEY_COLS)
    if len(ids) <= _ID_LIST_MAX:
        return to_arrow(con, keys.filter(keys.request_id.isin(ids.to_pylist())))
    # Many ids (a long replay): every row's keys, matched here rather than in a huge IN list.
    out = to_arrow(con, keys)
    return out.filter(pc.is_in(out.column("request_id"), ids))


def _load(
    store: LogStore, con: Any, since: datetime | None, until: datetime | None
) -> Observations:
    rr = con.table("requests_in_range")
    r = rr.filter(rr.route.isnull() | (rr.route != "shadow"))
    if since is not None:
        r = r.filter(r.timestamp > since)
    if until is not None:
        r = r.filter(r.timestamp <= until)
    fb = con.table("feedback")
    latest = fb.group_by("request_id").agg(
        fb_score=fb.score.argmax(fb.timestamp), fb_at=fb.timestamp.max()
    )
    j = r.left_join(latest, "request_id")
    j = j.select(
        ts=j.timestamp,
        plant=j.plant_id,
        version=j.model_version,
        latency=j.latency_ms,
        safety=j.contains_safety_keyword.fill_null(False),
        score=ibis.coalesce(j.fb_score.cast("float64"), j.human_feedback_score.cast("float64")),
        score_at=ibis.coalesce(j.fb_at, j.timestamp),
        error=j.error.notnull(),
    )
    t = to_arrow(con, j)
    e = con.table("escalations_in_range")
    if since is not None:
        e = e.filter(e.timestamp > since)
    if until is not None:
        e = e.filter(e.timestamp <= until)
    et = _escalations(store, con, to_arrow(con, e.select("request_id", *_ESC_COLS)))
    score = t.column("score").to_numpy(zero_copy_only=False)
    return Observations(
        ts=_us(t.column("ts")),
        plant=shared_strings(t.column("plant")),
        version=shared_strings(t.column("version")),
        latency=np.asarray(t.column("latency").to_numpy(zero_copy_only=False), dtype=float),
        safety=_bools(t.column("safety")),
        score=np.asarray(score, dtype=float),
        error=_bools(t.column("error")),
        score_at=_us(t.column("score_at")),
        esc_ts=_us(et.column("timestamp")),
        esc_plant=np.asarray(et.column("plant_id").to_pylist(), dtype=object),
        esc_version=np.asarray(et.column("model_version").to_pylist(), dtype=object),
        esc_category=np.asarray(
            [c or "other" for c in et.column("category").to_pylist()], dtype=object
        ),
        esc_confirmed=np.asarray([bool(c) for c in et.column("confirmed").to_pylist()], dtype=bool),
    )


__all__ = ["load_observations"]
