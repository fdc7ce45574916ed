"""The one module with DuckDB-specific SQL and settings.

Analytics are Ibis expressions (see :mod:`modelwarden.kpi.compute`) so they can run on Spark as well
(:mod:`modelwarden.store.engines` chooses the engine).
Opening the Parquet files as views, with the settings this machine needs, is plumbing written in
DuckDB SQL here. (The idempotency check is a per-directory key index:
:mod:`modelwarden.store.keyindex`.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import duckdb


def connect(threads: int = 0) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar=false")
    con.execute(f"SET threads={threads or max(1, os.cpu_count() or 1)}")
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
