"""Vectors kept by their request's UTC day, stores written before (flat vectors), and drift
windows read from their days only and sampled above the cap, on a real store on disk."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.drift.monitor import drift_over_windows
from modelwarden.embed.service import WindowReader, WindowVectors, window_vectors
from modelwarden.errors import InputError
from modelwarden.report.weekly import n_pair
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore, write_parquet_atomic
from modelwarden.store.schema import SCHEMAS, embedding_schema
from modelwarden.windows import Window

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
DAYS, PER_DAY, DIM = 4, 150, 8
EMB = "inline"
REQ_IDS = [f"r{d}-{i:03d}" for d in range(DAYS) for i in range(PER_DAY)]
STAMPS = [DAY0 + timedelta(days=d, minutes=9 * i) for d in range(DAYS) for i in range(PER_DAY)]
VEC = {
    rid: np.random.default_rng(k).normal(size=DIM).astype(np.float32)
    for k, rid in enumerate(REQ_IDS)
}
ORPHANS = [f"gone-{i}" for i in range(5)]  # vectors of requests the store does not hold


def _day(d: int) -> str:
    return (DAY0 + timedelta(days=d)).date().isoformat()


def _ids_of_days(*days: int) -> list[str]:
    return [f"r{d}-{i:03d}" for d in days for i in range(PER_DAY)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "warden-data", embedder=EMB, embed_threads=1)


def _store(settings: Settings) -> LogStore:
    store = LogStore(settings.log_dir, threads=1)
    base = {
        "model_version": "v1",
        "generated_response": "a",
        "latency_ms": 100.0,
        "contains_safety_keyword": False,
        "safety_computed": False,
        "source": "test",
        "ingested_at": DAY0,
    }
    rows = [
        {
            **base,
            "request_id": rid,
            "timestamp": ts,
            "plant_id": "Plant_A" if k % 2 else "Plant_B",
            "user_prompt": f"prompt {rid}",
        }
        for k, (rid, ts) in enumerate(zip(REQ_IDS, STAMPS, strict=True))
    ]
    schema = SCHEMAS["requests"]
    table = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    assert store.append("requests", table).accepted == len(REQ_IDS)
    return store


def _append(store: LogStore, ids: list[str]) -> int:
    stamps = [STAMPS[REQ_IDS.index(i)] for i in ids]
    return store.append_embeddings("prompt", EMB, ids, np.stack([VEC[i] for i in ids]), stamps)


def _vector_table(ids: list[str]) -> pa.Table:
    vecs = np.stack([VEC.get(i, np.full(DIM, 7.0, np.float32)) for i in ids])
    return pa.table(
        {
            "request_id": pa.array(ids),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), DIM),
            "embedded_at": pa.repeat(pa.scalar(DAY0, pa.timestamp("us", tz="UTC")), len(ids)),
        },
        schema=embedding_schema(DIM),
    )


def _write_flat(store: LogStore, name: str, ids: list[str]) -> None:
    """Vectors as stores written before days kept them: files right under the embedder's dir."""
    store.register_embedder(EMB, DIM)
    write_parquet_atomic(_vector_table(ids), store.embedding_dir("prompt", EMB) / name)


def _window(d0: int, d1: int) -> tuple[datetime, datetime]:
    return DAY0 + timedelta(days=d0), DAY0 + timedelta(days=d1)


def _check_vectors(w: WindowVectors) -> None:
    assert len(w.request_ids) == len(set(w.request_ids)) == len(w.vectors)
    for rid, v in zip(w.request_ids, w.vectors, strict=True):
        np.testing.assert_array_equal(v, VEC[rid])
    assert w.texts == [f"prompt {rid}" for rid in w.request_ids]


def _registered_days(reader: WindowReader) -> set[str]:
    """The days of the vector files the reader's connection registered (its views' files)."""
    views = reader.con.con.sql(
        "SELECT sql FROM duckdb_views() WHERE view_name LIKE 'emb_window_%'"
    ).fetchall()
    text = " ".join(v[0] for v in views)
    # The files are read through directory handles the connection holds (/proc/self/fd/N/...):
    # the directory each handle names.
    dirs = {os.readlink(f"/proc/self/fd/{fd}") for fd in re.findall(r"/proc/self/fd/(\d+)/", text)}
    assert dirs, text
    return {Path(d).name.removeprefix("date=") for d in dirs if Path(d).name.startswith("date=")}


def _stored_ids(store: LogStore) -> Counter[str]:
    return Counter(
        i
        for f in store.embedding_files("prompt", EMB)
        for i in pq.read_table(f, columns=["request_id"]).column(0).to_pylist()
    )


def test_vectors_are_kept_under_their_requests_day(settings: Settings) -> None:
    store = _store(settings)
    assert _append(store, REQ_IDS[::2]) == len(REQ_IDS) // 2
    assert _append(store, REQ_IDS) == len(REQ_IDS) // 2  # the other half; the rest are stored
    top = store.embedding_dir("prompt", EMB)
    assert sorted(p.name for p in top.iterdir()) == [f"date={_day(d)}" for d in range(DAYS)]
    for d in range(DAYS):
        files = store.embedding_files("prompt", EMB, date.fromisoformat(_day(d)), None)
        day_files = [f for f in files if f"date={_day(d)}" in f]
        ids = {i for f in day_files for i in pq.read_table(f).column("request_id").to_pylist()}
        assert ids == set(_ids_of_days(d))
    assert _stored_ids(store) == Counter(REQ_IDS)
    # One day asked: only that day's files.
    one = date.fromisoformat(_day(2))
    assert {Path(f).parent.name for f in store.embedding_files("prompt", EMB, one, one)} == {
        f"date={_day(2)}"
    }
    # A time in another zone is kept under its UTC day.
    late = datetime(2026, 11, 2, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert store.append_embeddings("prompt", EMB, ["z"], np.ones((1, DIM)), [late]) == 1
    assert {
        Path(f).parent.name
        for f in store.embedding_files("prompt", EMB)
        if "z" in pq.read_table(f).column("request_id").to_pylist()
    } == {"date=2026-11-03"}
    with pytest.raises(InputError) as err:
        store.append_embeddings("prompt", EMB, ["x"], np.ones((1, DIM)), [])
    assert err.value.field == "days"
    with pytest.raises(InputError) as err:
        store.append_embeddings("prompt", EMB, ["x"], np.ones((1, DIM)), [datetime(2026, 1, 1)])
    assert err.value.field == "days"


def test_a_window_reads_only_its_days_vectors(settings: Settings) -> None:
    store = _store(settings)
    _append(store, REQ_IDS)
    with WindowReader(settings, "prompt", EMB) as reader:
        w = reader.read(*_window(1, 3))
        assert _registered_days(reader) == {_day(1), _day(2)}
        assert w.request_ids == _ids_of_days(1, 2)
        assert not w.sampled and w.n_total == 2 * PER_DAY
        _check_vectors(w)
        # A window that ends at midnight does not read the next day.
        reader.read(*_window(3, 4))
        assert _registered_days(reader) == {_day(1), _day(2), _day(3)}


def test_a_store_with_flat_vectors_reads_right_and_counts_each_vector_once(
    settings: Settings,
) -> None:
    store = _store(settings)
    _write_flat(store, "part-old-1.parquet", _ids_of_days(0))
    _write_flat(store, "part-old-2.parquet", _ids_of_days(1) + ORPHANS)
    # Keys the flat files hold are stored already; the others go to their days.
    assert _append(store, REQ_IDS) == 2 * PER_DAY
    assert _stored_ids(store) == Counter(REQ_IDS + ORPHANS)
    full = window_vectors(settings, "prompt", EMB, *_window(0, DAYS))
    assert full.request_ids == REQ_IDS
    _check_vectors(full)
    assert window_vectors(settings, "prompt", EMB, *_window(1, 3)).request_ids == _ids_of_days(1, 2)
    # A vector that a day holds as well as the flat files (a reader listing both while a
    # compaction moved them) counts once.
    write_parquet_atomic(
        _vector_table(_ids_of_days(0)[:10]),
        store.embedding_dir("prompt", EMB, DAY0.date()) / "part-both.parquet",
    )
    assert window_vectors(settings, "prompt", EMB, *_window(0, DAYS)).request_ids == REQ_IDS


def test_compaction_moves_flat_vectors_into_their_days_and_keeps_each_once(
    settings: Settings,
) -> None:
    store = _store(settings)
    _write_flat(store, "part-old-1.parquet", _ids_of_days(0) + ORPHANS[:2])
    _write_flat(store, "part-old-2.parquet", _ids_of_days(1, 2) + ORPHANS[2:])
    _append(store, _ids_of_days(3))
    # Day 0 also holds ten of the flat files' keys (as after a crash or by hand).
    write_parquet_atomic(
        _vector_table(_ids_of_days(0)[:10]),
        store.embedding_dir("prompt", EMB, DAY0.date()) / "part-both.parquet",
    )
    before = window_vectors(settings, "prompt", EMB, *_window(0, DAYS))
    assert before.request_ids == REQ_IDS

    store.compact(["embeddings"], grace_s=0)
    top = store.embedding_dir("prompt", EMB)
    (flat,) = [p for p in top.iterdir() if p.is_file()]
    # Only the vectors of no stored request stay flat (their day is unknown).
    assert sorted(pq.read_table(flat).column("request_id").to_pylist()) == sorted(ORPHANS)
    assert _stored_ids(store) == Counter(REQ_IDS + ORPHANS)
    for d in range(DAYS):
        (f,) = [p for p in (top / f"date={_day(d)}").iterdir()]  # migrated, then merged
        t = pq.read_table(f)
        assert sorted(t.column("request_id").to_pylist()) == _ids_of_days(d)
        for rid, v in zip(
            t.column("request_id").to_pylist(), t.column("vector").to_pylist(), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(v, np.float32), VEC[rid])
    after = window_vectors(settings, "prompt", EMB, *_window(0, DAYS))
    assert after.request_ids == before.request_ids
    np.testing.assert_array_equal(after.vectors, before.vectors)
    # The days' key indexes know the moved keys: appending them again stores nothing.
    assert _append(store, REQ_IDS) == 0
    # Compacting again changes nothing that is read.
    store.compact(["embeddings"], grace_s=0)
    assert _stored_ids(store) == Counter(REQ_IDS + ORPHANS)


def test_a_large_window_is_sampled_deterministically_before_its_vectors_are_read(
    settings: Settings,
) -> None:
    store = _store(settings)
    _append(store, REQ_IDS)
    window = _window(0, DAYS)
    with WindowReader(settings, "prompt", EMB, max_rows=100) as reader:
        w = reader.read(*window)
        again = reader.read(*window)
        a_only = reader.read(*window, plant="Plant_A")
    assert w.sampled and w.n_total == len(REQ_IDS)
    assert len(w.request_ids) == 100
    _check_vectors(w)
    # Oldest first, and spread over the whole window rather than its first rows.
    assert w.request_ids == sorted(w.request_ids, key=REQ_IDS.index)
    assert all(10 <= sum(i.startswith(f"r{d}-") for i in w.request_ids) <= 45 for d in range(4))
    assert again.request_ids == w.request_ids
    # Another reader (another process, another engine) picks the same requests.
    assert window_vectors(settings, "prompt", EMB, *window, max_rows=100).request_ids == (
        w.request_ids
    )
    assert a_only.n_total == len(REQ_IDS) // 2 and len(a_only.request_ids) == 100
    # A smaller window keeps every request the larger one kept from it.
    part = window_vectors(settings, "prompt", EMB, *_window(1, 3), max_rows=100)
    assert part.sampled and len(part.request_ids) == 100
    in_part = {i for i in w.request_ids if i[1] in "12"}
    assert in_part and in_part <= set(part.request_ids)
    # At or under the cap a window is read whole.
    whole = window_vectors(settings, "prompt", EMB, *window, max_rows=len(REQ_IDS))
    assert not whole.sampled and whole.request_ids == REQ_IDS


def test_a_drift_row_says_when_its_windows_were_sampled(settings: Settings) -> None:
    store = _store(settings)
    _append(store, REQ_IDS)
    capped = settings.model_copy(update={"drift_window_max": 100})
    rows = drift_over_windows(
        capped,
        Window(*_window(0, 3)),
        Window(*_window(3, 4)),
        kind="prompt",
        embedder=EMB,
        method="seed",
        embed=False,
        record=False,
    )
    overall: dict[str, Any] = rows[0]
    assert overall["scope"] == "all plants"
    assert (overall["n_baseline"], overall["n_baseline_total"]) == (100, 3 * PER_DAY)
    assert (overall["n_current"], overall["n_current_total"]) == (100, PER_DAY)
    assert overall["sampled"] is True
    assert json.loads(json.dumps(overall, default=str))["sampled"] is True
    assert n_pair(overall) == "100 of 450 (sampled) / 100 of 150 (sampled)"
    plant = next(r for r in rows if r["scope"] == "Plant_A")
    assert plant["n_current"] == plant["n_current_total"] == PER_DAY // 2
    assert plant["sampled"] is True  # its baseline (225 rows) was
    whole = drift_over_windows(
        settings,
        Window(*_window(0, 3)),
        Window(*_window(3, 4)),
        kind="prompt",
        embedder=EMB,
        method="seed",
        embed=False,
        record=False,
    )
    assert whole[0]["sampled"] is False
    assert whole[0]["n_baseline"] == whole[0]["n_baseline_total"] == 3 * PER_DAY
