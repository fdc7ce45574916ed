"""The flusher runs in a process of its own: records still reach the store, and it is supervised."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.spool import Spool, SpoolBatch
from modelwarden.store.state import StateStore

CLI = str(Path(sys.executable).parent / "modelwarden")


def record(rid: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "timestamp": "2026-11-02T10:05:00Z",
        "plant_id": "Plant_B",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "Torque for the M12 bolts?",
        "generated_response": "85 Nm in a star pattern.",
        "latency_ms": 250,
    }


def stored_ids(data: Path) -> list[str]:
    con = LogStore(data / "log").connect()
    return sorted(
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is a zombie, not a running flusher.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[1][0] != "Z"


def wait_until(cond: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Srv:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.data = tmp_path / "warden-data"
        state = StateStore.at(self.data)
        self.key = create_key(state, "ingest", name="test")[0]
        state.close()
        settings = Settings(data_dir=self.data, embedder="hashing", embed_threads=1)
        self.thread = ServerThread(create_app(settings, ServerConfig(**config))).start()
        self.http = httpx.Client(
            base_url=self.thread.url, timeout=10, headers={"Authorization": f"Bearer {self.key}"}
        )

    def spool(self) -> dict[str, Any]:
        spool: dict[str, Any] = self.http.get("/healthz").json()["spool"]
        return spool

    def close(self) -> None:
        self.http.close()
        self.thread.stop()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Srv]:
    s = Srv(tmp_path, flush_interval_s=0.1)
    yield s
    s.close()


def test_records_reach_the_store_through_a_separate_process(srv: Srv) -> None:
    pid = srv.spool()["flusher_pid"]
    assert isinstance(pid, int) and pid != os.getpid() and alive(pid)
    # It works in the background: lower CPU priority, and the lowest best-effort IO priority.
    wait_until(lambda: os.getpriority(os.PRIO_PROCESS, pid) >= 10)
    if shutil.which("ionice"):
        out = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True)
        assert out.stdout.strip() == "best-effort: prio 7"
    resp = srv.http.post("/v1/logs", json=[record(f"a{i}") for i in range(30)])
    assert resp.status_code == 200
    wait_for_spool(srv.thread.url)
    assert stored_ids(srv.data) == sorted(f"a{i}" for i in range(30))
    metrics = srv.http.get("/metrics").text
    assert "modelwarden_spool_stored_records_total 30.0" in metrics
    assert list((srv.data / "spool").glob("seg-*.jsonl")) == []


def test_a_killed_flusher_is_started_again_and_stores_what_was_pending(tmp_path: Path) -> None:
    # A long interval: the records wait in the spool while the flusher is killed.
    srv = Srv(tmp_path, flush_interval_s=0.5)
    try:
        first = srv.spool()["flusher_pid"]
        os.kill(first, signal.SIGKILL)
        assert (
            srv.http.post("/v1/logs", json=[record(f"b{i}") for i in range(10)]).status_code == 200
        )
        wait_until(lambda: srv.spool()["flusher_restarts"] == 1)
        second = srv.spool()["flusher_pid"]
        assert second != first and alive(second) and not alive(first)
        assert "exited" in srv.spool()["last_error"]
        wait_for_spool(srv.thread.url)
        assert stored_ids(srv.data) == sorted(f"b{i}" for i in range(10))
    finally:
        srv.close()
    assert not alive(second)


def test_segments_a_previous_server_left_are_stored_at_start(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    spool = Spool(data / "spool")
    spool.start()
    spool.append(
        SpoolBatch("requests", "api", [(f"left {i}", record(f"c{i}")) for i in range(5)])
    ).result(10)
    spool.close()  # as a server killed before its flusher ran
    srv = Srv(tmp_path, flush_interval_s=30)
    try:
        wait_for_spool(srv.thread.url)
        assert stored_ids(data) == sorted(f"c{i}" for i in range(5))
    finally:
        srv.close()


def test_the_flusher_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    port = free_port()
    env = {**os.environ, "MODELWARDEN_EMBEDDER": "hashing"}
    proc = subprocess.Popen(
        [CLI, "--data", str(data), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def health() -> dict[str, Any] | None:
            try:
                spool: dict[str, Any] = httpx.get(f"{url}/healthz", timeout=1).json()["spool"]
                return spool
            except httpx.HTTPError:
                return None

        wait_until(lambda: health() is not None, timeout=60)
        spool = health()
        assert spool is not None
        child = spool["flusher_pid"]
        assert alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Its stdin closes with the server: no flusher is left behind.
        wait_until(lambda: not alive(child), timeout=15)
    finally:
        proc.kill()
        proc.wait()
