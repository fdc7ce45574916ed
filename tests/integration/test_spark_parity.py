"""The same Ibis expressions on Spark (local mode) give DuckDB's answers on the same store.

Counts must be equal, floats equal to 1e-9 (the engines add in different orders). The seeded store
has three weeks of four plants with feedback events and confirmed escalations, so every part of
the KPI expression (the feedback override, the escalation outer join) is exercised.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.drift.monitor import drift_scopes, quality_frame
from modelwarden.embed.service import WindowReader, embedder_key, window_vectors
from modelwarden.kpi.compute import KpiQuery
from modelwarden.kpi.service import compute_kpis
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.schema import SCHEMAS
from modelwarden.windows import Window

WEEK_47 = (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
WEEK_46 = (datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))


def _settings(data: Path, engine: str, master: str = "local[2]") -> Settings:
    return Settings(
        data_dir=data,
        embedder="hashing",
        embed_threads=1,
        analytics_engine=engine,  # type: ignore[arg-type]
        spark_master=master,
    )


def assert_same(duck: Any, spark: Any, where: str = "") -> None:
    """Equal structure; integers, strings and times exactly; floats to 1e-9."""
    if isinstance(duck, dict):
        assert isinstance(spark, dict) and list(duck) == list(spark), where
        for k in duck:
            assert_same(duck[k], spark[k], f"{where}.{k}")
    elif isinstance(duck, list | tuple):
        assert len(duck) == len(spark), (
            f"{where}: {len(duck)} rows on DuckDB, {len(spark)} on Spark"
        )
        for i, (a, b) in enumerate(zip(duck, spark, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(duck, float) and not isinstance(spark, bool):
        assert isinstance(spark, float | int), f"{where}: {spark!r}"
        if math.isnan(duck):
            assert math.isnan(spark), where
        else:
            assert spark == pytest.approx(duck, rel=1e-9, abs=1e-9), where
    else:
        assert type(duck) is type(spark) and duck == spark, f"{where}: {duck!r} != {spark!r}"


QUERIES = [
    KpiQuery(window="week", by=("plant_id", "model_version")),
    KpiQuery(window="day", by=("plant_id",), since=WEEK_46[0], until=WEEK_47[1]),
    KpiQuery(window="all", by=("route",)),
    KpiQuery(window="week", by=()),
]


@pytest.mark.spark
@pytest.mark.parametrize("q", QUERIES, ids=lambda q: f"{q.window}-{'+'.join(q.by) or 'all'}")
def test_kpi_table_is_the_same_on_spark(
    seeded_data_dir: Path, spark_master: str, q: KpiQuery
) -> None:
    duck = compute_kpis(_settings(seeded_data_dir, "duckdb"), q)
    spark = compute_kpis(_settings(seeded_data_dir, "spark", spark_master), q)
    assert len(duck) >= 1
    # Not a vacuous comparison: the table has feedback and confirmed escalations to agree on.
    assert sum(r["feedback_n"] for r in duck) > 0
    assert sum(r["escalations_confirmed"] for r in duck) > 0
    assert_same(duck, spark)


@pytest.mark.spark
def test_drift_windows_are_the_same_on_spark(seeded_data_dir: Path, spark_master: str) -> None:
    duck_s = _settings(seeded_data_dir, "duckdb")
    spark_s = _settings(seeded_data_dir, "spark", spark_master)
    emb = embedder_key(duck_s)
    for since, until in (WEEK_46, WEEK_47):
        for plant in (None, "Plant_B"):
            d = window_vectors(duck_s, "prompt", emb, since, until, plant=plant)
            s = window_vectors(spark_s, "prompt", emb, since, until, plant=plant)
            assert len(d.request_ids) > 20
            assert d.request_ids == s.request_ids
            assert d.texts == s.texts
            assert d.vectors.dtype == s.vectors.dtype == np.float32
            np.testing.assert_array_equal(d.vectors, s.vectors)
            # A window over the cap: the same sample on both engines (the id hash is NumPy's).
            d = window_vectors(duck_s, "prompt", emb, since, until, plant=plant, max_rows=50)
            s = window_vectors(spark_s, "prompt", emb, since, until, plant=plant, max_rows=50)
            assert d.sampled and s.sampled and d.n_total == s.n_total > 50
            assert d.request_ids == s.request_ids and len(d.request_ids) == 50
            np.testing.assert_array_equal(d.vectors, s.vectors)
    # Every scope of a window in one pass, as a drift run reads them.
    scopes = [(None, None), ("Plant_B", None), ("Plant_B", "sop-assistant-v1.2")]
    with (
        WindowReader(duck_s, "prompt", emb, max_rows=60) as dr,
        WindowReader(spark_s, "prompt", emb, max_rows=60) as sr,
    ):
        for d, s in zip(
            dr.read_scopes(*WEEK_47, scopes), sr.read_scopes(*WEEK_47, scopes), strict=True
        ):
            assert d.request_ids == s.request_ids and d.n_total == s.n_total
            assert d.texts == s.texts
            np.testing.assert_array_equal(d.vectors, s.vectors)

    current = Window(since=WEEK_47[0], until=WEEK_47[1])
    by = ("plant_id", "model_version")
    scopes = drift_scopes(duck_s, current, by=by)
    assert len(scopes) > 4
    assert drift_scopes(spark_s, current, by=by) == scopes

    dq = quality_frame(duck_s, WEEK_46[0], WEEK_47[1])
    sq = quality_frame(spark_s, WEEK_46[0], WEEK_47[1])
    assert list(dq) == list(sq)
    for k in dq:
        if dq[k].dtype == object:
            assert dq[k].tolist() == sq[k].tolist(), k
        else:
            np.testing.assert_allclose(sq[k], dq[k], rtol=1e-9, atol=0, err_msg=k)


def _write_old_part(log: Path, day: str, rows: list[dict[str, Any]], drop: list[str]) -> None:
    """A part file written before ``drop`` columns existed."""
    schema = SCHEMAS["requests"]
    table = pa.Table.from_pylist(rows, schema=schema).drop_columns(drop)
    d = log / "requests" / f"date={day}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, d / "part-old.parquet")


@pytest.mark.spark
def test_missing_columns_and_empty_tables_read_the_same(tmp_path: Path, spark_master: str) -> None:
    data = tmp_path / "warden-data"
    log = data / "log"
    q = KpiQuery(window="day", by=("route",))

    # Nothing stored: both engines see empty tables with the store's schema.
    assert compute_kpis(_settings(data, "duckdb"), q) == []
    assert compute_kpis(_settings(data, "spark", spark_master), q) == []
    con = LogStore(log, engine="spark", spark_master=spark_master).connect()
    assert (
        LogStore(log, engine="spark").embeddings_table(con, "prompt", "hashing").count().execute()
        == 0
    )

    def row(i: int, **kw: Any) -> dict[str, Any]:
        base = {
            "request_id": f"r{i}",
            "timestamp": datetime(2026, 3, 2, 8, i, tzinfo=UTC),
            "plant_id": "Plant_A",
            "model_version": "v1",
            "user_prompt": f"question {i}",
            "generated_response": "answer",
            "latency_ms": 100.0 + i,
            "human_feedback_score": i % 5 + 1,
            "contains_safety_keyword": i % 3 == 0,
            "source": "test",
            "ingested_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
        }
        return base | kw

    # One file from before ``route`` and ``error`` were columns, one with them.
    _write_old_part(log, "2026-03-02", [row(i) for i in range(6)], drop=["route", "error"])
    new = [row(i, route="canary", error="timeout" if i == 7 else None) for i in range(6, 10)]
    table = pa.Table.from_pylist(new, schema=SCHEMAS["requests"])
    pq.write_table(table, log / "requests" / "date=2026-03-02" / "part-new.parquet")

    duck = compute_kpis(_settings(data, "duckdb"), q)
    spark = compute_kpis(_settings(data, "spark", spark_master), q)
    assert [(r["route"], r["requests"], r["errors"]) for r in duck] == [
        ("canary", 4, 1),
        (None, 6, 0),
    ]
    assert_same(duck, spark)


@pytest.mark.spark
def test_cli_engine_option_runs_kpis_on_spark(seeded_data_dir: Path, run_cli: Any) -> None:
    """``--engine spark`` in a process of its own: the JSON equals DuckDB's."""
    args = ("kpis", "--window", "week", "--by", "plant_id", "--format", "json")
    duck = run_cli(*args, data=seeded_data_dir)
    spark = run_cli("--engine", "spark", *args, data=seeded_data_dir, timeout=600)
    assert duck.code == 0, duck.err
    assert spark.code == 0, spark.err
    d, s = json.loads(duck.out), json.loads(spark.out)
    assert len(d) == 4 * 3  # four plants, three ISO weeks
    assert_same(d, s)


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--engine", "sparkle"), {}), ((), {"MODELWARDEN_ANALYTICS_ENGINE": "sparkle"})],
)
def test_unknown_engine_is_bad_input(
    data_dir: Path,
    run_cli: Any,
    args: tuple[str, ...],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    res = run_cli(*args, "kpis", data=data_dir)
    assert res.code == 2
    assert "sparkle" in res.out + res.err
    assert "duckdb" in res.out + res.err
