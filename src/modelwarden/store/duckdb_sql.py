"""The one module with DuckDB-specific SQL and settings.

Analytics are Ibis expressions (see :mod:`modelwarden.kpi.compute`) so they can run on Spark as well
(:mod:`modelwarden.store.engines` chooses the engine).
Opening the Parquet files as views, with the settings this machine needs, is plumbing written in
DuckDB SQL here. (The idempotency check is a per-directory key index:
:mod:`modelwarden.store.keyindex`.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

# One in-memory database per thread count and process; each caller gets a connection of its own
# (a cursor). Opening a database costs about 20 ms of CPU, a cursor 0.2 ms: the flusher folds
# every stored batch into the KPI rollups, so with a database per batch the opening cost more
# than the fold (14 CPU-seconds of the demo's flusher, measured with py-spy). Temporary tables,
# temporary views and registered Arrow tables belong to the cursor that made them, so callers
# never see each other's; the thread count is a setting of the database, hence one per count.
_DATABASES: dict[tuple[int, int], duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def connect(threads: int = 0) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``threads`` threads (0: every core). Close it when done."""
    n = threads or max(1, os.cpu_count() or 1)
    key = (os.getpid(), n)  # a forked child must not use its parent's database
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None:
            db = duckdb.connect(":memory:")
            db.execute(f"SET threads={n}")
            _DATABASES[key] = db
    con = db.cursor()
    con.execute("SET enable_progress_bar=false")
    return con


def ibis_connect(threads: int = 0) -> Any:
    import ibis  # lazy: Ibis takes half a second to import; only the analytics need it

    con = ibis.duckdb.connect(threads=threads or max(1, os.cpu_count() or 1))
    con.raw_sql("SET enable_progress_bar=false")
    # Day and week windows are UTC days and ISO weeks wherever the service runs.
    con.raw_sql("SET TimeZone='UTC'")
    return con


def _files_sql(files: Sequence[str]) -> str:
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"[{quoted}]"


def read_parquet_sql(files: Sequence[str]) -> str:
    """A ``read_parquet`` call over explicit files; columns added later read as NULL."""
    return f"read_parquet({_files_sql(files)}, union_by_name=true, hive_partitioning=false)"
