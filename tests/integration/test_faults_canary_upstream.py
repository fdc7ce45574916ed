"""A canary whose model server resets connections or never answers, behind a real gateway.

Every client still gets the stable version's answer, and every failed canary attempt is a record
of its own (an error, with the time it took) that the SOP engine reads: an ``error_rate`` rule and
a ``latency_p95_ms`` rule fire and the controller's tick rolls the canary back.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance import registry
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import current_routes
from modelwarden.policy.spec import Policy, Rule
from modelwarden.rollout import controller
from modelwarden.rollout.plan import Gate, Hold, Plan, Step
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
QUESTION = "What PPE do I need to handle sulfuric acid?"
TIMEOUT_S = 0.4
USERS = 120


class BrokenUpstream:
    """A TCP server that reads a request, then resets the connection or never answers, in turn."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.resets = 0
        self.hangs = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            with self.lock:
                self.requests += 1
                reset = self.requests % 2 == 1
                if reset:
                    self.resets += 1
                else:
                    self.hangs += 1
            if reset:
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                while not self.stop.is_set() and conn.recv(65536):
                    pass  # never answer; wait for the gateway to give up and close
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, object]]:
    settings = Settings(data_dir=tmp_path / "warden-data", embedder="hashing", embed_threads=1)
    stable = ServerThread(fake_upstream.create_app(V11, latency_ms=2)).start()
    broken = BrokenUpstream()
    state = StateStore.at(settings.data_dir)
    key = create_key(state, "operator", name="ops")[0]
    registry.add(state, V11, stable.url, "cli:ops", status="stable")
    registry.add(state, V12, broken.url, "cli:ops")
    cfg = ServerConfig(
        flush_interval_s=0.1,
        run_controller=False,
        upstream_timeout_s=TIMEOUT_S,
        routes_ttl_s=0.1,
    )
    gateway = ServerThread(create_app(settings, cfg)).start()
    try:
        yield {
            "settings": settings,
            "state": state,
            "key": key,
            "gateway": gateway,
            "broken": broken,
        }
    finally:
        gateway.stop()
        stable.stop()
        broken.close()
        state.close()


PLAN = Plan(
    name="faults",
    steps=[Step(weight=50, hold=Hold(duration="1h", min_requests=20)), Step(weight=100)],
    gates=[Gate(metric="error_rate", comparator="increase_pp", margin=1.0, min_samples=20)],
)
POLICY = Policy(
    rules=[
        Rule(
            id="canary_errors",
            title="Failed requests rise by more than 5 points over an hour",
            metric="error_rate",
            window="1h",
            comparator="increase_pp",
            threshold=5.0,
            scope=["overall"],
            min_samples=20,
        ),
        Rule(
            id="canary_latency",
            title="P95 latency rises by more than 50 % over an hour",
            metric="latency_p95_ms",
            window="1h",
            comparator="increase_pct",
            threshold=50.0,
            scope=["overall"],
            min_samples=20,
        ),
    ]
)


def test_resets_and_timeouts_serve_the_stable_answer_and_roll_the_canary_back(
    world: dict[str, object],
) -> None:
    settings = world["settings"]
    state = world["state"]
    gateway = world["gateway"]
    broken = world["broken"]
    assert isinstance(settings, Settings) and isinstance(state, StateStore)
    assert isinstance(gateway, ServerThread) and isinstance(broken, BrokenUpstream)
    rollout = controller.start(settings, V12, PLAN, "cli:ops", state=state)
    routes = current_routes(state)
    assert routes is not None and routes.canary is not None and routes.canary.version == V12
    time.sleep(0.3)  # the gateway's route cache (routes_ttl_s) picks the table up

    client = openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=str(world["key"]), max_retries=0, timeout=10
    )

    def ask(n: int) -> tuple[str, str, str]:
        user = f"plant-b-op{n}"
        if n % 4 == 3:
            stream = client.chat.completions.create(
                model="any",
                messages=[{"role": "user", "content": QUESTION}],
                user=user,
                stream=True,
            )
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return user, chunks[0].model, text
        raw = client.chat.completions.with_raw_response.create(
            model="any", messages=[{"role": "user", "content": QUESTION}], user=user
        )
        done = raw.parse()
        assert raw.headers["x-modelwarden-route"] == "stable"
        return user, done.model, done.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(USERS)))
    # Every client got the stable version's answer, whatever the canary did.
    assert {model for _, model, _ in answers} == {V11}
    assert all("gloves" in text.lower() or text for _, _, text in answers)
    assert broken.resets >= 10 and broken.hangs >= 10
    assert broken.requests == broken.resets + broken.hangs

    wait_for_spool(gateway.url)
    con = LogStore(settings.log_dir).connect()
    rows = con.to_pyarrow(
        con.table("requests").select(
            "request_id", "model_version", "route", "error", "latency_ms", "parent_request_id"
        )
    ).to_pylist()
    failed = [r for r in rows if r["model_version"] == V12]
    served = [r for r in rows if r["parent_request_id"] is None]
    assert len(served) == USERS and {r["model_version"] for r in served} == {V11}
    assert {r["error"] is None for r in served} == {True}
    # One failed-attempt record per canary request, each an error, none lost.
    assert len(failed) == broken.requests
    assert all(r["route"] == "canary" and r["error"] for r in failed)
    assert all(r["request_id"].endswith(".canary-failed") for r in failed)
    timeouts = [r for r in failed if "timed out" in r["error"]]
    resets = [r for r in failed if "timed out" not in r["error"]]
    assert len(timeouts) == broken.hangs and len(resets) == broken.resets
    # A timed-out attempt took the gateway's whole upstream timeout.
    assert min(r["latency_ms"] for r in timeouts) >= TIMEOUT_S * 1000 * 0.95

    report = controller.tick(settings, state=state, policy=POLICY)
    assert report.action == "rollback", report.to_dict()
    assert report.status == "rolled_back" and report.rollout_id == rollout.id
    fired = {f["rule_id"]: f for f in report.fired}
    assert set(fired) == {"canary_errors", "canary_latency"}
    errors = fired["canary_errors"]
    assert errors["value"] == 1.0 and errors["baseline_value"] == 0.0
    assert errors["n"] == broken.requests
    after = current_routes(state)
    assert after is not None and after.canary is None and after.stable.version == V11
