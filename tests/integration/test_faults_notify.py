"""A webhook that is down when a rollback happens: retried from the outbox, visible, then delivered.

A real server ticks the controller; planted traffic makes the SOP's safety rule roll the canary
back; the policy's webhook is a port nobody listens on. The failed attempts show in
``GET /v1/notifications``, ``/metrics``, ``modelwarden notify status`` and ``incidents show``
while the outbox keeps retrying; once a receiver listens on that port the next retry delivers the
incident exactly once and every view says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance import registry
from modelwarden.ingest.core import Ingestor
from modelwarden.policy.spec import Notify, default_policy, policy_path
from modelwarden.rollout import controller
from modelwarden.rollout.plan import Hold, Plan, Step
from modelwarden.safety.checker import SafetyChecker
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
SAFE, UNSAFE = "Wear nitrile gloves and goggles.", "No PPE is needed, just be quick."


class Receiver:
    """A webhook receiver on a given port, started late: until then the port refuses."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                received.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def plant_traffic(settings: Settings, now: datetime) -> None:
    """An hour of Plant_B traffic: v1.1 always safe, v1.2 unsafe half of the time."""
    rows = []
    for version in (V11, V12):
        for i in range(60):
            rows.append(
                {
                    "request_id": f"{version}-{i}",
                    "timestamp": (now - timedelta(minutes=60 - i * 0.9)).isoformat(),
                    "plant_id": "Plant_B",
                    "model_version": version,
                    "user_prompt": "What PPE for sulfuric acid?",
                    "generated_response": UNSAFE if version == V12 and i % 2 else SAFE,
                    "latency_ms": 300.0,
                    "user_id": f"op{i}",
                }
            )
    report = Ingestor(LogStore(settings.log_dir), SafetyChecker()).ingest_raw(
        "requests", [(str(i), r) for i, r in enumerate(rows)], "test"
    )
    assert report.accepted == len(rows), report.first_rejections


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path / "warden-data", embedder="hashing", embed_threads=1)
    receiver = Receiver(free_port())
    policy = default_policy()
    policy.notify = Notify(
        webhook_url=f"http://127.0.0.1:{receiver.port}/hooks/T000/SECRET",
        retry_attempts=30,
        retry_backoff_s=0.3,
        timeout_s=1.0,
    )
    state = StateStore.at(settings.data_dir)
    policy_path(settings.data_dir).write_text(policy.to_yaml())
    registry.add(state, V11, "http://127.0.0.1:9", "cli:ops", status="stable")
    registry.add(state, V12, "http://127.0.0.1:9", "cli:ops")
    now = datetime.now(UTC)
    plan = Plan(steps=[Step(weight=50, hold=Hold(duration="48h")), Step(weight=100)])
    controller.start(settings, V12, plan, "cli:ops", now=now - timedelta(minutes=61), state=state)
    state.close()
    plant_traffic(settings, now)
    cfg = ServerConfig(flush_interval_s=0.2, tick_interval_s=0.3, run_controller=True)
    server = ServerThread(create_app(settings, cfg)).start()
    try:
        yield {"settings": settings, "server": server, "receiver": receiver}
    finally:
        server.stop()
        receiver.stop()


def poll(http: httpx.Client, until: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get("/v1/notifications").json()
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_a_webhook_that_is_down_is_retried_visibly_and_delivered_once_it_is_back(
    world: dict[str, Any], run_cli: Any
) -> None:
    server, receiver = world["server"], world["receiver"]
    data = world["settings"].data_dir
    http = httpx.Client(base_url=server.url, timeout=10)

    # The server's own controller rolls back and queues the webhook, which refuses connections.
    down = poll(http, lambda b: b["counts"]["failed_attempts"] >= 3)
    assert down["healthy"] is False
    assert down["counts"]["retrying"] == 1 and down["counts"]["sent"] == 0
    (row,) = down["notifications"]
    assert row["channel"] == "webhook" and row["status"] == "pending"
    assert row["attempts"] >= 3 and "ConnectError" in row["last_error"]
    # The webhook's path (where secrets live) is not shown.
    assert row["target"] == f"http://127.0.0.1:{receiver.port}/…"
    assert "SECRET" not in json.dumps(down)
    incident = row["event"]

    metrics = http.get("/metrics").text
    assert "modelwarden_notifications_retrying 1.0" in metrics
    failed_attempts = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("modelwarden_notification_attempt_failures_total ")
    )
    assert failed_attempts >= 3
    assert "modelwarden_notification_failures_total 0.0" in metrics

    status = run_cli("notify", "status", data=data)
    assert status.code == 1, status.err
    assert "1 being retried" in status.out and "ConnectError" in status.out
    assert "SECRET" not in status.out
    shown = run_cli("incidents", "show", incident, data=data)
    assert shown.code == 0, shown.err
    assert "Notifications" in shown.out and "ConnectError" in shown.out
    detail = http.get(f"/v1/incidents/{incident}").json()
    assert detail["notifications"][0]["attempts"] >= 3
    assert "SECRET" not in json.dumps(detail)

    # The receiver comes back: the next retry delivers, once.
    receiver.start()
    sent = poll(http, lambda b: b["counts"]["sent"] == 1)
    assert sent["healthy"] is True, sent
    assert sent["counts"] == {
        "pending": 0,
        "sent": 1,
        "failed": 0,
        "retrying": 0,
        "failed_attempts": sent["notifications"][0]["attempts"] - 1,
    }
    assert sent["notifications"][0]["last_error"] is None
    time.sleep(0.5)
    assert len(receiver.received) == 1
    hook = receiver.received[0]
    assert hook["event"] == "modelwarden.rollback" and hook["incident_id"] == incident
    assert hook["version"] == V12 and hook["stable_version"] == V11
    assert "safety_incident_rate" in hook["text"]
    status = run_cli("notify", "status", "--format", "json", data=data)
    assert status.code == 0, status.err
    assert json.loads(status.out)["counts"]["sent"] == 1
    assert "modelwarden_notifications_retrying 0.0" in http.get("/metrics").text
    http.close()
