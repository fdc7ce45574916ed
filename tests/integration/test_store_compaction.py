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
from typing import Any

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


def test_merged_inputs_are_kept_for_readers_until_the_grace_period_ends(store: LogStore) -> None:
    ids = fill(store, 5)
    before = store.files("requests")
    store.compact(grace_s=3600)
    # The inputs are still on disk (a reader that listed them can finish) but no longer read.
    assert all(Path(f).exists() for f in before)
    assert len(store.files("requests")) == 1
    assert stored_ids(store) == ids and query_ids(store) == ids
    # Compacting again within the grace period: the compacted file and a new part are merged,
    # and the first inputs are not deleted while their output is still needed by them.
    ids += fill(store, 1, tag="late")
    r = store.compact(grace_s=3600)
    assert (r.files_in, r.retired) == (2, 0)
    assert stored_ids(store) == sorted(ids)
    assert store.compact(grace_s=0).retired == 5 + 2
    assert stored_ids(store) == sorted(ids)
    assert len(list(partition(store).iterdir())) == 1


def _manifest(d: Path) -> tuple[Path, dict[str, Any]]:
    (path,) = d.glob(".compaction-*.json")
    return path, json.loads(path.read_text())


def test_a_crash_before_the_merged_file_is_in_place_loses_and_duplicates_nothing(
    store: LogStore,
) -> None:
    ids = fill(store, 5)
    store.compact(grace_s=3600)
    d = partition(store)
    _path, m = _manifest(d)
    # The state a crash between writing the manifest and renaming the merged file leaves: the
    # merged file under its temporary name, the manifest, every input.
    os.replace(d / m["output"], d / f".{m['output']}.tmp")
    assert len(store.files("requests")) == 5
    assert stored_ids(store) == ids and query_ids(store) == ids
    assert store.append("requests", requests_table(ids[:3])).duplicates == 3
    # The next compaction clears the leftovers and does the work again.
    r = store.compact(grace_s=0)
    assert (r.files_in, r.files_out) == (5, 1)
    assert stored_ids(store) == ids
    assert not list(d.glob(".*"))


def test_a_crash_while_the_inputs_are_deleted_loses_and_duplicates_nothing(
    store: LogStore,
) -> None:
    ids = fill(store, 5)
    store.compact(grace_s=3600)
    d = partition(store)
    path, m = _manifest(d)
    # Part-way through deleting the inputs: some gone, the manifest still there.
    for name in m["inputs"][:2]:
        (d / name).unlink()
    assert stored_ids(store) == ids and query_ids(store) == ids
    assert store.compact(grace_s=0).retired == 5
    assert not path.exists()
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
            "prompt", "hashing", [f"e{2 * i}", f"e{2 * i + 1}"], vecs[2 * i : 2 * i + 2]
        )
    r = store.compact(["embeddings"], grace_s=0)
    assert (r.files_in, r.files_out, r.rows) == (3, 1, 6)
    (f,) = store.embedding_files("prompt", "hashing")
    table = pq.read_table(f)
    assert table.column("request_id").to_pylist() == [f"e{i}" for i in range(6)]
    np.testing.assert_array_equal(
        np.asarray(table.column("vector").to_pylist(), dtype=np.float32), vecs
    )
    assert store.append_embeddings("prompt", "hashing", ["e1", "e9"], vecs[:2]) == 1


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
    bad = subprocess.run(
        [CLI, "--data", str(data), "compact", "--kind", "nope"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "nope" in bad.stderr + bad.stdout
