"""The one module with DuckDB-specific SQL and settings.

Analytics are Ibis expressions (see :mod:`modelwarden.kpi.compute`) so they can run on Spark as well.
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
    import ibis

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


# ---- expressions for the analytics -------------------------------------------------------------
def epoch_micros(ts: Any) -> Any:
    """Microseconds since 1970-01-01 UTC of an Ibis timestamp, as an integer expression.

    Ibis's portable forms cost more than the rest of the weekly KPI query: ``truncate("W")`` on a
    zoned timestamp goes through DuckDB's ICU calendar and ``epoch_seconds()`` casts and converts
    to a double, about 1.7 and 1.3 CPU-seconds per 10M rows against 0.7 for the whole query with
    DuckDB's integer ``epoch_us`` (measured with ``bench/kpis``). Spark's equivalent builtin is
    ``unix_micros``.
    """
    return _epoch_us(ts)


def _builtin_epoch_us() -> Any:
    import ibis
    import ibis.expr.datatypes as dt

    def epoch_us(ts: Any) -> Any:
        """DuckDB's ``epoch_us``."""

    # Set here rather than written as annotations: this module postpones annotations, and Ibis
    # reads the types from them.
    epoch_us.__annotations__ = {"ts": dt.Timestamp(timezone="UTC"), "return": dt.int64}
    epoch_us = ibis.udf.scalar.builtin(name="epoch_us")(epoch_us)
    return epoch_us


def _epoch_us(ts: Any) -> Any:
    global _EPOCH_US
    if _EPOCH_US is None:
        _EPOCH_US = _builtin_epoch_us()
    return _EPOCH_US(ts)


_EPOCH_US: Any = None
