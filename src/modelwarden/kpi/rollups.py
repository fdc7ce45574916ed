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
of its pair is counted when the second one is stored. An update reads only the new files: what it
needs of earlier batches it looks up by request id in side tables of the same SQLite file (each
stored request row's day, plant, version, route and inline score; the latest feedback event per
request id; every confirmed escalation's request id and day), which it keeps current in the same
transaction, so its cost depends on the batch, not on the size of the store. The side tables
take about as much space as the store's key indexes of the requests.

:func:`rebuild` recomputes everything, side tables included, from the store
(``modelwarden rollups rebuild``) while holding the store-wide lock, which updates take too: an
update waits while a rebuild runs (the flusher pauses after its current batch; reads do not wait), and
the rebuild notes the files it saw, so an update of one of them that comes after it adds nothing.
Updates run one at a time, so requests and their feedback stored by two processes at the same
moment are counted exactly.
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
import pyarrow as pa

from modelwarden.store.duckdb_sql import connect, read_parquet_sql
from modelwarden.store.logstore import LogStore

RATIO = 1.02
N_BUCKETS = 2 + math.ceil(math.log(3_600_000) / math.log(RATIO))
# The bucket scheme, and the side tables updates look up (rollups built without them are rebuilt).
SCHEME = f"log{RATIO}x{N_BUCKETS}+side1"
FILE = "rollups.sqlite"
DAY_US = 86_400_000_000
# Files a rebuild saw stay noted this long, for the update of an append that raced with it.
FOLDED_KEEP_S = 3600.0
# Host parameters per SQLite statement (its limit is 32766).
_CHUNK = 900

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
    # Side tables: what an update needs to know of the batches stored before its own.
    # The day, plant, version and route of each stored request row, and its inline score.
    """CREATE TABLE IF NOT EXISTS grp (
        gid INTEGER PRIMARY KEY, day INTEGER NOT NULL, plant_id TEXT NOT NULL,
        model_version TEXT NOT NULL, route TEXT NOT NULL,
        UNIQUE (day, plant_id, model_version, route))""",
    """CREATE TABLE IF NOT EXISTS req (
        request_id TEXT NOT NULL, gid INTEGER NOT NULL, inline REAL,
        PRIMARY KEY (request_id, gid)) WITHOUT ROWID""",
    # The latest feedback event per request id, whether its request is stored or not.
    """CREATE TABLE IF NOT EXISTS fb_latest (
        request_id TEXT PRIMARY KEY, ts INTEGER NOT NULL, event_id TEXT NOT NULL,
        score INTEGER NOT NULL) WITHOUT ROWID""",
    # Every confirmed escalation (its request id and day), whether its request is stored or not.
    "CREATE TABLE IF NOT EXISTS esc (request_id TEXT NOT NULL, day INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS esc_request ON esc (request_id)",
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
_DAY = f"CAST(epoch_us(timestamp) // {DAY_US} AS BIGINT) AS day"
_REQ_COLS = (
    f"request_id, {_DAY}, "
    "coalesce(plant_id, '') AS plant_id, coalesce(model_version, '') AS model_version, "
    "coalesce(route, '') AS route, latency_ms, error, contains_safety_keyword, "
    "CAST(human_feedback_score AS DOUBLE) AS inline"
)
# Feedback events with a score (the latest one is ``arg_max``'s, which skips NULLs); confirmed
# escalations by their own day.
_FB_COLS = "request_id, epoch_us(timestamp) AS ts, event_id, CAST(score AS INTEGER) AS score"
_FB_WHERE = "score IS NOT NULL"
_ESC_COLS = f"request_id, {_DAY}"
_ESC_WHERE = "confirmed"
# The latest event per request: latest timestamp, ties broken by the larger event id.
_LATEST = "QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY ts DESC, event_id DESC) = 1"
_G = ", ".join(_GROUP)

_EMPTY = {
    "req": "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS day, NULL::VARCHAR AS "
    "plant_id, NULL::VARCHAR AS model_version, NULL::VARCHAR AS route, NULL::DOUBLE AS "
    "latency_ms, NULL::VARCHAR AS error, NULL::BOOLEAN AS contains_safety_keyword, "
    "NULL::DOUBLE AS inline WHERE false",
    "fbk": "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS ts, NULL::VARCHAR AS event_id, "
    "NULL::INTEGER AS score WHERE false",
    "esk": "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS day WHERE false",
}


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
    """Confirmed escalations in ``esc`` (``request_id, day``) about requests in ``req``, by the
    escalation's own day and the request's plant, version and route (once per stored request
    row, as the exact KPIs' join counts them)."""
    return con.sql(
        "SELECT e.day, r.plant_id, r.model_version, r.route, 0, 0, 0, 0, 0, 0, 0, count(*) "
        f"FROM {esc} e JOIN {req} r USING (request_id) GROUP BY 1, 2, 3, 4"
    ).fetchall()


def _files_view(
    con: duckdb.DuckDBPyConnection, name: str, files: Sequence[str], cols: str, where: str = ""
) -> None:
    if files:
        cond = f" WHERE {where}" if where else ""
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {cols} "
            f"FROM {read_parquet_sql(files)}{cond}"
        )
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {_EMPTY[name[:3]]}")


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


# ---- the side tables an update looks up (instead of reading the store) ------------------------------
def _lookup(db: sqlite3.Connection, sql: str, ids: Sequence[str]) -> list[Any]:
    """Rows of ``sql`` (with one ``IN ({})`` over request ids), in chunks of host parameters."""
    out: list[Any] = []
    unique = sorted(set(ids))
    for i in range(0, len(unique), _CHUNK):
        chunk = unique[i : i + _CHUNK]
        out.extend(db.execute(sql.format(", ".join("?" * len(chunk))), chunk).fetchall())
    return out


def _stored_requests(db: sqlite3.Connection, ids: Sequence[str]) -> list[Any]:
    """Every stored request row with one of ``ids``: ``request_id, day, plant_id,
    model_version, route, inline`` (a request id can be stored on several days)."""
    return _lookup(
        db,
        "SELECT r.request_id, g.day, g.plant_id, g.model_version, g.route, r.inline "
        "FROM req r JOIN grp g USING (gid) WHERE r.request_id IN ({})",
        ids,
    )


def _remember_requests(db: sqlite3.Connection, rows: Sequence[Any]) -> None:
    """Note stored request rows (``request_id, day, plant_id, model_version, route, inline``)."""
    groups = sorted({tuple(r[1:5]) for r in rows})
    db.executemany(f"INSERT OR IGNORE INTO grp ({_G}) VALUES (?, ?, ?, ?)", groups)
    gid = {}
    for g in groups:
        gid[g] = db.execute(
            "SELECT gid FROM grp WHERE day = ? AND plant_id = ? AND model_version = ? "
            "AND route = ?",
            g,
        ).fetchone()[0]
    db.executemany(
        "INSERT OR IGNORE INTO req (request_id, gid, inline) VALUES (?, ?, ?)",
        sorted((r[0], gid[tuple(r[1:5])], r[5]) for r in rows),
    )


def _arrow(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema, rows: list[Any]) -> None:
    cols = [[r[i] for r in rows] for i in range(len(schema))]
    table = pa.table([pa.array(c, t) for c, t in zip(cols, schema.types, strict=True)], schema)
    con.register(name, table)


_REQ_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("day", pa.int64()),
        ("plant_id", pa.string()),
        ("model_version", pa.string()),
        ("route", pa.string()),
        ("inline", pa.float64()),
    ]
)


# ---- maintenance -----------------------------------------------------------------------------------
def update(store: LogStore, kind: str, files: Sequence[str]) -> None:
    """Fold the rows of ``files`` (just appended to ``kind``) into the rollups.

    Reads only ``files``; what it needs of earlier batches (the stored requests' groups, the
    latest feedback event per request, the confirmed escalations) it looks up by request id in
    the rollups' side tables, so its cost depends on the batch, not on the store.
    Does nothing until the rollups were built once (:func:`rebuild`), which counts them anyway.
    Waits while a rebuild runs (both hold the store-wide lock), so that an update is either
    counted by the rebuild (it saw the files) or made on top of its result.
    """
    if kind not in ("requests", "feedback", "escalations") or not files:
        return
    with store.lock():
        if built(store):
            _update(store, kind, files)


def _update(store: LogStore, kind: str, files: Sequence[str]) -> None:
    con = connect(1)
    try:
        with _db(store) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                # Files the last rebuild saw are counted already.
                marks = ", ".join("?" * len(files))
                seen = {
                    r[0]
                    for r in db.execute(f"SELECT file FROM folded WHERE file IN ({marks})", files)
                }
                new = [f for f in files if f not in seen]
                if new:
                    _FOLD[kind](db, con, new)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    finally:
        con.close()


def _fold_requests(db: sqlite3.Connection, con: duckdb.DuckDBPyConnection, new: list[str]) -> None:
    """New requests, with the latest feedback event and the confirmed escalations stored before
    them."""
    _files_view(con, "req_view", new, _REQ_COLS)
    con.execute("CREATE OR REPLACE TEMP TABLE req_new AS SELECT * FROM req_view")
    rows = con.execute(
        "SELECT request_id, day, plant_id, model_version, route, inline FROM req_new"
    ).fetchall()
    ids = [r[0] for r in rows]
    fb = _lookup(db, "SELECT request_id, score FROM fb_latest WHERE request_id IN ({})", ids)
    esc = _lookup(db, "SELECT request_id, day FROM esc WHERE request_id IN ({})", ids)
    _arrow(con, "fb", pa.schema([("request_id", pa.string()), ("s", pa.int32())]), fb)
    _arrow(con, "esk", pa.schema([("request_id", pa.string()), ("day", pa.int64())]), esc)
    sums, hist = _requests_part(con, "req_new", "fb")
    sums += _escalations_part(con, "esk", "req_new")
    con.execute("DROP TABLE req_new")
    _remember_requests(db, rows)
    _add(db, sums, hist)


def _fold_escalations(
    db: sqlite3.Connection, con: duckdb.DuckDBPyConnection, new: list[str]
) -> None:
    """New confirmed escalations, counted against the stored requests they are about (the
    others when their request is stored)."""
    _files_view(con, "esk_view", new, _ESC_COLS, _ESC_WHERE)
    esc = con.execute("SELECT request_id, day FROM esk_view").fetchall()
    db.executemany("INSERT INTO esc (request_id, day) VALUES (?, ?)", esc)
    _arrow(con, "esk", pa.schema([("request_id", pa.string()), ("day", pa.int64())]), esc)
    _arrow(con, "req_for", _REQ_SCHEMA, _stored_requests(db, [e[0] for e in esc]))
    _add(db, _escalations_part(con, "esk", "req_for"), [])


def _fold_feedback(db: sqlite3.Connection, con: duckdb.DuckDBPyConnection, new: list[str]) -> None:
    """New feedback events: each request whose latest event they replace changes its effective
    score (the latest event, else the inline score) by the difference."""
    _files_view(con, "fbk_view", new, _FB_COLS, _FB_WHERE)
    batch = con.execute(
        f"SELECT request_id, ts, event_id, score FROM fbk_view {_LATEST}"
    ).fetchall()
    old = {
        r[0]: r[1:]
        for r in _lookup(
            db,
            "SELECT request_id, ts, event_id, score FROM fb_latest WHERE request_id IN ({})",
            [b[0] for b in batch],
        )
    }
    changed: dict[str, tuple[int | None, int]] = {}
    for rid, ts, event_id, score in batch:
        before = old.get(rid)
        if before is None or (ts, event_id) > (before[0], before[1]):
            changed[rid] = (None if before is None else before[2], score)
    db.executemany(
        "INSERT INTO fb_latest (request_id, ts, event_id, score) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (request_id) DO UPDATE SET ts = excluded.ts, event_id = excluded.event_id, "
        "score = excluded.score",
        [b for b in batch if b[0] in changed],
    )
    delta: dict[tuple[Any, ...], list[float]] = {}
    for rid, *group, inline in _stored_requests(db, list(changed)):
        was_event, now = changed[rid]
        was = inline if was_event is None else was_event
        d = delta.setdefault(tuple(group), [0, 0.0])
        d[0] += (now is not None) - (was is not None)
        d[1] += (now or 0) - (was or 0)
    _add(db, [(*g, 0, 0, 0, 0, 0, n, s, 0) for g, (n, s) in sorted(delta.items())], [])


_FOLD = {"requests": _fold_requests, "feedback": _fold_feedback, "escalations": _fold_escalations}


@dataclass
class RebuildReport:
    rows: int
    latency_rows: int
    requests: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rebuild(store: LogStore, threads: int = 0) -> RebuildReport:
    """Recompute every rollup and side table from the store (updates wait meanwhile; reads do
    not)."""
    t0 = time.perf_counter()
    with store.lock():
        files = {k: store.files(k) for k in ("requests", "feedback", "escalations")}
        con = connect(threads)
        try:
            _files_view(con, "req_all", files["requests"], _REQ_COLS)
            _files_view(con, "fbk_all", files["feedback"], _FB_COLS, _FB_WHERE)
            _files_view(con, "esk_all", files["escalations"], _ESC_COLS, _ESC_WHERE)
            con.execute(f"CREATE OR REPLACE TEMP TABLE latest AS SELECT * FROM fbk_all {_LATEST}")
            con.execute(
                "CREATE OR REPLACE TEMP VIEW fb AS SELECT request_id, score AS s FROM latest"
            )
            sums, hist = _requests_part(con, "req_all", "fb")
            sums += _escalations_part(con, "esk_all", "req_all")
            now = time.time()
            with _db(store) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for table in ("rollup", "rollup_latency", "grp", "req", "fb_latest", "esc"):
                        db.execute(f"DELETE FROM {table}")
                    db.execute("DELETE FROM folded WHERE at < ?", (now - FOLDED_KEEP_S,))
                    _add(db, sums, hist)
                    _fill_side_tables(db, con)
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
        finally:
            con.close()
    n_req = sum(int(r[4]) for r in sums)
    return RebuildReport(len(sums), len(hist), n_req, round(time.perf_counter() - t0, 3))


def _fill_side_tables(db: sqlite3.Connection, con: duckdb.DuckDBPyConnection) -> None:
    """Every stored request row's group and inline score, the latest feedback event per request
    and every confirmed escalation, streamed in key order from the views of :func:`rebuild`."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE groups AS SELECT row_number() OVER (ORDER BY {_G}) AS gid, "
        f"{_G} FROM (SELECT DISTINCT {_G} FROM req_all)"
    )
    _stream(
        db,
        con,
        f"SELECT gid, {_G} FROM groups",
        f"INSERT INTO grp (gid, {_G}) VALUES (?, ?, ?, ?, ?)",
    )
    _stream(
        db,
        con,
        f"SELECT r.request_id, g.gid, r.inline FROM req_all r JOIN groups g USING ({_G}) "
        "ORDER BY r.request_id, g.gid",
        "INSERT OR IGNORE INTO req (request_id, gid, inline) VALUES (?, ?, ?)",
    )
    _stream(
        db,
        con,
        "SELECT request_id, ts, event_id, score FROM latest ORDER BY request_id",
        "INSERT INTO fb_latest (request_id, ts, event_id, score) VALUES (?, ?, ?, ?)",
    )
    _stream(
        db,
        con,
        "SELECT request_id, day FROM esk_all",
        "INSERT INTO esc (request_id, day) VALUES (?, ?)",
    )
    con.execute("DROP TABLE groups")


def _stream(
    db: sqlite3.Connection, con: duckdb.DuckDBPyConnection, query: str, insert: str
) -> None:
    cur = con.execute(query)
    while rows := cur.fetchmany(50_000):
        db.executemany(insert, rows)


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
