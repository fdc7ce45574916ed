"""The rollback transaction against real stores, a real gateway, a real webhook and SMTP server."""

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
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller

from modelwarden.gateway import fake_upstream
from modelwarden.governance import audit, incidents, notify, registry
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes, route_history
from modelwarden.governance.routes import bucket as route_bucket
from modelwarden.ingest.core import Ingestor
from modelwarden.policy.spec import Notify, default_policy
from modelwarden.rollout.rollback import rollback
from modelwarden.safety.checker import SafetyChecker
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
T = datetime(2026, 11, 20, 12, tzinfo=UTC)
TRIGGER = {
    "rule_id": "safety_incident_rate",
    "title": "Critical safety incident rate ...",
    "scope": "Plant_B",
    "metric": "safety_rate",
    "comparator": "increase_pp",
    "threshold": 1.0,
    "value": 0.3,
    "baseline_value": 0.01,
    "baseline": "stable_same_window",
    "change": 29.0,
    "n": 40,
    "n_baseline": 400,
    "p_value": 1e-9,
    "evaluated_at": T,
    "message": "safety_rate 0.3 vs 0.01",
}


class Sink:
    """A tiny real HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status, self.delay = status, delay
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(n))
                time.sleep(sink.delay)
                sink.bodies.append(body)
                self.send_response(sink.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


def ingest(settings: Settings) -> dict[str, set[str]]:
    """Requests, feedback and escalations an hour apart over 48 hours before T."""
    ing = Ingestor(LogStore(settings.log_dir), SafetyChecker())
    reqs, fbs, escs = [], [], []
    inside: dict[str, set[str]] = {"requests": set(), "feedback": set(), "escalations": set()}
    for h in range(48):
        ts = T - timedelta(hours=h, minutes=30)
        rid = f"r{h:02d}"
        reqs.append(
            {
                "request_id": rid,
                "timestamp": ts.isoformat(),
                "plant_id": "Plant_B",
                "model_version": V12 if h % 3 == 0 else V11,
                "user_prompt": "q",
                "generated_response": "a",
                "latency_ms": 200.0,
                "user_id": f"u{h}",
            }
        )
        fbs.append(
            {
                "event_id": f"f{h:02d}",
                "request_id": rid,
                "score": 3,
                "timestamp": (ts + timedelta(minutes=10)).isoformat(),
            }
        )
        if h % 4 == 0:
            escs.append(
                {
                    "event_id": f"e{h:02d}",
                    "request_id": rid,
                    "reason": "wrong",
                    "category": "incorrect",
                    "confirmed": True,
                    "timestamp": (ts + timedelta(minutes=20)).isoformat(),
                }
            )
        if h < 24:
            inside["requests"].add(rid)
            inside["feedback"].add(f"f{h:02d}")
            if h % 4 == 0:
                inside["escalations"].add(f"e{h:02d}")
    for kind, rows in (("requests", reqs), ("feedback", fbs), ("escalations", escs)):
        rep = ing.ingest_raw(kind, [(str(i), r) for i, r in enumerate(rows)], "test")
        assert rep.rejected == 0, rep.first_rejections
    return inside


@pytest.fixture
def setup(tmp_path: Path, state_url: str) -> Iterator[tuple[Settings, StateStore]]:
    settings = Settings(
        data_dir=tmp_path / "data", embedder="hashing", embed_threads=1, state_url=state_url
    )
    state = StateStore.of(settings)
    registry.add(state, V11, "http://127.0.0.1:9101", "cli:ops", status="stable")
    registry.add(state, V12, "http://127.0.0.1:9102", "cli:ops")
    registry.promote(state, V12, "canary", "cli:ops")
    registry.set_live_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url="http://127.0.0.1:9101"),
            canary=Upstream(version=V12, url="http://127.0.0.1:9102"),
            canary_weight=5,
            canary_plants=["Plant_B"],
        ),
        "controller",
    )
    yield settings, state
    state.close()


def policy_for(**notify_cfg: Any) -> Any:
    return default_policy().model_copy(
        update={"notify": Notify(retry_backoff_s=0.05, **notify_cfg)}
    )


def test_rollback_is_idempotent_and_writes_the_rca_extract(
    setup: tuple[Settings, StateStore],
) -> None:
    settings, state = setup
    inside = ingest(settings)
    routes_before = len(route_history(state, 1000))
    stable = Upstream(version=V11, url="http://127.0.0.1:9101")
    first = rollback(settings, V12, stable, TRIGGER, policy=policy_for(), state=state)
    second = rollback(settings, V12, stable, TRIGGER, policy=policy_for(), state=state)
    assert first.created and not second.created and second.done_now == []
    assert first.done_now == ["routes", "quarantine", "rollout", "rca", "notify", "mitigated"]
    assert [i.id for i in incidents.list_incidents(state)] == [first.incident.id]
    assert len(route_history(state, 1000)) == routes_before + 1
    live = current_routes(state)
    assert live is not None and live.stable == stable and live.canary is None
    assert registry.get(state, V12).status == "quarantined"
    assert (
        len([e for e in audit.entries(state, subject=V12) if e.evidence.get("to") == "quarantined"])
        == 1
    )
    inc = second.incident
    assert inc.status == "mitigated" and inc.trigger["n"] == 40
    assert inc.trigger["evaluated_at"] == "2026-11-20T12:00:00.000000Z"

    rca = Path(inc.rca_dir or "")
    assert rca == settings.data_dir / "incidents" / inc.id
    key = {"requests": "request_id", "feedback": "event_id", "escalations": "event_id"}
    for name, ids in inside.items():
        table = pq.read_table(rca / f"{name}.parquet")
        assert set(table.column(key[name]).to_pylist()) == ids
        lines = (rca / f"{name}.jsonl").read_text().splitlines()
        assert {json.loads(x)[key[name]] for x in lines} == ids
    manifest = json.loads((rca / "manifest.json").read_text())
    assert manifest["files"]["requests"]["rows"] == 24
    assert inc.steps["rca"]["detail"]["rows"] == {"requests": 24, "feedback": 24, "escalations": 6}
    assert audit.verify(state).ok


def test_a_crash_midway_is_completed_by_the_next_run(setup: tuple[Settings, StateStore]) -> None:
    settings, state = setup
    ingest(settings)
    # The RCA directory cannot be made: the transaction fails after the route and quarantine.
    (settings.data_dir / "incidents").write_text("not a directory")
    stable = Upstream(version=V11, url="http://127.0.0.1:9101")
    with pytest.raises(OSError):
        rollback(settings, V12, stable, TRIGGER, policy=policy_for(), state=state)
    inc = incidents.list_incidents(state)[0]
    assert set(inc.steps) == {"routes", "quarantine", "rollout"} and inc.status == "open"
    n_routes = len(route_history(state, 1000))
    (settings.data_dir / "incidents").unlink()
    again = rollback(settings, V12, stable, TRIGGER, policy=policy_for(), state=state)
    assert again.incident.id == inc.id and again.done_now == ["rca", "notify", "mitigated"]
    assert len(route_history(state, 1000)) == n_routes
    assert again.incident.status == "mitigated"


def test_every_channel_is_notified_and_a_failing_one_blocks_nothing(
    setup: tuple[Settings, StateStore], smtp: tuple[Mailbox, int]
) -> None:
    settings, state = setup
    box, port = smtp
    slack = Sink()
    broken = Sink(status=500, delay=0.5)
    try:
        cfg = {
            "webhook_url": broken.url,
            "slack_webhook_url": slack.url,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "email_to": ["oncall@plant.example"],
            "retry_attempts": 3,
        }
        notifier = notify.Notifier(state, idle_s=0.05).start()
        t0 = time.perf_counter()
        res = rollback(
            settings,
            V12,
            Upstream(version=V11, url="http://127.0.0.1:9101"),
            TRIGGER,
            policy=policy_for(**cfg),
            state=state,
            notifier=notifier,
        )
        elapsed = time.perf_counter() - t0
        assert res.incident.status == "mitigated"
        assert elapsed < 1.5  # three half-second failures of the webhook are not waited for
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = {n["channel"]: n for n in notify.of_incident(state, res.incident.id)}
            if (
                rows["webhook"]["status"] == "failed"
                and rows["slack"]["status"] == "sent"
                and rows["email"]["status"] == "sent"
            ):
                break
            time.sleep(0.05)
        notifier.stop()
        assert rows["webhook"]["status"] == "failed" and rows["webhook"]["attempts"] == 3
        assert "HTTP 500" in rows["webhook"]["last_error"]
        assert len(broken.bodies) == 3  # retried, with the same message each time
        assert broken.bodies[0]["trigger"]["rule_id"] == "safety_incident_rate"
        assert broken.bodies[0]["trigger"]["n_baseline"] == 400
        assert slack.bodies[0]["channel"] == "#manufacturing-ai-status"
        text = slack.bodies[0]["text"]
        for needle in (
            "safety_incident_rate",
            "0.3",
            "0.01",
            "n: 40",
            "400",
            "threshold 1",
            V12,
            V11,
            res.incident.id,
        ):
            assert needle in text, needle
        assert len(box.messages) == 1
        mail = box.messages[0].decode()
        assert "Subject: [SOP-MLOPS-003] rollback of sop-assistant-v1.2" in mail
        assert "safety_incident_rate" in mail and "oncall@plant.example" in mail
        # The rollback itself stands: the failed channel undid nothing.
        assert registry.get(state, V12).status == "quarantined"
        live = current_routes(state)
        assert live is not None and live.canary is None
        events = [
            e["event"] for e in incidents.timeline(state, incidents.get(state, res.incident.id))
        ]
        assert events[0] == "detected" and "notify webhook failed" in events
        assert "notified slack" in events and "notified email" in events
    finally:
        for s in (slack, broken):
            s.close()


def test_the_gateway_serves_the_stable_version_within_a_second(
    setup: tuple[Settings, StateStore],
) -> None:
    settings, state = setup
    v11 = ServerThread(fake_upstream.create_app(V11, latency_ms=0)).start()
    v12 = ServerThread(fake_upstream.create_app(V12, latency_ms=0, quality="unsafe")).start()
    stable = Upstream(version=V11, url=v11.url)
    registry.set_live_routes(
        state,
        RouteSpec(stable=stable, canary=Upstream(version=V12, url=v12.url), canary_weight=50),
        "test",
    )
    user = next(f"op{i}" for i in range(1000) if route_bucket(f"op{i}", V12) < 50)
    body = {
        "model": "x",
        "user": user,
        "messages": [{"role": "user", "content": "What torque for the M12 flange bolts?"}],
    }
    try:
        with (
            ServerThread(create_app(settings, ServerConfig())) as gw,
            httpx.Client(base_url=gw.url, timeout=5) as http,
        ):
            assert http.post("/v1/chat/completions", json=body).json()["model"] == V12
            rollback(settings, V12, stable, TRIGGER, policy=policy_for(), state=state)
            t0 = time.perf_counter()
            while http.post("/v1/chat/completions", json=body).json()["model"] != V11:
                assert time.perf_counter() - t0 < 1.0
                time.sleep(0.01)
            for _ in range(20):
                assert http.post("/v1/chat/completions", json=body).json()["model"] == V11
    finally:
        v11.stop()
        v12.stop()
