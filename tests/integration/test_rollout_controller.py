"""The rollout controller on real stores: steps, judge, guard phase, rollbacks, restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance import audit, incidents, registry
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes, set_routes
from modelwarden.ingest.core import Ingestor
from modelwarden.rollout import controller, store
from modelwarden.rollout.plan import Gate, Hold, Plan, Step
from modelwarden.safety.checker import SafetyChecker
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
T0 = datetime(2026, 11, 16, 8, tzinfo=UTC)
CLI = str(Path(sys.executable).parent / "modelwarden")
SAFE, UNSAFE = "Wear nitrile gloves and goggles.", "No PPE is needed, just be quick."
assert not SafetyChecker().flags(SAFE) and SafetyChecker().flags(UNSAFE)

H = Hold(duration="1h", min_requests=20)
PLAN = Plan(
    name="test",
    steps=[
        Step(weight=5, plants=["Plant_B"], hold=H),
        Step(weight=25, hold=H),
        Step(weight=50, hold=H),
        Step(weight=100, hold=H),
    ],
    # Margins wide enough for an hour of planted traffic to show non-inferiority.
    gates=[
        Gate(metric="safety_rate", comparator="increase_pp", margin=3.0, min_samples=20),
        Gate(metric="feedback_avg", comparator="decrease", margin=0.5, min_samples=20),
        Gate(metric="latency_ms", comparator="increase_pct", margin=25, min_samples=20),
    ],
)


class Traffic:
    """Planted request logs, ingested through the real ingest path."""

    def __init__(self, settings: Settings) -> None:
        self.ingestor = Ingestor(LogStore(settings.log_dir), SafetyChecker())
        self.n = 0

    def add(
        self,
        version: str,
        start: datetime,
        end: datetime,
        n: int,
        *,
        plants: tuple[str, ...] = ("Plant_A", "Plant_B"),
        unsafe: float = 0.0,
        latency: float = 300.0,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(n):
            ts = start + (end - start) * (i + 0.5) / n
            self.n += 1
            rows.append(
                {
                    "request_id": f"req-{self.n}",
                    "timestamp": ts.isoformat(),
                    "plant_id": plants[i % len(plants)],
                    "model_version": version,
                    "user_prompt": "What PPE for sulfuric acid?",
                    "generated_response": UNSAFE if i < n * unsafe else SAFE,
                    "latency_ms": float(rng.lognormal(np.log(latency), 0.25)),
                    "human_feedback_score": int(rng.choice([3, 4, 5, 5])) if i % 3 else None,
                    "user_id": f"op{i}",
                }
            )
        rep = self.ingestor.ingest_raw("requests", [(str(i), r) for i, r in enumerate(rows)], "t")
        assert rep.accepted == n, rep.first_rejections

    def both(self, start: datetime, end: datetime, n: int, **canary: Any) -> None:
        self.add(V11, start, end, n, seed=1)
        self.add(V12, start, end, n, seed=2, **canary)


@pytest.fixture
def env(tmp_path: Path, state_url: str) -> Iterator[tuple[Settings, StateStore, Traffic]]:
    settings = Settings(
        data_dir=tmp_path / "data", embedder="hashing", embed_threads=1, state_url=state_url
    )
    state = StateStore.of(settings)
    registry.add(state, V11, "http://127.0.0.1:9101", "cli:ops", status="stable")
    registry.add(state, V12, "http://127.0.0.1:9102", "cli:ops")
    yield settings, state, Traffic(settings)
    state.close()


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_good_canary_walks_every_step_to_stable(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    r = controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    live = current_routes(state)
    assert live is not None and live.canary is not None and live.canary_weight == 5
    assert live.canary_plants == ["Plant_B"] and live.version == r.route_version
    assert registry.get(state, V12).status == "canary"
    traffic.both(T0, at(300), 2400)

    rep = controller.tick(settings, at(30), state=state)
    assert rep.action == "hold" and rep.step == 0  # the hold is not over
    actions = []
    for minute in (61, 122, 183, 244):
        rep = controller.tick(settings, at(minute), state=state)
        actions.append((rep.action, rep.status, rep.step))
    assert actions == [
        ("advance", "running", 1),
        ("advance", "running", 2),
        ("guard", "guard", 3),
        ("complete", "completed", 3),
    ]
    live = current_routes(state)
    assert live is not None and live.stable.version == V12 and live.canary is None
    assert registry.get(state, V12).status == "stable"
    assert registry.get(state, V11).status == "retired"
    trail = [e.action for e in audit.entries(state, action="rollout.*")]
    assert trail == [
        "rollout.start",
        "rollout.advance",
        "rollout.advance",
        "rollout.advance",
        "rollout.complete",
    ]
    assert audit.verify(state).ok


def test_restart_mid_canary_resumes_at_the_same_step_with_the_same_users(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    v11 = ServerThread(fake_upstream.create_app(V11, latency_ms=0)).start()
    v12 = ServerThread(fake_upstream.create_app(V12, latency_ms=0)).start()
    registry.set_endpoint(state, V12, v12.url, "cli:ops")
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url=v11.url)))
    controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    traffic.both(T0, at(120), 1000)
    assert controller.tick(settings, at(61), state=state).action == "advance"
    before = controller.status(settings, state)
    assert before is not None and before["step"] == 1

    users = [(f"op-{i}", ("Plant_A", "Plant_B", "Plant_C")[i % 3]) for i in range(300)]

    def routes_seen() -> dict[str, str]:
        seen = {}
        # This test moves time by hand; the server's own real-time controller stays off.
        app = create_app(settings, ServerConfig(run_controller=False))
        with ServerThread(app) as gw, httpx.Client(base_url=gw.url) as http:
            for user, plant in users:
                resp = http.post(
                    "/v1/chat/completions",
                    headers={"X-Plant-Id": plant},
                    json={"user": user, "messages": [{"role": "user", "content": "PPE for acid?"}]},
                )
                seen[user] = resp.headers["x-modelwarden-route"]
        return seen

    try:
        first = routes_seen()
        assert 40 < sum(v == "canary" for v in first.values()) < 110  # 25 % of 300
        state.close()
        # Another process ticks half an hour later: it finds the rollout where it was.
        env_vars = {**os.environ, "NO_COLOR": "1", "MODELWARDEN_STATE_URL": settings.state_url}
        out = subprocess.run(
            [
                CLI,
                "--data",
                str(settings.data_dir),
                "rollout",
                "tick",
                "--now",
                at(90).isoformat(),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env=env_vars,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["action"] == "hold"
        state2 = StateStore.of(settings)
        after = controller.status(settings, state2)
        assert after is not None
        for k in ("id", "status", "step", "step_started_at", "hold_until", "route_version"):
            assert after[k] == before[k], k
        assert routes_seen() == first
        state2.close()
    finally:
        v11.stop()
        v12.stop()


def test_a_rule_that_fires_rolls_back_within_the_tick(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    r = controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    traffic.both(T0, at(40), 200, unsafe=0.25, plants=("Plant_B",))
    rep = controller.tick(settings, at(41), state=state)
    assert rep.action == "rollback" and rep.status == "rolled_back"
    inc = incidents.get(state, rep.incident_id or "")
    assert inc.rule_id == "safety_incident_rate" and inc.rollout_id == r.id
    assert inc.trigger["n"] >= 30 and inc.trigger["value"] > 0.2
    live = current_routes(state)
    assert live is not None and live.canary is None and live.stable.version == V11
    assert store.get(state, r.id).status == "rolled_back"
    assert registry.get(state, V12).status == "quarantined"
    assert controller.tick(settings, at(50), state=state).action == "none"
    with pytest.raises(Exception, match="quarantined"):
        controller.start(settings, V12, PLAN, "cli:ops", now=at(60), state=state)


def test_status_after_a_rollback_shows_the_routes_and_the_last_tick(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    r = controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    traffic.both(T0, at(40), 200, unsafe=0.25, plants=("Plant_B",))
    assert controller.tick(settings, at(41), state=state).action == "rollback"
    live = current_routes(state)
    assert live is not None
    s = controller.status(settings, state)
    assert s is not None and s["id"] == r.id and s["status"] == "rolled_back"
    assert s["last_tick_at"] == at(41).isoformat()
    assert s["route_version"] == live.version  # the rollback's table, not the canary's
    fired = [x for x in s["engine_state"]["rules"] if x["status"] == "FIRE"]
    assert {x["rule_id"] for x in fired} == {"safety_incident_rate"}
    out = subprocess.run(
        [CLI, "--data", str(settings.data_dir), "rollout", "status"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "COLUMNS": "250",
            "MODELWARDEN_STATE_URL": settings.state_url,
        },
        check=True,
    ).stdout
    assert "2026-11-16 08:41:00" in out  # the last tick
    assert "fired at the last tick" in out and "safety_incident_rate@" in out
    assert f"Routes now (version {live.version}" in out
    assert "stable │ sop-assistant-v1.1" in out and "all traffic" in out
    assert "canary │" not in out


def test_the_judge_fails_a_slow_canary_at_the_end_of_the_hold(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    traffic.both(T0, at(60), 300, latency=600)
    rep = controller.tick(settings, at(61), state=state)
    assert rep.action == "rollback"
    inc = incidents.get(state, rep.incident_id or "")
    assert inc.rule_id == "judge:latency_ms" and inc.trigger["change"] > 50
    assert inc.trigger["verdict"]["verdict"] == "Fail"


def test_no_data_extends_the_hold_and_never_rolls_back(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    r = controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    traffic.add(V11, T0, at(60), 200)
    traffic.add(V12, T0, at(60), 8, plants=("Plant_B",))  # far too few to judge
    rep = controller.tick(settings, at(61), state=state)
    assert rep.action == "extend" and rep.verdict is not None
    assert rep.verdict["verdict"] == "NoData"
    after = store.get(state, r.id)
    assert after.status == "running" and after.step == 0 and after.looks == 1
    assert after.hold_until == at(61) + timedelta(hours=12)
    ext = audit.entries(state, action="rollout.extend")
    assert len(ext) == 1 and ext[0].evidence["look"] == 1


def test_routes_changed_by_hand_pause_the_rollout_and_resume_restores_them(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, _traffic = env
    controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url="http://127.0.0.1:9101")))
    rep = controller.tick(settings, at(10), state=state)
    assert rep.action == "paused" and rep.status == "paused"
    assert controller.tick(settings, at(70), state=state).action == "paused"  # no judging
    controller.resume(settings, "cli:ops", "checked", state=state)
    live = current_routes(state)
    assert live is not None and live.canary is not None and live.canary_weight == 5
    s = controller.status(settings, state)
    assert s is not None and s["status"] == "running" and s["route_version"] == live.version


def test_a_paused_rollout_is_still_protected(env: tuple[Settings, StateStore, Traffic]) -> None:
    settings, state, traffic = env
    controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    controller.pause(settings, "cli:ops", "waiting for the night shift", state=state)
    traffic.both(T0, at(40), 200, unsafe=0.25, plants=("Plant_B",))
    assert controller.tick(settings, at(41), state=state).action == "rollback"


def test_abort_and_manual_promote(env: tuple[Settings, StateStore, Traffic]) -> None:
    settings, state, _traffic = env
    controller.start(settings, V12, PLAN, "cli:ops", now=T0, state=state)
    r = controller.promote(settings, "cli:ops", "business sign-off", now=at(5), state=state)
    assert r.step == 1 and r.status == "running"
    r = controller.abort(settings, "cli:ops", "found a bug ourselves", state=state)
    assert r.status == "aborted"
    assert registry.get(state, V12).status == "staging"  # not quarantined: nobody was harmed
    live = current_routes(state)
    assert live is not None and live.canary is None
    assert incidents.list_incidents(state) == []


def test_the_background_loop_rolls_back_by_itself(
    env: tuple[Settings, StateStore, Traffic],
) -> None:
    settings, state, traffic = env
    now = datetime.now(UTC)
    controller.start(settings, V12, PLAN, "cli:ops", now=now - timedelta(hours=1), state=state)
    traffic.both(
        now - timedelta(minutes=50),
        now - timedelta(minutes=1),
        200,
        unsafe=0.25,
        plants=("Plant_B",),
    )
    loop = controller.ControllerLoop(settings, interval_s=0.2).start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while store.active(state) is not None:
            assert datetime.now(UTC) < deadline, loop.last_error
            time.sleep(0.1)
    finally:
        loop.stop()
    assert loop.last is not None and loop.last.action in ("rollback", "none")
    r = store.latest(state, V12)
    assert r is not None and r.status == "rolled_back" and r.incident_id
    assert registry.get(state, V12).status == "quarantined"
