"""The one module with DuckDB-specific SQL and settings.

Analytics are Ibis expressions (see :mod:`modelwarden.kpi.compute`) so they can run on Spark as well.
Two storage chores are written in DuckDB SQL here because they are plumbing, not analytics, and a
measurement showed them worth it: the idempotency check (an anti-join of a batch's keys against
every stored key, about 0.3 s per million stored keys instead of loading them into Python sets),
and opening the Parquet files as views with the settings this machine needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa


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


def keep_mask(
    keys: pa.Array, stored_files: Sequence[str], key_column: str
) -> tuple[np.ndarray, int]:
    """Which rows of a batch are new: first occurrence of their key and not already stored.

    Returns the mask and the number of rows that were already stored.
    """
    con = connect()
    batch = pa.table({"k": keys, "i": pa.array(np.arange(len(keys), dtype=np.int64))})
    con.register("batch", batch)
    if stored_files:
        con.execute(
            f"CREATE TEMP TABLE stored AS SELECT DISTINCT {key_column} AS k "
            f"FROM {read_parquet_sql(stored_files)} "
            f"WHERE {key_column} IN (SELECT k FROM batch)"
        )
    else:
        con.execute("CREATE TEMP TABLE stored (k VARCHAR)")
    rows = con.sql(
        """
        SELECT i,
               (row_number() OVER (PARTITION BY k ORDER BY i) = 1) AND s.k IS NULL AS keep,
               s.k IS NOT NULL AS was_stored
        FROM batch LEFT JOIN stored s USING (k)
        ORDER BY i
        """
    ).to_arrow_table()
    con.close()
    mask = rows.column("keep").to_numpy(zero_copy_only=False).astype(bool)
    n_stored = int(np.count_nonzero(rows.column("was_stored").to_numpy(zero_copy_only=False)))
    return mask, n_stored


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
