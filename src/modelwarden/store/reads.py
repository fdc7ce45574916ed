"""Reads over the log store that several features share: the store itself, its time span,
a filtered request table, the plants and versions seen, rejected records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from modelwarden.errors import NotFoundError
from modelwarden.settings import Settings
from modelwarden.store.engines import to_arrow
from modelwarden.store.logstore import LogStore


def open_store(settings: Settings) -> LogStore:
    return LogStore(
        settings.log_dir,
        threads=0,
        engine=settings.analytics_engine,
        spark_master=settings.spark_master,
    )


def time_bounds(settings: Settings, con: Any = None) -> tuple[datetime, datetime] | None:
    """First and last request timestamp in the store, or None when it is empty; ``con`` is a
    connection of the store to reuse (default: a new one)."""
    store = open_store(settings)
    if not store.files("requests"):
        return None
    con = con if con is not None else store.connect()
    t = con.table("requests")
    row = to_arrow(con, t.aggregate(lo=t.timestamp.min(), hi=t.timestamp.max())).to_pylist()[0]
    return row["lo"], row["hi"]


def filtered_requests(
    con: Any,
    since: datetime | None,
    until: datetime | None,
    plant: str | None = None,
    version: str | None = None,
    include_shadow: bool = True,
) -> Any:
    t = con.table("requests")
    if since is not None:
        t = t.filter(t.timestamp >= since)
    if until is not None:
        t = t.filter(t.timestamp < until)
    if plant:
        t = t.filter(t.plant_id == plant)
    if version:
        t = t.filter(t.model_version == version)
    if not include_shadow:
        t = t.filter(t.route.isnull() | (t.route != "shadow"))
    return t


def plants(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> list[str]:
    store = open_store(settings)
    con = store.connect()
    t = filtered_requests(con, since, until)
    return sorted(
        x
        for x in con.to_pyarrow(t.select("plant_id").distinct()).column("plant_id").to_pylist()
        if x
    )


def versions(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> list[str]:
    store = open_store(settings)
    con = store.connect()
    t = filtered_requests(con, since, until, include_shadow=False)
    return sorted(
        x
        for x in con.to_pyarrow(t.select("model_version").distinct())
        .column("model_version")
        .to_pylist()
        if x
    )


def rejected(
    settings: Settings, limit: int = 50, source: str | None = None
) -> list[dict[str, Any]]:
    store = open_store(settings)
    con = store.connect()
    t = con.table("rejected")
    if source:
        t = t.filter(t.source == source)
    t = t.order_by([t.rejected_at.desc(), t.source, t.location]).limit(limit)
    return con.to_pyarrow(t.drop("raw")).to_pylist()


def require_data(settings: Settings, con: Any = None) -> tuple[datetime, datetime]:
    bounds = time_bounds(settings, con)
    if bounds is None:
        raise NotFoundError(
            "no requests stored yet (in the --data directory); ingest some first "
            "(modelwarden ingest FILE, or modelwarden simulate --ingest)"
        )
    return bounds


def as_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


def shared_strings(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An object array of a string column whose rows share one ``str`` per distinct value.

    A column holds a few plants and versions over many rows: decoding each row to its own
    Python string (``to_pylist``) costs a tick time and memory in proportion to the rows read.
    """
    enc = (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).dictionary_encode()
    values = np.asarray([*enc.dictionary.to_pylist(), None], dtype=object)
    idx = enc.indices.fill_null(len(enc.dictionary)).to_numpy(zero_copy_only=False)
    return values[np.asarray(idx, dtype=np.intp)]
