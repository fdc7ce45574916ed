"""A full disk under a real server: 507 and no acknowledgement, then every acknowledged record kept.

The data directory lives on a 2 MB tmpfs mounted for the test (it needs root). Batches are sent
until the disk is full; the refused batch gets 507 and nothing of it is stored, not even after
the disk gets room again, while every batch answered 200 before ends up in the store.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.errors import StorageFull
from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.spool import Spool, SpoolBatch
from modelwarden.store.state import StateStore

BATCH = 40
PAD = "x" * 900  # about 1 kB per record, so a couple of MB fill up in a few dozen batches


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def grow(mnt: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def record(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "timestamp": "2026-11-02T10:05:00Z",
        "plant_id": "Plant_B",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": f"What is the lubrication schedule for line {rid}? {PAD}",
        "generated_response": "Every 200 operating hours with ISO VG 46 oil.",
        "latency_ms": 250,
    }


def stored_ids(data: Path) -> list[str]:
    con = LogStore(data / "log").connect()
    ids: list[str] = (
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )
    return ids


def test_a_full_disk_answers_507_acknowledges_nothing_and_loses_nothing_acknowledged(
    small_disk: Path,
) -> None:
    data = small_disk / "warden-data"
    state = StateStore.at(data)
    key = create_key(state, "ingest", name="disk test")[0]
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    app = create_app(settings, ServerConfig(flush_interval_s=0.1, run_controller=False))
    thread = ServerThread(app).start()
    http = httpx.Client(base_url=thread.url, timeout=30, headers={"Authorization": f"Bearer {key}"})
    acked: set[str] = set()
    refused: list[list[str]] = []
    try:
        for n in range(400):
            ids = [f"b{n}-{i}" for i in range(BATCH)]
            resp = http.post("/v1/logs", json=[record(i) for i in ids])
            if resp.status_code == 200:
                assert resp.json()["accepted"] == BATCH
                acked.update(ids)
                continue
            assert resp.status_code == 507, resp.text
            body = resp.json()
            assert set(body) == {"error"}, body  # no per-record answers: nothing was accepted
            assert body["error"]["code"] == "insufficient_storage"
            assert "nothing of this batch was kept" in body["error"]["message"]
            assert str(data) not in body["error"]["message"]
            refused.append(ids)
            if len(refused) == 2:
                break
        assert len(refused) == 2, "the 2 MB disk never filled up"
        assert acked, "the disk was full before the first batch"
        metrics = http.get("/metrics").text
        line = next(
            ln
            for ln in metrics.splitlines()
            if ln.startswith('modelwarden_spool_write_failures_total{reason="no_room"}')
        )
        assert float(line.split()[-1]) >= 2 * BATCH
        assert http.get("/healthz").status_code == 200

        # Room again: the first refused batch is sent again and kept; the second never was.
        grow(small_disk, "64m")
        resent, never_sent = refused
        resp = http.post("/v1/logs", json=[record(i) for i in resent])
        assert resp.status_code == 200, resp.text
        acked.update(resent)
        deadline = time.monotonic() + 60
        while http.get("/healthz").json()["spool"]["pending_records"] and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert http.get("/healthz").json()["spool"]["pending_records"] == 0
    finally:
        http.close()
        thread.stop()
    ids = stored_ids(data)
    assert len(ids) == len(set(ids))
    assert set(ids) == acked
    assert not set(never_sent) & set(ids)


def test_the_spool_cuts_a_failed_write_back_and_keeps_what_was_acknowledged(
    small_disk: Path,
) -> None:
    spool = Spool(small_disk / "spool")
    spool.start()
    acked: list[str] = []
    error: BaseException | None = None
    for n in range(200):
        batch = SpoolBatch("requests", "t", [(f"{n}-{i}", record(f"{n}-{i}")) for i in range(20)])
        try:
            spool.append(batch).result(10)
        except StorageFull as exc:
            error = exc
            break
        acked.extend(loc for loc, _ in batch.items)
    assert isinstance(error, StorageFull)
    assert error.http_status == 507 and error.details["free_bytes"] is not None
    assert spool.pending_records() == len(acked)
    sealed = spool.seal()
    spool.close()
    lines = [p.read_bytes() for p in sealed]
    # Every segment ends on a whole line: the refused batch left no partial line behind.
    assert all(not b or b.endswith(b"\n") for b in lines)
    kept = [json.loads(ln)["items"] for b in lines for ln in b.splitlines()]
    assert [loc for items in kept for loc, _ in items] == acked
