"""Daily KPI rollups: what the console's overview reads instead of scanning every request.

One row per UTC day, plant, model version and route holds the sums the overview's KPIs are made
of (requests, errors, latency count and sum, safety flags, the effective feedback's count and sum,
confirmed escalations), and a latency histogram per row with fixed log-spaced buckets. They live
in ``DATA/log/rollups.sqlite`` (SQLite in WAL mode: the flusher writes while the server reads).

**Latency percentiles.** Bucket 0 holds latencies under 1 ms; bucket ``k >= 1`` holds
``[1.02^(k-1), 1.02^k)`` ms, up to about an hour (the last bucket takes anything longer). A
percentile is computed exactly as :mod:`modelwarden.kpi.compute` does it (linear interpolation
between the closest ranks) over the buckets' geometric midpoints, so it is within
``sqrt(1.02) - 1`` (1.0 %) of the exact value for latencies of 1 ms and more (0.5 ms below).
Every other KPI is exact.

**Maintenance.** :func:`update` folds the Parquet files one store append has just written into the
rollups (the ingest path calls it after every stored batch, so the flusher keeps them current). A
feedback event changes its request's effective score (the latest event, else the record's own
score) by the difference it makes; a request or an escalation that arrives before the other half
of its pair is counted when the second one is stored. :func:`rebuild` recomputes everything from
the store (``modelwarden rollups rebuild``) while holding the store's append lock, and notes the
files it saw, so an :func:`update` racing with it neither loses nor doubles a batch. Updates are
exact when batches are stored one at a time (as the flusher does); two processes writing requests
and their feedback at the same moment may need a rebuild.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from modelwarden.store.duckdb_sql import connect, read_parquet_sql
from modelwarden.store.logstore import LogStore

RATIO = 1.02
N_BUCKETS = 2 + math.ceil(math.log(3_600_000) / math.log(RATIO))
SCHEME = f"log{RATIO}x{N_BUCKETS}"
FILE = "rollups.sqlite"
DAY_US = 86_400_000_000
# Files a rebuild saw stay noted this long, for the update of an append that raced with it.
FOLDED_KEEP_S = 3600.0

_GROUP = ("day", "plant_id", "model_version", "route")
_SUMS = ("requests", "errors", "lat_n", "lat_sum", "safety", "fb_n", "fb_sum", "esc")

_DDL = (
    """CREATE TABLE IF NOT EXISTS rollup (
        day INTEGER NOT NULL, plant_id TEXT NOT NULL, model_version TEXT NOT NULL,
        route TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
        lat_n INTEGER NOT NULL DEFAULT 0, lat_sum REAL NOT NULL DEFAULT 0,
        safety INTEGER NOT NULL DEFAULT 0, fb_n INTEGER NOT NULL DEFAULT 0,
        fb_sum REAL NOT NULL DEFAULT 0, esc INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, plant_id, model_version, route))""",
    """CREATE TABLE IF NOT EXISTS rollup_latency (
        day INTEGER NOT NULL, plant_id TEXT NOT NULL, model_version TEXT NOT NULL,
        route TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (day, plant_id, model_version, route, bucket))""",
    "CREATE TABLE IF NOT EXISTS folded (file TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
)


def path_of(store: LogStore) -> Path:
    return store.root / FILE


@contextmanager
def _db(store: LogStore) -> Iterator[sqlite3.Connection]:
    store.root.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path_of(store), timeout=60, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for ddl in _DDL:
            db.execute(ddl)
        yield db
    finally:
        db.close()


def built(store: LogStore) -> bool:
    """Whether the rollups were built (by :func:`rebuild`) with this bucket scheme."""
    if not path_of(store).exists():
        return False
    with _db(store) as db:
        row = db.execute("SELECT v FROM meta WHERE k = 'scheme'").fetchone()
    return row is not None and row[0] == SCHEME


# ---- the SQL both paths share ------------------------------------------------------------------
_BUCKET = (
    "CASE WHEN latency_ms IS NULL THEN NULL WHEN latency_ms < 1 THEN 0 "
    f"ELSE least({N_BUCKETS - 1}, 1 + CAST(floor(ln(latency_ms) / ln({RATIO})) AS BIGINT)) END"
)
_REQ_COLS = (
    f"request_id, CAST(epoch_us(timestamp) // {DAY_US} AS BIGINT) AS day, "
    "coalesce(plant_id, '') AS plant_id, coalesce(model_version, '') AS model_version, "
    "coalesce(route, '') AS route, latency_ms, error, contains_safety_keyword, "
    "CAST(human_feedback_score AS DOUBLE) AS inline"
)
_G = ", ".join(_GROUP)


def _requests_part(con: duckdb.DuckDBPyConnection, src: str, fb: str) -> tuple[Any, Any]:
    """Sums and histogram of the requests in ``src``; ``fb`` holds each request's latest
    feedback event score (``request_id, s``). The join is made once, into a temporary table that
    both aggregates read (as a view, each would scan the store's files again)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE eff AS SELECT r.*, coalesce(CAST(f.s AS DOUBLE), r.inline) "
        f"AS score, {_BUCKET} AS bucket FROM {src} r LEFT JOIN {fb} f USING (request_id)"
    )
    sums = con.sql(
        f"SELECT {_G}, count(*) AS requests, count(error) AS errors, count(latency_ms) AS lat_n, "
        "coalesce(sum(latency_ms), 0) AS lat_sum, "
        "coalesce(sum(CAST(coalesce(contains_safety_keyword, false) AS INTEGER)), 0) AS safety, "
        "count(score) AS fb_n, coalesce(sum(score), 0) AS fb_sum, 0 AS esc "
        f"FROM eff GROUP BY {_G}"
    ).fetchall()
    hist = con.sql(
        f"SELECT {_G}, bucket, count(*) FROM eff WHERE bucket IS NOT NULL GROUP BY {_G}, bucket"
    ).fetchall()
    con.execute("DROP TABLE eff")
    return sums, hist


def _escalations_part(con: duckdb.DuckDBPyConnection, esc: str, req: str) -> list[Any]:
    """Confirmed escalations in ``esc`` about requests in ``req``, by the escalation's own day
    and the request's plant, version and route."""
    return con.sql(
        f"SELECT CAST(epoch_us(e.timestamp) // {DAY_US} AS BIGINT) AS day, r.plant_id, "
        "r.model_version, r.route, 0, 0, 0, 0, 0, 0, 0, count(*) "
        f"FROM {esc} e JOIN {req} r USING (request_id) WHERE e.confirmed "
        "GROUP BY 1, 2, 3, 4"
    ).fetchall()


def _files_view(con: duckdb.DuckDBPyConnection, name: str, files: Sequence[str], cols: str) -> None:
    if files:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {cols} FROM {read_parquet_sql(files)}"
        )
    else:
        empty = {
            "req": "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS day, NULL::VARCHAR AS "
            "plant_id, NULL::VARCHAR AS model_version, NULL::VARCHAR AS route, NULL::DOUBLE AS "
            "latency_ms, NULL::VARCHAR AS error, NULL::BOOLEAN AS contains_safety_keyword, "
            "NULL::DOUBLE AS inline WHERE false",
            "fbk": "SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS request_id, "
            "NULL::TIMESTAMPTZ AS timestamp, NULL::INTEGER AS score WHERE false",
            "esk": "SELECT NULL::VARCHAR AS event_id, NULL::VARCHAR AS request_id, "
            "NULL::TIMESTAMPTZ AS timestamp, NULL::BOOLEAN AS confirmed WHERE false",
        }
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {empty[name[:3]]}")


_FB_COLS = "event_id, request_id, timestamp, CAST(score AS INTEGER) AS score"
_ESC_COLS = "event_id, request_id, timestamp, confirmed"


def _add(db: sqlite3.Connection, sums: Sequence[Any], hist: Sequence[Any]) -> None:
    db.executemany(
        f"INSERT INTO rollup ({_G}, {', '.join(_SUMS)}) VALUES ({', '.join('?' * 12)}) "
        f"ON CONFLICT ({_G}) DO UPDATE SET "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS),
        sums,
    )
    db.executemany(
        f"INSERT INTO rollup_latency ({_G}, bucket, n) VALUES (?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT ({_G}, bucket) DO UPDATE SET n = n + excluded.n",
        hist,
    )


# ---- maintenance -----------------------------------------------------------------------------------
def update(store: LogStore, kind: str, files: Sequence[str]) -> None:
    """Fold the rows of ``files`` (just appended to ``kind``) into the rollups.

    Does nothing until the rollups were built once (:func:`rebuild`), which counts them anyway.
    """
    if kind not in ("requests", "feedback", "escalations") or not files or not built(store):
        return
    with _db(store) as db:
        seen = {
            r[0]
            for r in db.execute(
                f"SELECT file FROM folded WHERE file IN ({', '.join('?' * len(files))})",
                list(files),
            )
        }
    new = [f for f in files if f not in seen]
    if not new:
        return
    con = connect(1)
    try:
        sums, hist = _delta(con, store, kind, new)
    finally:
        con.close()
    with _db(store) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            # A rebuild that committed meanwhile saw these files: it counted them already.
            raced = db.execute(
                f"SELECT count(*) FROM folded WHERE file IN ({', '.join('?' * len(new))})", new
            ).fetchone()[0]
            if not raced:
                _add(db, sums, hist)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _delta(
    con: duckdb.DuckDBPyConnection, store: LogStore, kind: str, new: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    if kind == "requests":
        # The new batch, and the stored events about it, each read once into a temporary table.
        _files_view(con, "req_view", new, _REQ_COLS)
        con.execute("CREATE OR REPLACE TEMP TABLE req_new AS SELECT * FROM req_view")
        ids = "(SELECT request_id FROM req_new)"
        _files_view(con, "fbk_all", store.files("feedback"), _FB_COLS)
        _files_view(con, "esk_all", store.files("escalations"), _ESC_COLS)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fb AS SELECT request_id, arg_max(score, timestamp) AS s "
            f"FROM fbk_all WHERE request_id IN {ids} GROUP BY request_id"
        )
        sums, hist = _requests_part(con, "req_new", "fb")
        esc = _escalations_part(con, "esk_all", "req_new")
        con.execute("DROP TABLE fb")
        con.execute("DROP TABLE req_new")
        return sums + esc, hist
    if kind == "escalations":
        _files_view(con, "esk_new", new, _ESC_COLS)
        _files_view(con, "req_all", store.files("requests"), _REQ_COLS)
        con.execute(
            "CREATE OR REPLACE TEMP VIEW req_for AS SELECT * FROM req_all WHERE request_id IN "
            "(SELECT request_id FROM esk_new WHERE confirmed)"
        )
        return _escalations_part(con, "esk_new", "req_for"), []
    # feedback: the change each request's effective score undergoes
    _files_view(con, "fbk_new", new, _FB_COLS)
    _files_view(con, "fbk_all", store.files("feedback"), _FB_COLS)
    _files_view(con, "req_all", store.files("requests"), _REQ_COLS)
    ids = "(SELECT DISTINCT request_id FROM fbk_new)"
    rows = con.sql(
        f"""
        WITH r AS (SELECT * FROM req_all WHERE request_id IN {ids}),
        mine AS (SELECT * FROM fbk_all WHERE request_id IN {ids}),
        after AS (SELECT request_id, arg_max(score, timestamp) AS s FROM mine GROUP BY 1),
        before AS (SELECT request_id, arg_max(score, timestamp) AS s FROM mine
                   WHERE event_id NOT IN (SELECT event_id FROM fbk_new) GROUP BY 1),
        x AS (SELECT r.*, coalesce(CAST(b.s AS DOUBLE), r.inline) AS was,
                     coalesce(CAST(a.s AS DOUBLE), r.inline) AS now
              FROM r LEFT JOIN after a USING (request_id) LEFT JOIN before b USING (request_id))
        SELECT {_G}, 0, 0, 0, 0, 0, count(now) - count(was),
               coalesce(sum(now), 0) - coalesce(sum(was), 0), 0
        FROM x GROUP BY {_G}
        """
    ).fetchall()
    return rows, []


@dataclass
class RebuildReport:
    rows: int
    latency_rows: int
    requests: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rebuild(store: LogStore, threads: int = 0) -> RebuildReport:
    """Recompute every rollup from the store (appends wait meanwhile; reads do not)."""
    t0 = time.perf_counter()
    with store.lock():
        files = {k: store.files(k) for k in ("requests", "feedback", "escalations")}
        con = connect(threads)
        try:
            _files_view(con, "req_all", files["requests"], _REQ_COLS)
            _files_view(con, "fbk_all", files["feedback"], _FB_COLS)
            _files_view(con, "esk_all", files["escalations"], _ESC_COLS)
            con.execute(
                "CREATE OR REPLACE TEMP VIEW fb AS SELECT request_id, "
                "arg_max(score, timestamp) AS s FROM fbk_all GROUP BY request_id"
            )
            sums, hist = _requests_part(con, "req_all", "fb")
            sums += _escalations_part(con, "esk_all", "req_all")
        finally:
            con.close()
        now = time.time()
        with _db(store) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM rollup")
                db.execute("DELETE FROM rollup_latency")
                db.execute("DELETE FROM folded WHERE at < ?", (now - FOLDED_KEEP_S,))
                _add(db, sums, hist)
                recent = [f for fs in files.values() for f in fs if _recent(f, now)]
                db.executemany(
                    "INSERT OR REPLACE INTO folded (file, at) VALUES (?, ?)",
                    [(f, now) for f in recent],
                )
                db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('scheme', ?)", (SCHEME,))
                db.execute(
                    "INSERT OR REPLACE INTO meta (k, v) VALUES ('rebuilt_at', ?)",
                    (datetime.now(UTC).isoformat(),),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    n_req = sum(int(r[4]) for r in sums)
    return RebuildReport(len(sums), len(hist), n_req, round(time.perf_counter() - t0, 3))


def _recent(path: str, now: float) -> bool:
    try:
        return now - Path(path).stat().st_mtime < FOLDED_KEEP_S
    except OSError:
        return False


# ---- reading -------------------------------------------------------------------------------------
def bucket_value(b: int) -> float:
    """The value a bucket stands for: its geometric midpoint (0.5 ms for bucket 0)."""
    return 0.5 if b == 0 else RATIO ** (b - 0.5)


def quantiles(hist: dict[int, int], qs: Sequence[float]) -> list[float | None]:
    """Percentiles of a histogram, interpolated between closest ranks like ``numpy.quantile``."""
    order = sorted((b, c) for b, c in hist.items() if c > 0)
    if not order:
        return [None for _ in qs]
    ends = list(itertools.accumulate(c for _b, c in order))  # rank just past each bucket
    n = ends[-1]

    def at(rank: int) -> float:
        return bucket_value(order[bisect.bisect_right(ends, rank)][0])

    out: list[float | None] = []
    for q in qs:
        h = (n - 1) * q
        lo = math.floor(h)
        v_lo, v_hi = at(lo), at(min(lo + 1, n - 1))
        out.append(v_lo + (h - lo) * (v_hi - v_lo))
    return out


def day_range(store: LogStore) -> tuple[date, date] | None:
    """The first and last UTC day with requests in the rollups (None when empty)."""
    with _db(store) as db:
        lo, hi = db.execute("SELECT min(day), max(day) FROM rollup WHERE requests > 0").fetchone()
    if lo is None:
        return None
    epoch = date(1970, 1, 1)
    return epoch + timedelta(days=int(lo)), epoch + timedelta(days=int(hi))


def _window_start(key: int, window: str) -> datetime:
    day = key if window == "day" else key * 7 - 3
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def _day_number(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def kpis(store: LogStore, since: date, until: date, window: str = "week") -> list[dict[str, Any]]:
    """KPI rows per window (``day`` or ``week``), plant and model version over ``[since, until)``
    (whole UTC days), with the fields of :func:`modelwarden.kpi.compute.kpi_expr`. Shadow copies
    are left out of the request metrics (escalations count whatever they are about)."""
    lo, hi = _day_number(since), _day_number(until)
    key = "day" if window == "day" else "(day + 3) / 7"  # ISO weeks: 1970-01-01 was a Thursday
    served = ", ".join(f"sum(CASE WHEN route != 'shadow' THEN {c} ELSE 0 END)" for c in _SUMS[:-1])
    with _db(store) as db:
        rows = db.execute(
            f"SELECT {key} AS k, plant_id, model_version, {served}, sum(esc) FROM rollup "
            "WHERE day >= ? AND day < ? GROUP BY k, plant_id, model_version",
            (lo, hi),
        ).fetchall()
        hist_rows = db.execute(
            f"SELECT {key} AS k, plant_id, model_version, bucket, sum(n) FROM rollup_latency "
            "WHERE day >= ? AND day < ? AND route != 'shadow' "
            "GROUP BY k, plant_id, model_version, bucket",
            (lo, hi),
        ).fetchall()
    acc = {
        (k, plant, version): dict(zip(_SUMS, vals, strict=True))
        for k, plant, version, *vals in rows
    }
    hists: dict[tuple[int, str, str], dict[int, int]] = {}
    for k, plant, version, b, n in hist_rows:
        hists.setdefault((k, plant, version), {})[b] = int(n)
    out = []
    for (k, plant, version), a in sorted(acc.items()):
        n = int(a["requests"])
        p50, p95, p99 = quantiles(hists.get((k, plant, version), {}), (0.5, 0.95, 0.99))
        out.append(
            {
                "window_start": _window_start(k, window),
                "plant_id": plant or None,
                "model_version": version or None,
                "requests": n,
                "latency_avg_ms": a["lat_sum"] / a["lat_n"] if a["lat_n"] else None,
                "latency_p50_ms": p50,
                "latency_p95_ms": p95,
                "latency_p99_ms": p99,
                "feedback_avg": a["fb_sum"] / a["fb_n"] if a["fb_n"] else None,
                "feedback_n": int(a["fb_n"]),
                "safety_incidents": int(a["safety"]),
                "safety_rate": a["safety"] / n if n else None,
                "errors": int(a["errors"]),
                "escalations_confirmed": int(a["esc"]),
            }
        )
    return out


__all__ = [
    "N_BUCKETS",
    "RATIO",
    "RebuildReport",
    "built",
    "day_range",
    "kpis",
    "path_of",
    "quantiles",
    "rebuild",
    "update",
]
