"""The analytics engines: where the Ibis expressions of the KPIs, drift windows and reports run.

Every analytic is one Ibis expression over the tables of the log store (``requests``,
``feedback``, ``escalations``, ``rejected`` and the embedding tables). This module is the one
place that knows which engine runs them and how each engine is opened:

- ``duckdb`` (the default): embedded, in-process, nothing to run beside ModelWarden;
- ``spark``: PySpark (``pip install 'modelwarden[spark]'``, Java 17), local mode by default
  (``spark_master = "local[2]"``) or any cluster master URL, reading the same Parquet files.

It also holds the one expression that has no portable Ibis form fast enough,
:func:`epoch_micros`, implemented with each engine's integer builtin.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa

from modelwarden.errors import InputError, StoreError
from modelwarden.store import duckdb_sql

Engine = Literal["duckdb", "spark"]
ENGINES: tuple[str, ...] = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[2]"


def check_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise InputError(
            f"unknown analytics engine {name!r}; choose from {', '.join(ENGINES)}",
            field="analytics_engine",
        )
    return name  # type: ignore[return-value]


def connect(engine: str, threads: int = 0, spark_master: str = DEFAULT_SPARK_MASTER) -> Any:
    """A fresh Ibis connection of ``engine`` with no tables yet (see :func:`register_parquet`)."""
    if check_engine(engine) == "spark":
        return _spark_connect(spark_master)
    return duckdb_sql.ibis_connect(threads)


def register_parquet(
    con: Any, name: str, files: Sequence[str], schema: pa.Schema, columns: Sequence[str]
) -> Any:
    """Make table ``name`` of ``con`` the ``columns`` of ``files``; empty with ``schema`` when
    there are no files. Columns a file lacks (added after it was written) read as NULL."""
    if con.name == "pyspark":
        _spark_register(con, name, files, schema, columns)
    elif files:
        con.raw_sql(
            f'CREATE OR REPLACE VIEW "{name}" AS SELECT '
            + ", ".join(f'"{n}"' for n in columns)
            + f" FROM {duckdb_sql.read_parquet_sql(files)}"
        )
    else:
        con.con.register(name, schema.empty_table().select(list(columns)))
    return con.table(name)


def to_arrow(con: Any, expr: Any) -> pa.Table:
    """The result of an Ibis expression as an Arrow table.

    On DuckDB it runs the compiled query and casts the result to the expression's Arrow schema:
    Ibis's ``to_pyarrow`` gives the same table but first imports pandas (for its type
    converters), a third of a second of CPU in every command that runs a query.
    """
    import ibis.expr.operations as ops  # loaded by whoever built expr; kept out of start-up

    if con.name != "duckdb" or expr.op().find(ops.InMemoryTable):
        return con.to_pyarrow(expr)  # in-memory tables are registered by Ibis's own path
    table = expr.as_table()
    result = con.con.sql(con.compile(table)).to_arrow_table()
    return result.cast(table.schema().to_pyarrow())


def epoch_micros(ts: Any) -> Any:
    """Microseconds since 1970-01-01 UTC of an Ibis timestamp column, as an integer expression.

    Ibis's portable forms cost more than the rest of the weekly KPI query on DuckDB:
    ``truncate("W")`` on a zoned timestamp goes through DuckDB's ICU calendar and
    ``epoch_seconds()`` casts and converts to a double, about 1.7 and 1.3 CPU-seconds per 10M rows
    against 0.7 for the whole query with DuckDB's integer ``epoch_us`` (measured with
    ``bench/kpis``). Spark's integer builtin is ``unix_micros``.
    """
    backend = ts._find_backend(use_default=False)
    if backend.name == "pyspark":
        return _builtin("unix_micros", timezone="UTC")(ts)
    return _builtin("epoch_us", timezone="UTC")(ts)


_BUILTINS: dict[str, Any] = {}


def _builtin(name: str, timezone: str | None) -> Any:
    """An Ibis builtin scalar function ``name(timestamp) -> int64`` of the engine."""
    if name not in _BUILTINS:  # Ibis imported here: only the analytics need it
        import ibis
        import ibis.expr.datatypes as dt

        def fn(ts: Any) -> Any:
            """An engine's integer microseconds since the epoch."""

        # Set here rather than written as annotations: this module postpones annotations, and
        # Ibis reads the types from them.
        fn.__annotations__ = {"ts": dt.Timestamp(timezone=timezone), "return": dt.int64}
        _BUILTINS[name] = ibis.udf.scalar.builtin(name=name)(fn)
    return _BUILTINS[name]


# ---- Spark ---------------------------------------------------------------------------------------
_SPARK_LOCK = threading.Lock()
_SPARK: dict[str, Any] = {}


def spark_session(master: str = DEFAULT_SPARK_MASTER) -> Any:
    """The process's Spark session (started once: the JVM takes about ten seconds)."""
    with _SPARK_LOCK:
        if "session" in _SPARK:
            if _SPARK["master"] != master:
                raise InputError(
                    f"a Spark session on {_SPARK['master']} is running in this process; "
                    f"cannot open another on {master}",
                    field="spark_master",
                )
            return _SPARK["session"]
        try:  # lazy: PySpark is an optional extra; only the spark engine needs it
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise InputError(
                "the spark engine needs PySpark: pip install 'modelwarden[spark]' "
                "(and Java 17, e.g. Debian's openjdk-17-jre-headless)",
                field="analytics_engine",
            ) from exc
        if master.startswith("local"):
            # A local driver binds to the loopback address whatever the host name resolves to.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder.master(master).appName("modelwarden")
        for k, v in spark_conf(master).items():
            builder = builder.config(k, v)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM failed to start: Java missing, bad master URL
            raise StoreError(f"cannot start Spark on {master}: {exc}") from exc
        session.sparkContext.setLogLevel("ERROR")
        _SPARK.update(session=session, master=master)
        return session


def spark_conf(master: str) -> dict[str, str]:
    """The configuration a session starts with. ``MODELWARDEN_SPARK_SHUFFLE_PARTITIONS`` and
    ``MODELWARDEN_SPARK_DRIVER_MEMORY`` (e.g. ``8g``; Spark's default is 1g, too little for exact
    percentiles over 100M requests in local mode) are read from the environment; the driver's
    memory only takes effect when the process starts the JVM, i.e. before the first session."""
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": os.environ.get("MODELWARDEN_SPARK_SHUFFLE_PARTITIONS", "8"),
    }
    memory = os.environ.get("MODELWARDEN_SPARK_DRIVER_MEMORY", "").strip()
    if memory:
        if not re.fullmatch(r"\d+[kmgt]?", memory.lower()):
            raise InputError(
                f"MODELWARDEN_SPARK_DRIVER_MEMORY must be a size such as 4g or 8192m, not {memory!r}",
                field="MODELWARDEN_SPARK_DRIVER_MEMORY",
            )
        conf["spark.driver.memory"] = memory
    if master.startswith("local"):
        conf |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    return conf


def stop_spark() -> None:
    """Stop the process's Spark session, if one was started."""
    with _SPARK_LOCK:
        session = _SPARK.pop("session", None)
        _SPARK.pop("master", None)
        if session is not None:
            session.stop()


def _spark_connect(master: str) -> Any:
    # A session of its own per connection: temporary views do not leak between connections,
    # while the JVM and its caches are shared.
    return _spark_backend().connect(spark_session(master).newSession())


def _spark_backend() -> Any:
    """Ibis's PySpark backend, reading Spark's ``TIMESTAMP`` columns as UTC instants.

    Spark's ``TIMESTAMP`` is an instant shown in the session's time zone (UTC here), which is what
    the log's zoned Parquet timestamps are; Ibis maps it to a timestamp without a zone, so results
    would come back naive where DuckDB's are zoned. Declaring the zone makes both engines return
    the same values.
    """
    if "backend" not in _SPARK:  # lazy: Ibis and PySpark load only for the spark engine
        import ibis
        import ibis.expr.datatypes as dt
        import ibis.expr.schema as sch
        from ibis.backends.pyspark import Backend

        _ = ibis.pyspark  # loading the backend by name registers its options

        class UtcSparkBackend(Backend):
            def get_schema(self, table_name: str, **kwargs: Any) -> sch.Schema:
                schema = super().get_schema(table_name, **kwargs)
                return sch.Schema(
                    {
                        n: dt.Timestamp(timezone="UTC", nullable=t.nullable)
                        if t.is_timestamp() and t.timezone is None
                        else t
                        for n, t in schema.items()
                    }
                )

        _SPARK["backend"] = UtcSparkBackend()
    return _SPARK["backend"]


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema  # lazy: PySpark is optional

    fields = [
        pa.field(f.name, pa.list_(f.type.value_type)) if pa.types.is_fixed_size_list(f.type) else f
        for f in schema
    ]
    return from_arrow_schema(pa.schema(fields))


def _spark_register(
    con: Any, name: str, files: Sequence[str], schema: pa.Schema, columns: Sequence[str]
) -> None:
    from pyspark.sql import functions as F  # lazy: PySpark is an optional extra

    session = con._session
    wanted = _spark_schema(pa.schema([schema.field(c) for c in columns]))
    if files:
        df = session.read.option("mergeSchema", "true").parquet(*files)
        df = df.select(
            *(
                F.col(f.name)
                if f.name in df.columns
                else F.lit(None).cast(f.dataType).alias(f.name)
                for f in wanted.fields
            )
        )
    else:
        df = session.createDataFrame([], wanted)
    df.createOrReplaceTempView(name)
