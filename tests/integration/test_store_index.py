"""The key index, bounded directories, and several writers sharing one log root."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelwarden.store.logstore import CompactionPolicy, LogStore
from modelwarden.store.schema import SCHEMAS

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def requests_table(ids: list[str], day: int = 0) -> pa.Table:
    schema = SCHEMAS["requests"]
    rows = [
        {
            "request_id": rid,
            "timestamp": T0 + timedelta(days=day, seconds=i),
            "plant_id": "Plant_A",
            "model_version": "v1",
            "user_prompt": "q",
            "generated_response": "a",
            "latency_ms": 1.0,
        }
        for i, rid in enumerate(ids)
    ]
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def glob_counts(root: Path) -> tuple[int, int]:
    """(rows, distinct request ids) as a plain reader globbing the log root sees them."""
    pattern = str(root / "requests" / "**" / "*.parquet")
    row = (
        duckdb.connect()
        .execute(f"SELECT count(*), count(DISTINCT request_id) FROM read_parquet('{pattern}')")
        .fetchone()
    )
    assert row is not None
    return int(row[0]), int(row[1])


def connect_ids(store: LogStore) -> list[str]:
    con = store.connect()
    return sorted(
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "log", threads=1, instance="alpha")


def index_file(store: LogStore, day: int) -> Path:
    date = (T0 + timedelta(days=day)).date().isoformat()
    return store.root / "_index" / "requests" / f"date={date}.sqlite"


def test_an_append_reads_and_writes_only_the_index_of_its_own_days(store: LogStore) -> None:
    store.append("requests", requests_table([f"a{i}" for i in range(10)], day=0))
    store.append("requests", requests_table([f"b{i}" for i in range(10)], day=1))
    other = index_file(store, 1)
    before = other.stat().st_mtime_ns
    res = store.append("requests", requests_table(["a1", "a2", "new"], day=0))
    assert (res.accepted, res.duplicates) == (1, 2)
    # Part files carry the writer's instance name, so writers sharing a root never collide.
    assert Path(res.files[0]).name.startswith("part-") and "-alpha-" in res.files[0]
    assert other.stat().st_mtime_ns == before
    # A key is unique within the day of its timestamp.
    assert store.append("requests", requests_table(["b3"], day=1)).duplicates == 1


def test_part_files_the_index_does_not_list_are_indexed_before_the_next_append(
    store: LogStore,
) -> None:
    store.append("requests", requests_table(["x1"]))
    # A part written without its keys being recorded (a crash between the two steps, or a file
    # put there by another tool): its keys count before anything else is accepted.
    d = index_file(store, 0).parent.parent.parent / "requests" / "date=2026-11-02"
    pq.write_table(requests_table(["x2", "x3"]), d / "part-foreign.parquet")
    res = store.append("requests", requests_table(["x1", "x2", "x3", "x4"]))
    assert (res.accepted, res.duplicates) == (1, 3)
    # A file that disappeared from the directory is forgotten by the index.
    (d / "part-foreign.parquet").unlink()
    assert store.append("requests", requests_table(["x5"])).accepted == 1


def test_an_unreadable_index_is_rebuilt_from_the_parquet_files(store: LogStore) -> None:
    store.append("requests", requests_table([f"r{i}" for i in range(20)]))
    index_file(store, 0).write_bytes(b"this is not a database" * 100)
    res = store.append("requests", requests_table(["r3", "r19", "fresh"]))
    assert (res.accepted, res.duplicates) == (1, 2)


def test_a_store_without_an_index_gets_one_on_its_first_append(store: LogStore) -> None:
    store.append("requests", requests_table([f"k{i}" for i in range(50)]))
    for p in (store.root / "_index").rglob("*.sqlite"):
        p.unlink()
    res = store.append("requests", requests_table(["k7", "k49", "k50"]))
    assert (res.accepted, res.duplicates) == (1, 2)


def test_maintain_keeps_each_directory_within_a_bounded_number_of_files(
    store: LogStore,
) -> None:
    policy = CompactionPolicy(fanout=4, base_bytes=16 * 1024)
    ids: list[str] = []
    most = 0
    for b in range(120):
        batch = [f"m{b}-{i}" for i in range(20)]
        ids += batch
        store.append("requests", requests_table(batch))
        store.maintain(policy, grace_s=0)
        most = max(most, len(store.files("requests")))
    # Fewer than `fanout` files per size tier; 120 appends end in a handful of files.
    assert most <= 3 * 4
    assert connect_ids(store) == sorted(ids)
    assert glob_counts(store.root) == (len(ids), len(ids))
    assert store.append("requests", requests_table(ids[:40])).duplicates == 40
    assert list(store.swap_root.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    import pyarrow as pa
    from modelwarden.store.logstore import CompactionPolicy, LogStore
    from modelwarden.store.schema import SCHEMAS

    root, instance, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = LogStore(root, threads=1, instance=instance)
    schema = SCHEMAS["requests"]
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    accepted = 0
    for lo in range(start, stop, 25):
        rows = [
            {"request_id": f"req-{i}", "timestamp": t0 + timedelta(hours=i % 48),
             "plant_id": "P", "model_version": "v", "user_prompt": "q",
             "generated_response": "a", "latency_ms": 1.0}
            for i in range(lo, min(lo + 25, stop))
        ]
        t = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
        accepted += store.append("requests", t).accepted
        store.maintain(CompactionPolicy(fanout=3, base_bytes=64 * 1024), grace_s=0.5)
    print(accepted)
    """
)


def test_two_writers_sharing_a_log_root_store_each_request_id_once(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    # Overlapping ranges: ids 400-999 are sent to both instances.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), name, str(lo), str(hi)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, lo, hi in (("east", 0, 1000), ("west", 400, 1400))
    ]
    seen: list[tuple[int, int]] = []
    while any(p.poll() is None for p in procs):
        # A file listed just before its directory was swapped is not found: read again.
        with contextlib.suppress(duckdb.IOException):
            seen.append(glob_counts(root))
        time.sleep(0.02)
    outs = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(outs) == 1400
    # Every reader, at every moment: each request once.
    assert len(seen) >= 5
    assert all(rows == distinct for rows, distinct in seen), seen
    assert [r for r, _ in seen] == sorted(r for r, _ in seen)
    assert glob_counts(root) == (1400, 1400)
    store = LogStore(root)
    assert connect_ids(store) == sorted(f"req-{i}" for i in range(1400))
    assert ds.dataset(root / "requests", format="parquet").count_rows() == 1400
    # Whichever instance merged a directory names the merged file.
    assert all(
        "-east-" in Path(f).name or "-west-" in Path(f).name for f in store.files("requests")
    )
