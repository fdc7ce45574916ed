"""What the SOP engine looks at, read from the log store: requests, effective feedback, escalations.

Shadow copies are left out (they serve nobody). A request's feedback is its latest feedback event,
else its inline score, and it counts from the moment it was known (``score_at``), so a replay of
history does not see feedback before it arrived. Escalations belong to the plant and version of
the request they are about and count at their own timestamp.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import numpy as np
import pyarrow as pa

from modelwarden.policy.engine import Observations
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store


def _us(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(
        col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )


def load_observations(
    settings: Settings, since: datetime | None, until: datetime | None
) -> Observations:
    """Requests with ``since < timestamp <= until`` and escalations in the same range."""
    store = open_store(settings)
    con = store.connect()
    req = con.table("requests")
    r = req.filter(req.route.isnull() | (req.route != "shadow"))
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
    t = con.to_pyarrow(j)
    esc = con.table("escalations")
    e = esc
    if since is not None:
        e = e.filter(e.timestamp > since)
    if until is not None:
        e = e.filter(e.timestamp <= until)
    keys = req.select("request_id", "plant_id", "model_version")
    ej = e.inner_join(keys, "request_id").select(
        "timestamp", "plant_id", "model_version", "category", "confirmed"
    )
    et = con.to_pyarrow(ej)
    score = t.column("score").to_numpy(zero_copy_only=False)
    return Observations(
        ts=_us(t.column("ts")),
        plant=np.asarray(t.column("plant").to_pylist(), dtype=object),
        version=np.asarray(t.column("version").to_pylist(), dtype=object),
        latency=np.asarray(t.column("latency").to_numpy(zero_copy_only=False), dtype=float),
        safety=np.asarray(t.column("safety").to_pylist(), dtype=bool),
        score=np.asarray(score, dtype=float),
        error=np.asarray(t.column("error").to_pylist(), dtype=bool),
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
