"""The spool under the ingest API: group commit, crash leftovers, one owner, bad records isolated."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from modelwarden.errors import StoreError
from modelwarden.ingest.core import Ingestor
from modelwarden.store.logstore import CompactionPolicy, LogStore
from modelwarden.store.spool import Flusher, Spool, SpoolBatch, read_segment


def rec(rid: str, **over: Any) -> dict[str, Any]:
    base = {
        "request_id": rid,
        "timestamp": "2026-11-04T07:30:00Z",
        "plant_id": "Plant_A",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "Coolant concentration?",
        "generated_response": "Keep it between 6 and 8 percent.",
        "latency_ms": 210.0,
    }
    base.update(over)
    return base


def test_concurrent_appends_are_all_durable_in_order_per_writer(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.start() == []
    futures: dict[int, list[Any]] = {}

    def writer(n: int) -> None:
        futures[n] = [
            spool.append(SpoolBatch("requests", "t", [(f"{n}-{i}", rec(f"{n}-{i}"))]))
            for i in range(200)
        ]

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for fs in futures.values():
        for f in fs:
            assert f.result(timeout=10) is None
    assert spool.pending_records() == 800
    sealed = spool.seal()
    spool.close()
    batches = [b for path in sealed for b in read_segment(path)]
    ids = [b.items[0][0] for b in batches]
    assert sorted(ids) == sorted(f"{n}-{i}" for n in range(4) for i in range(200))
    for n in range(4):  # each writer's batches keep their order
        mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"{n}-")]
        assert mine == sorted(mine)


def test_a_second_owner_is_refused_and_leftovers_are_handed_back(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool")
    first.start()
    first.append(SpoolBatch("requests", "t", [("a", rec("a"))])).result(5)
    with pytest.raises(StoreError, match="one server per data directory"):
        Spool(tmp_path / "spool").start()
    first.close()
    second = Spool(tmp_path / "spool")
    leftovers = second.start()
    assert [b.items[0][1]["request_id"] for p in leftovers for b in read_segment(p)] == ["a"]
    assert second.pending_records() == 1
    second.close()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    seg = tmp_path / "seg-000000000001.jsonl"
    good = SpoolBatch("requests", "t", [("x", rec("x"))]).to_line()
    seg.write_bytes(good + good[: len(good) // 2])
    assert [b.items[0][0] for b in read_segment(seg)] == ["x"]


def test_a_record_the_store_cannot_hold_is_kept_as_rejected(tmp_path: Path) -> None:
    # A segment as an older server could have left it: records that the store's columns cannot
    # hold (validation now refuses them), between good ones.
    data = tmp_path / "warden-data"
    spool_dir = data / "spool"
    spool_dir.mkdir(parents=True)
    items = [(f"r{i}", rec(f"ok-{i}")) for i in range(6)]
    items.insert(2, ("huge", rec("huge-tokens", prompt_tokens=2**40)))
    items.insert(5, ("vector", rec("huge-vector", prompt_embedding=[1e300, 0.0])))
    line = SpoolBatch("requests", "replayed", items).to_line()
    (spool_dir / "seg-000000000001.jsonl").write_bytes(line)

    store = LogStore(data / "log")
    ingestor = Ingestor(store)
    unstorable: list[str] = []

    def keep_rejected(kind: str, item: tuple[str, Any], source: str, exc: Exception) -> None:
        unstorable.append(item[0])

    spool = Spool(spool_dir)
    spool.start()
    flusher = Flusher(spool, ingestor.ingest_raw, on_unstorable=keep_rejected)
    assert flusher.flush_once() == 8
    spool.close()
    con = store.connect()
    stored = sorted(
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )
    assert stored == [f"ok-{i}" for i in range(6)]
    # Refused by validation, they never reach the store's own refusal.
    assert unstorable == []
    rejected = con.to_pyarrow(con.table("rejected")).to_pylist()
    assert sorted((r["location"], r["record_key"], r["field"]) for r in rejected) == [
        ("huge", "huge-tokens", "prompt_tokens"),
        ("vector", "huge-vector", "prompt_embedding"),
    ]
    assert list(spool_dir.glob("seg-*.jsonl")) == []


def test_bad_unicode_and_out_of_range_values_are_answered_invalid(tmp_path: Path) -> None:
    from modelwarden.ingest.validation import as_bad_line, check_batch

    raw = json.loads(
        '[{"request_id": "s", "timestamp": "2026-11-04T07:30:00Z", '
        '"plant_id": "Plant_A", "model_version": "v", "user_prompt": "a\\ud800b",'
        ' "generated_response": "x", "latency_ms": 1}]'
    )
    batch = [
        rec("fine"),
        rec("tokens", completion_tokens=2**31),
        raw[0],
        rec("vec", response_embedding=[3.5e38]),
    ]
    results, accepted, items = check_batch("requests", batch, {}, "b1")
    assert accepted == 1
    assert [(r["status"], r.get("field")) for r in results] == [
        ("accepted", None),
        ("invalid", "completion_tokens"),
        ("invalid", "user_prompt"),
        ("invalid", "response_embedding"),
    ]
    # They reach the ingest path as unreadable lines with the same field and reason.
    store = LogStore(tmp_path / "log")
    report = Ingestor(store).ingest_raw(
        "requests", [(loc, as_bad_line(r)) for loc, r in items], "t"
    )
    assert (report.accepted, report.rejected) == (1, 3)
    fields = [r["field"] for r in report.first_rejections]
    assert fields == ["completion_tokens", "user_prompt", "response_embedding"]
    line = SpoolBatch("requests", "t", items).to_line()
    line.decode("utf-8")  # every spooled line is valid UTF-8


def test_a_backlog_is_stored_in_batches_of_segments_and_merged_as_it_goes(
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    # 40 segments of 25 records, as a server that flushed every second would leave them.
    for s in range(40):
        items = [(f"s{s}-{i}", rec(f"b{s}-{i}")) for i in range(25)]
        line = SpoolBatch("requests", "backlog", items).to_line()
        (spool_dir / f"seg-{s + 1:012d}.jsonl").write_bytes(line)
    store = LogStore(tmp_path / "log", threads=1)
    ingestor = Ingestor(store)
    calls: list[int] = []
    files_after_batch: list[int] = []

    def store_batch(kind: str, items: Any, source: str) -> Any:
        calls.append(len(items))
        return ingestor.ingest_raw(kind, items, source)

    def merge() -> None:
        store.maintain(CompactionPolicy(fanout=2, base_bytes=1 << 20), grace_s=0)
        files_after_batch.append(len(store.files("requests")))

    spool = Spool(spool_dir)
    spool.start()
    flusher = Flusher(spool, store_batch, batch_records=300, on_batch=merge)
    assert flusher.flush_once() == 1000
    spool.close()
    # Twelve segments (300 records) per append, not one append per segment.
    assert calls == [300, 300, 300, 100]
    assert files_after_batch == [1, 1, 1, 1]
    assert store.count("requests") == 1000
    assert list(spool_dir.glob("seg-*.jsonl")) == []
    # Replayed again (a crash before the segments were removed): nothing is added.
    line = SpoolBatch("requests", "backlog", [("again", rec("b3-7"))]).to_line()
    (spool_dir / "seg-000000000041.jsonl").write_bytes(line)
    spool = Spool(spool_dir)
    spool.start()
    assert Flusher(spool, store_batch).flush_once() == 1
    spool.close()
    assert store.count("requests") == 1000
