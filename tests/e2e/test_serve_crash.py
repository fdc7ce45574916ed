"""``kill -9`` of a real ``modelwarden serve`` during a stream of batches loses nothing acknowledged."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from serveproc import start_serve

from modelwarden.governance.keys import create_key
from modelwarden.server.runner import free_port
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

SENDERS = 4
BATCH = 25


def start_server(
    data: Path, port: int, flush_interval: float, flush_early: int = 20_000
) -> subprocess.Popen[bytes]:
    return start_serve(
        data,
        port,
        *("--flush-interval", str(flush_interval), "--flush-early", str(flush_early)),
        *("--log-level", "warning"),
    )


def stream_until_killed(
    url: str, key: str, tag: str, proc: subprocess.Popen[bytes], run_for: float
) -> tuple[set[str], int]:
    """Send batches from several clients; kill -9 the server mid-stream. Returns acked ids."""
    acked: set[str] = set()
    lock = threading.Lock()
    sent = [0]
    stop = threading.Event()

    def sender(n: int) -> None:
        i = 0
        with httpx.Client(
            base_url=url, timeout=5, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            while not stop.is_set():
                ids = [f"{tag}-{n}-{i}-{j}" for j in range(BATCH)]
                i += 1
                batch = [
                    {
                        "request_id": rid,
                        "timestamp": "2026-11-03T08:00:00Z",
                        "plant_id": f"Plant_{'ABCD'[n]}",
                        "model_version": "sop-assistant-v1.1",
                        "user_prompt": "How do I lock out the press?",
                        "generated_response": "Isolate, lock, tag, verify zero energy.",
                        "latency_ms": 180 + j,
                    }
                    for j, rid in enumerate(ids)
                ]
                with lock:
                    sent[0] += len(ids)
                try:
                    resp = http.post("/v1/logs", json=batch)
                except httpx.HTTPError:
                    return  # the server is gone; this batch was never acknowledged
                if resp.status_code == 200:
                    with lock:
                        acked.update(ids)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    time.sleep(run_for)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    return acked, sent[0]


def stored_ids(data: Path) -> list[str]:
    con = LogStore(data / "log").connect()
    return (
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )


@pytest.mark.timeout(180)
def test_kill_9_during_a_stream_loses_no_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "ingest", name="crash test")
    state.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    # 1: nothing reaches the store before the kill (a long flush interval, and no early flush
    # however fast the records come): all in the spool.
    proc = start_server(data, port, flush_interval=60, flush_early=10_000_000)
    acked_1, _ = stream_until_killed(url, key, "a", proc, run_for=1.5)
    assert len(acked_1) >= 10 * BATCH, "too few batches were acknowledged to mean anything"
    assert stored_ids(data) == []
    assert list((data / "spool").glob("seg-*.jsonl"))

    # 2: killed while the store is taking batches in as they arrive.
    proc = start_server(data, port, flush_interval=0.05)
    acked_2, _ = stream_until_killed(url, key, "b", proc, run_for=1.5)
    assert acked_2

    # 3: a restart replays whatever the spool holds.
    proc = start_server(data, port, flush_interval=0.1)
    try:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/healthz").json()["spool"]["pending_records"]:
            assert time.monotonic() < deadline, "the spool was not replayed"
            time.sleep(0.1)
        ids = stored_ids(data)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    stored = set(ids)
    assert len(ids) == len(stored), "a replay stored some record twice"
    missing = (acked_1 | acked_2) - stored
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:3]}"
    # Unacknowledged batches may or may not have made it; nothing else may appear.
    assert all(i.startswith(("a-", "b-")) for i in stored)
    # SIGTERM is a clean stop: everything is in the store and the spool is empty.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert list((data / "spool").glob("seg-*.jsonl")) == []
