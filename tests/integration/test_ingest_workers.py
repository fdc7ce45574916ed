"""Large ingest batches are checked by a worker process at lower CPU priority, with the same
answers, spool contents, refusals and errors as a batch checked on the server itself."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_ingest import record as request_record

from modelwarden.governance import audit
from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.ingest_checks import INLINE_BODY_BYTES, WORKER_NICE
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

N = 300


def record(i: int, **over: Any) -> dict[str, Any]:
    return request_record(f"w-{i}", **over)


def batch() -> list[Any]:
    """N records, three of them bad in different ways: a -1 latency, a "4" score, another plant."""
    records: list[Any] = [record(i) for i in range(N)]
    records[10] = record(10, latency_ms=-1)
    records[20] = record(20, human_feedback_score="4")
    records[30] = record(30, plant_id="Plant_D")
    return records


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[int, Any]]:
    """Two servers, large batches checked by a worker process in one, by a thread in the other."""
    out: dict[int, Any] = {}
    threads = []
    for workers in (1, 0):
        data = tmp_path / f"data-{workers}"
        state = StateStore.at(data)
        key = create_key(state, "ingest", name="line b", plant="Plant_B")[0]
        state.close()
        settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
        app = create_app(
            settings,
            ServerConfig(flush_interval_s=0.1, ingest_workers=workers, max_batch_records=N),
        )
        thread = ServerThread(app).start()
        threads.append(thread)
        out[workers] = {
            "data": data,
            "runtime": app.state.runtime,
            "http": httpx.Client(
                base_url=thread.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
            ),
        }
    yield out
    for s in out.values():
        s["http"].close()
    for t in threads:
        t.stop()


def post(http: httpx.Client, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post("/v1/logs", content=content, headers={"content-type": "application/json"})


def wait_stored(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if http.get("/healthz").json()["spool"]["pending_records"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the spool did not drain into the store")


def test_a_large_batch_is_checked_in_a_worker_process_with_the_same_outcome(
    servers: dict[int, Any],
) -> None:
    body = json.dumps(batch()).encode()
    assert len(body) > INLINE_BODY_BYTES
    answers = {}
    for workers, s in servers.items():
        resp = post(s["http"], body)
        assert resp.status_code == 200, resp.text
        answers[workers] = resp.json()
    worker, thread = answers[1], answers[0]
    # The same answer, record by record, whichever way the batch was checked.
    for a in (worker, thread):
        del a["batch_id"]
    assert worker == thread
    assert (worker["received"], worker["accepted"], worker["invalid"]) == (N, N - 3, 3)
    bad = {r["index"]: r for r in worker["results"] if r["status"] == "invalid"}
    assert sorted(bad) == [10, 20, 30]
    assert bad[10]["field"] == "latency_ms"
    assert bad[20]["field"] == "human_feedback_score"
    assert bad[30]["field"] == "plant_id" and "bound to plant 'Plant_B'" in bad[30]["reason"]

    # The worker is another process, at a lower CPU priority than the server.
    rt = servers[1]["runtime"]
    pool = rt.ingest_checks._pool
    assert pool is not None
    pids = list(pool._processes)
    assert pids and os.getpid() not in pids
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {min(ours + WORKER_NICE, 19)}
    assert servers[0]["runtime"].ingest_checks._pool is None

    # Acknowledged means stored: the valid records in the log store, the bad ones rejected
    # with their reasons, and the other plant's record refused in the audit log.
    for s in servers.values():
        wait_stored(s["http"])
        con = LogStore(s["data"] / "log").connect()
        stored = con.to_pyarrow(con.table("requests").select("request_id")).column(0).to_pylist()
        assert sorted(stored) == sorted(f"w-{i}" for i in range(N) if i not in (10, 20, 30))
        rejected = con.to_pyarrow(con.table("rejected").drop("raw")).to_pylist()
        assert sorted(r["field"] for r in rejected) == [
            "human_feedback_score",
            "latency_ms",
            "plant_id",
        ]
        s["runtime"].keys.refusals.flush()
        refused = [e for e in audit.entries(s["runtime"].state) if e.action == "auth.refused"]
        assert [e.subject for e in refused] == ["http:/v1/logs"]


def test_errors_from_a_worker_name_the_field_and_reason(servers: dict[int, Any]) -> None:
    http = servers[1]["http"]
    pad = "x" * (INLINE_BODY_BYTES + 10)
    # Malformed JSON, large enough to go to the worker.
    resp = post(http, ('[{"request_id": "' + pad + '"}, ').encode())
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "malformed_json" and "malformed JSON" in err["message"]
    # The wrong shape.
    resp = post(http, {"records": {"pad": pad}})
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "records"
    # More records than a batch may hold.
    resp = post(http, [record(i) for i in range(N + 1)])
    assert resp.status_code == 413, resp.text
    err = resp.json()["error"]
    assert f"at most {N} records" in err["message"]
    # Nothing of these was acknowledged or spooled.
    assert http.get("/healthz").json()["spool"]["pending_records"] == 0
    # NDJSON goes the same way.
    lines = b"\n".join(json.dumps(record(i)).encode() for i in range(100))
    resp = http.post("/v1/logs", content=lines, headers={"content-type": "application/x-ndjson"})
    assert resp.status_code == 200 and resp.json()["accepted"] == 100
