"""Compaction of the log store: fewer files, the same rows, idempotency kept, crash safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwarden.errors import InputError
from modelwarden.store.logstore import LogStore, live_files
from modelwarden.store.schema import SCHEMAS

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CLI = str(Path(sys.executable).parent / "modelwarden")


def requests_table(ids: list[str], day: int = 0) -> pa.Table:
    base = {
        "plant_id": "Plant_A",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "q",
        "generated_response": "a",
        "latency_ms": 100.0,
        "contains_safety_keyword": False,
        "safety_computed": False,
        "source": "test",
        "ingested_at": T0,
    }
    schema = SCHEMAS["requests"]
    rows = [
        {**base, "request_id": rid, "timestamp": T0 + timedelta(days=day, minutes=i)}
        for i, rid in enumerate(ids)
    ]
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


def stored_ids(store: LogStore) -> list[str]:
    files = store.files("requests")
    if not files:
        return []
    return sorted(
        pa.concat_tables([pq.read_table(f) for f in files]).column("request_id").to_pylist()
    )


def query_ids(store: LogStore) -> list[str]:
    con = store.connect()
    return sorted(
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )


def fill(store: LogStore, batches: int, per: int = 5, day: int = 0, tag: str = "r") -> list[str]:
    ids = []
    for b in range(batches):
        batch = [f"{tag}{day}-{b}-{i}" for i in range(per)]
        assert store.append("requests", requests_table(batch, day)).accepted == per
        ids += batch
    return sorted(ids)


def partition(store: LogStore, day: int = 0) -> Path:
    return store.root / "requests" / f"date={(T0 + timedelta(days=day)).date().isoformat()}"


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    return LogStore(tmp_path / "log", threads=1)


def test_each_day_partition_becomes_one_file_with_the_same_rows(store: LogStore) -> None:
    ids = fill(store, 6, day=0) + fill(store, 4, day=1)
    assert len(store.files("requests")) == 10
    result = store.compact(grace_s=0)
    assert result.to_dict() == {
        "directories": 2,
        "files_in": 10,
        "files_out": 2,
        "rows": 50,
        "retired": 10,
    }
    files = store.files("requests")
    assert [Path(f).parent.name for f in files] == ["date=2026-11-02", "date=2026-11-03"]
    assert all(Path(f).name.startswith("compact-") for f in files)
    assert stored_ids(store) == sorted(ids)
    assert query_ids(store) == sorted(ids)
    # Nothing else is left in the partitions: inputs, manifests and temporary files are gone.
    assert sorted(p.name for p in partition(store).iterdir()) == [Path(files[0]).name]
    assert store.count("requests") == 50


def test_idempotency_holds_across_compacted_files(store: LogStore) -> None:
    ids = fill(store, 4)
    store.compact(grace_s=0)
    again = store.append("requests", requests_table([ids[0], ids[7], "new-1"]))
    assert (again.accepted, again.duplicates) == (1, 2)
    # A second round merges the compacted file with the new part; still each key once.
    store.compact(grace_s=0)
    assert stored_ids(store) == sorted([*ids, "new-1"])
    assert len(store.files("requests")) == 1
    assert store.append("requests", requests_table(["new-1", ids[3]])).duplicates == 2


def test_merged_inputs_leave_the_tree_at_once_and_stay_for_earlier_readers(
    store: LogStore,
) -> None:
    ids = fill(store, 5)
    before = store.files("requests")
    reader = store.connect()  # lists the five parts, before the compaction
    store.compact(grace_s=3600)
    # The readable tree holds only the merged file; the inputs moved outside it, to the old
    # generation kept for readers that listed them.
    assert not any(Path(f).exists() for f in before)
    (merged,) = store.files("requests")
    assert Path(merged).name.startswith("compact-")
    assert glob_count(store) == (5 * 5, 5 * 5)
    (old,) = [p for p in store.swap_root.iterdir()]
    assert sorted(p.name for p in old.iterdir()) == sorted(Path(f).name for f in before)
    # The earlier reader still reads what it listed.
    assert (
        sorted(
            reader.to_pyarrow(reader.table("requests").select("request_id"))
            .column("request_id")
            .to_pylist()
        )
        == ids
    )
    assert query_ids(store) == ids
    # Compacting again within the grace period: the merged file and a new part are merged.
    ids += fill(store, 1, tag="late")
    r = store.compact(grace_s=3600)
    assert (r.files_in, r.retired) == (2, 0)
    assert stored_ids(store) == sorted(ids)
    # Expired generations go; the superseded files are counted once.
    assert store.retire(grace_s=0) == 5 + 2
    assert list(store.swap_root.iterdir()) == []
    assert stored_ids(store) == sorted(ids) and query_ids(store) == sorted(ids)
    assert len(list(partition(store).iterdir())) == 1


def glob_count(store: LogStore) -> tuple[int, int]:
    """Rows and distinct request ids as a plain reader globbing the log root sees them."""
    pattern = str(store.root / "**" / "*.parquet")
    rows, distinct = (
        duckdb.connect()
        .execute(
            f"SELECT count(*), count(DISTINCT request_id) FROM read_parquet('{pattern}', "
            "union_by_name=true) WHERE request_id IS NOT NULL"
        )
        .fetchone()
    )  # type: ignore[misc]
    return int(rows), int(distinct)


def test_a_crash_before_the_swap_loses_and_duplicates_nothing(store: LogStore) -> None:
    ids = fill(store, 5)
    d = partition(store)
    # What a crash after the merged file was staged and before the swap leaves: a staging
    # directory beside the log root, and the partition as it was.
    merged = pa.concat_tables([pq.read_table(f) for f in store.files("requests")])
    stages = []
    for age_s in (2 * 86400, 60):
        stage = store.swap_root / f"stage-{int((time.time() - age_s) * 1000)}-deadbeef"
        stage.mkdir(parents=True)
        pq.write_table(merged, stage / "compact-x.parquet")
        stages.append(stage)
    assert len(store.files("requests")) == 5
    assert stored_ids(store) == ids and query_ids(store) == ids
    assert glob_count(store) == (25, 25)
    assert store.append("requests", requests_table(ids[:3])).duplicates == 3
    r = store.compact(grace_s=0)
    assert (r.files_in, r.files_out) == (5, 1)
    assert stored_ids(store) == ids
    # The day-old staging directory was left by a crash and goes; a recent one may belong to a
    # compaction still running elsewhere and stays, whatever the grace period.
    assert list(store.swap_root.iterdir()) == [stages[1]] and not list(d.glob(".*"))


def test_a_store_compacted_with_manifests_is_read_and_cleaned(store: LogStore) -> None:
    # Stores written before the directory swap kept superseded inputs beside a manifest.
    ids = fill(store, 3)
    d = partition(store)
    inputs = [Path(f).name for f in store.files("requests")]
    merged = pa.concat_tables([pq.read_table(d / n) for n in inputs])
    pq.write_table(merged, d / "compact-legacy.parquet")
    (d / ".compaction-legacy.json").write_text(
        json.dumps(
            {"output": "compact-legacy.parquet", "inputs": inputs, "created_at": T0.isoformat()}
        )
    )
    assert [Path(f).name for f in store.files("requests")] == ["compact-legacy.parquet"]
    assert stored_ids(store) == ids and query_ids(store) == ids
    assert store.append("requests", requests_table(ids[:2])).duplicates == 2
    store.compact(grace_s=0, min_files=2)
    assert sorted(p.name for p in d.iterdir()) == ["compact-legacy.parquet"]
    assert stored_ids(store) == ids


def test_compaction_killed_at_any_moment_keeps_every_row_once(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "log", threads=1)
    ids = fill(store, 60, per=20)
    script = textwrap.dedent(f"""
        import random
        from modelwarden.store.logstore import LogStore
        store = LogStore({str(store.root)!r}, threads=1)
        print("go", flush=True)
        while True:
            store.compact(grace_s=random.choice([0.0, 3600.0]))
    """)
    rng = np.random.default_rng(7)
    for round_ in range(6):
        # More parts to merge each round, so that kills land in different steps.
        ids += fill(store, 10, per=3, tag=f"k{round_}-")
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert stored_ids(store) == sorted(ids), f"round {round_}"
        assert store.append("requests", requests_table(ids[:2])).duplicates == 2
    store.compact(grace_s=0)
    assert stored_ids(store) == sorted(ids)
    assert len(store.files("requests")) == 1


def test_only_small_files_are_merged_and_only_when_there_are_enough(store: LogStore) -> None:
    fill(store, 3)
    assert store.compact(min_files=4).files_in == 0
    assert len(store.files("requests")) == 3
    big = max(os.path.getsize(f) for f in store.files("requests"))
    assert store.compact(min_files=3, small_bytes=big + 1).files_in == 3
    fill(store, 2, tag="more")
    # The compacted file is larger than the new parts: only those two are merged.
    small = max(os.path.getsize(f) for f in store.files("requests") if "part-" in f) + 1
    assert store.compact(min_files=2, small_bytes=small).files_in == 2
    assert len(store.files("requests")) == 2


def test_embeddings_and_rejected_records_are_compacted_too(store: LogStore) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 4)).astype(np.float32)
    for i in range(3):
        store.append_embeddings(
            "prompt", "hashing", [f"e{2 * i}", f"e{2 * i + 1}"], vecs[2 * i : 2 * i + 2], [T0] * 2
        )
    r = store.compact(["embeddings"], grace_s=0)
    assert (r.files_in, r.files_out, r.rows) == (3, 1, 6)
    (f,) = store.embedding_files("prompt", "hashing")
    table = pq.read_table(f)
    assert table.column("request_id").to_pylist() == [f"e{i}" for i in range(6)]
    np.testing.assert_array_equal(
        np.asarray(table.column("vector").to_pylist(), dtype=np.float32), vecs
    )
    assert store.append_embeddings("prompt", "hashing", ["e1", "e9"], vecs[:2], [T0] * 2) == 1


def test_unknown_kinds_and_bad_thresholds_are_refused(store: LogStore) -> None:
    with pytest.raises(InputError) as err:
        store.compact(["nope"])
    assert err.value.field == "kind"
    with pytest.raises(InputError) as err:
        store.compact(min_files=1)
    assert err.value.field == "min_files"


def test_live_files_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert live_files(tmp_path / "absent") == []


def test_the_compact_command(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    store = LogStore(data / "log")
    ids = fill(store, 4)
    out = subprocess.run(
        [
            CLI,
            "--data",
            str(data),
            "compact",
            "--kind",
            "requests",
            "--grace",
            "0",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == {
        "directories": 1,
        "files_in": 4,
        "files_out": 1,
        "rows": 20,
        "retired": 4,
    }
    assert stored_ids(store) == ids
    again = subprocess.run(
        [CLI, "--data", str(data), "compact"], capture_output=True, text=True, check=True
    )
    assert " ".join(again.stdout.split()) == (
        "merged 0 files into 0 in 0 directories (0 rows); deleted 0 merged files"
    )
    bad = subprocess.run(
        [CLI, "--data", str(data), "compact", "--kind", "nope"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "nope" in bad.stderr + bad.stdout
