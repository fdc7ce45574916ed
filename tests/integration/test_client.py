"""``modelwarden.client`` against a real server: batching, the decorator, outages and a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serveproc import start_serve

from modelwarden.client import AsyncClient, Client, last_request_id
from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore


def _keys(data: Path) -> tuple[str, str]:
    state = StateStore.at(data)
    ingest, _ = create_key(state, "ingest")
    admin, _ = create_key(state, "admin")
    state.close()
    return ingest, admin


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    data = tmp_path / "warden-data"
    _, admin = _keys(data)
    app = create_app(
        Settings(data_dir=data, embedder="hashing"), ServerConfig(flush_interval_s=0.1)
    )
    with ServerThread(app) as thread:
        yield thread.url, admin, data


def tables(data: Path) -> dict[str, list[dict[str, Any]]]:
    con = LogStore(data / "log").connect()
    out = {}
    for name in ("requests", "feedback", "escalations", "rejected"):
        try:
            out[name] = con.to_pyarrow(con.table(name)).to_pylist()
        except Exception:  # a table that has no rows yet does not exist
            out[name] = []
    return out


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "plant_id": "Plant_A",
        "model_version": "sop-v1.3",
        "user_prompt": f"What is step {i} of the lockout procedure?",
        "generated_response": f"Step {i}: isolate the energy source.",
        "latency_ms": 100.0 + i,
        **extra,
    }


def test_log_feedback_and_escalate_arrive(srv: tuple[str, str, Path]) -> None:
    url, key, data = srv
    with Client(url, key, flush_interval=0.05) as mw:
        rid = mw.log(record(1, user_id="op-7"))
        fb = mw.feedback(rid, 2, "wrong torque", user_id="op-7")
        esc = mw.escalate(rid, "safety", "skips the lockout step", confirmed=True)
        assert mw.flush(20)
        stats = mw.stats
    assert (stats.queued, stats.sent, stats.invalid, stats.dropped) == (3, 3, 0, 0)
    wait_for_spool(url)
    t = tables(data)
    [req] = t["requests"]
    assert (req["request_id"], req["user_id"], req["latency_ms"]) == (rid, "op-7", 101.0)
    [f] = t["feedback"]
    assert (f["event_id"], f["request_id"], f["score"], f["comment"]) == (
        fb,
        rid,
        2,
        "wrong torque",
    )
    [e] = t["escalations"]
    assert (e["event_id"], e["category"], e["confirmed"], e["reason"]) == (
        esc,
        "safety",
        True,
        "skips the lockout step",
    )


def test_an_invalid_record_is_counted_and_kept_by_the_server(srv: tuple[str, str, Path]) -> None:
    url, key, data = srv
    with Client(url, key, flush_interval=0.05) as mw:
        mw.log(record(1))
        bad = mw.log({**record(2), "latency_ms": -5})
        assert mw.flush(20)
        stats = mw.stats
    assert (stats.queued, stats.sent, stats.invalid) == (2, 1, 1)
    assert stats.last_error is not None and "latency_ms" in stats.last_error
    wait_for_spool(url)
    assert [r["record_key"] for r in tables(data)["rejected"]] == [bad]


def test_the_decorator_records_prompt_answer_latency_and_errors(
    srv: tuple[str, str, Path],
) -> None:
    url, key, data = srv
    mw = Client(url, key, flush_interval=0.05)

    @mw.record_call(plant_id="Plant_C", model_version="sop-v2.0", route="canary")
    def ask(prompt: str) -> str:
        time.sleep(0.05)
        return f"answer to {prompt}"

    @mw.record_call(plant_id="Plant_C")
    async def ask_async(question: str, model: str) -> str:
        await asyncio.sleep(0.02)
        raise TimeoutError("upstream timed out")

    assert ask("How do I reset the press?") == "answer to How do I reset the press?"
    first = last_request_id()
    with pytest.raises(TimeoutError, match="upstream timed out"):
        asyncio.run(ask_async(question="Where is the spill kit?", model="sop-v2.1"))
    assert mw.flush(20)
    mw.close()
    wait_for_spool(url)
    rows = {r["request_id"]: r for r in tables(data)["requests"]}
    assert len(rows) == 2
    ok = rows[first]
    assert (ok["plant_id"], ok["model_version"], ok["route"]) == ("Plant_C", "sop-v2.0", "canary")
    assert ok["user_prompt"] == "How do I reset the press?"
    assert ok["generated_response"] == "answer to How do I reset the press?"
    assert ok["latency_ms"] >= 50
    [failed] = [r for r in rows.values() if r["request_id"] != first]
    assert failed["model_version"] == "sop-v2.1"
    assert failed["user_prompt"] == "Where is the spill kit?"
    assert failed["error"] == "TimeoutError: upstream timed out"
    assert failed["generated_response"] is None


def test_async_client(srv: tuple[str, str, Path]) -> None:
    url, key, data = srv

    async def main() -> list[str]:
        async with AsyncClient(url, key, flush_interval=0.05) as mw:
            ids = [mw.log(record(i)) for i in range(30)]
            assert await mw.flush(20)
            assert mw.stats.sent == 30
        return ids

    ids = asyncio.run(main())
    wait_for_spool(url)
    assert sorted(r["request_id"] for r in tables(data)["requests"]) == sorted(ids)


def test_modelwarden_down_never_raises_and_counts_what_it_dropped() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    mw = Client(url, "mw_nothing", max_queue=20, batch_size=5, flush_interval=0.01, retry_for=0.3)
    for i in range(50):
        mw.log(record(i))
    mw.feedback("req-1", 5)
    assert not mw.flush(timeout=0.2)
    mw.close(timeout=3)
    stats = mw.stats
    assert (stats.queued, stats.sent, stats.pending) == (51, 0, 0)
    assert stats.dropped_full >= 51 - 20 - 5  # the queue holds 20, one batch of 5 in flight
    assert stats.dropped == 51  # all of it, counted: the full queue and the batches given up
    assert stats.retries > 0
    assert "ConnectError" in (stats.last_error or "")
    # Logging after close is counted too, and still does not raise.
    mw.log(record(99))
    assert mw.stats.dropped == 52


def test_drop_newest_keeps_the_first_records() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    mw = Client(url, None, max_queue=3, drop="newest", batch_size=1000, flush_interval=60)
    ids = [mw.log(record(i)) for i in range(5)]
    assert mw.stats.dropped_full == 2
    assert [rec["request_id"] for _, rec, _ in mw._sender._queue] == ids[:3]
    mw.close(timeout=0.5)


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    return start_serve(
        data,
        port,
        *("--otlp-grpc-port", "0", "--flush-interval", "0.2", "--log-level", "warning"),
    )


def test_a_server_restart_in_the_middle_of_a_batch_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "warden-data"
    key, _ = _keys(data)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data, port)
    mw = Client(url, key, batch_size=50, flush_interval=0.02, retry_for=120)
    logged: list[str] = []
    total = 3000

    def app_traffic() -> None:
        for i in range(total):
            logged.append(mw.log(record(i)))
            if i % 50 == 0:
                time.sleep(0.01)

    sender = threading.Thread(target=app_traffic)
    sender.start()
    try:
        while mw.stats.sent < 500:  # batches are flowing
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # no goodbye: batches in flight lose their answer
        proc.wait(10)
        sent_before = mw.stats.sent
        time.sleep(1.0)
        assert mw.stats.retries > 0
        proc = _serve(data, port)
        sender.join(60)
        assert mw.flush(120), mw.stats
        stats = mw.stats
        assert stats.dropped == 0, stats
        assert stats.sent >= total and sent_before < total
    finally:
        mw.close(5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    rows = tables(data)["requests"]
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)) == total  # nothing lost, nothing stored twice
    assert set(ids) == set(logged)


def test_the_client_imports_nothing_heavy() -> None:
    code = (
        "import json, sys, modelwarden.client; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    loaded = set(json.loads(out.stdout))
    heavy = {"numpy", "pandas", "pyarrow", "duckdb", "ibis", "torch", "sqlalchemy", "fastapi"}
    assert not loaded & heavy
    assert {"httpx", "tenacity"} <= loaded
