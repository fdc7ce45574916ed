"""A governed installation for the API and console tests: logs, versions in every state, a
release flow waiting for approval, an incident from a real rollback, a review queue, and keys.

Built through the real library functions on a real data directory (no fakes of the stores).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from evalruns import stored_run

from modelwarden.governance import registry
from modelwarden.governance.keys import create_key
from modelwarden.ingest.core import Ingestor
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.rollout import controller
from modelwarden.rollout.plan import Gate, Hold, Plan, Step
from modelwarden.safety.checker import SafetyChecker
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12, V13, V14, V15 = (f"sop-assistant-v1.{i}" for i in range(1, 6))
SAFE, UNSAFE = "Wear nitrile gloves and goggles.", "No PPE is needed, just be quick."
ROLES = {
    "admin": "admin",
    "ops": "operator",
    "ann": "reviewer",
    "board": "approver",
    "board2": "approver",
    "ingest": "ingest",
}

H = Hold(duration="1h", min_requests=20)
PLAN = Plan(
    name="console",
    steps=[
        Step(weight=5, plants=["Plant_B"], hold=H),
        Step(weight=25, hold=H),
        Step(weight=100, hold=H),
    ],
    gates=[Gate(metric="safety_rate", comparator="increase_pp", margin=3.0, min_samples=20)],
)


class Traffic:
    """Planted request logs through the real ingest path."""

    def __init__(self, settings: Settings) -> None:
        self.ingestor = Ingestor(LogStore(settings.log_dir), SafetyChecker())
        self.n = 0

    def rows(
        self,
        version: str,
        start: datetime,
        end: datetime,
        n: int,
        *,
        plants: tuple[str, ...] = ("Plant_B",),
        unsafe: float = 0.0,
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        out = []
        for i in range(n):
            self.n += 1
            out.append(
                {
                    "request_id": f"planted-{version}-{seed}-{self.n}",
                    "timestamp": (start + (end - start) * (i + 0.5) / n).isoformat(),
                    "plant_id": plants[i % len(plants)],
                    "model_version": version,
                    "user_prompt": "What PPE for sulfuric acid?",
                    "generated_response": UNSAFE if i < n * unsafe else SAFE,
                    "latency_ms": float(rng.lognormal(np.log(300), 0.25)),
                    "human_feedback_score": int(rng.choice([3, 4, 5, 5])) if i % 3 else None,
                    "user_id": f"op{i}",
                }
            )
        return out

    def add(self, version: str, start: datetime, end: datetime, n: int, **kw: Any) -> None:
        rows = self.rows(version, start, end, n, **kw)
        rep = self.ingestor.ingest_raw("requests", [(str(i), r) for i, r in enumerate(rows)], "t")
        assert rep.accepted == n, rep.first_rejections


def build(data: Path, sim_requests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The installation; returns its settings, state store and the keys by name."""
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    state = StateStore.at(data)
    # The admin key comes first; once it exists, every other key above ingest needs it.
    keys = {"admin": create_key(state, "admin", name="admin")[0]}
    for name, role in ROLES.items():
        if name != "admin":
            keys[name] = create_key(state, role, name=name, by=keys["admin"])[0]
    traffic = Traffic(settings)
    if sim_requests:
        rep = traffic.ingestor.ingest_raw(
            "requests", [(str(i), r) for i, r in enumerate(sim_requests)], "sim"
        )
        assert rep.accepted == len(sim_requests)
    registry.add(state, V11, "http://127.0.0.1:9101", "cli:ops", status="stable")
    for v in (V12, V13, V14, V15):
        registry.add(state, v, f"http://127.0.0.1:91{v[-1]}0", "cli:ops")

    # An incident from a real rollback: V15's canary answered unsafely two days ago.
    now = datetime.now(UTC)
    t0 = now - timedelta(days=2)
    controller.start(settings, V15, PLAN, "cli:ops", now=t0, state=state)
    traffic.add(V11, t0, t0 + timedelta(minutes=40), 200, seed=1)
    traffic.add(V15, t0, t0 + timedelta(minutes=40), 200, unsafe=0.25, seed=2)
    rep = controller.tick(settings, t0 + timedelta(minutes=41), state=state)
    assert rep.action == "rollback", rep

    # Two quarantined versions whose fixes wait for approval: board asked for V13, ops for V14.
    for v in (V13, V14):
        registry.quarantine(state, v, "INC-drill: unsafe answers", "controller")
    stored_run(state, V11, name="baseline-v11")
    run13 = stored_run(state, V13, name="fixed-v13")
    run14 = stored_run(state, V14, name="fixed-v14")
    board = registry.identify(state, keys["board"])
    ops = registry.identify(state, keys["ops"])
    registry.request_release(state, V13, board, "prompt template fixed")
    registry.request_release(state, V14, ops, "guard words added")

    build_queue(
        settings,
        state,
        SampleSpec.build(source="logs", n=4, strategy="random", reviewers=1, queue="q", seed=0),
    )
    return {
        "settings": settings,
        "state": state,
        "keys": keys,
        "traffic": traffic,
        "incident": rep.incident_id,
        "runs": {V13: run13, V14: run14},
    }


def start_live_rollout(world: dict[str, Any], now: datetime | None = None) -> None:
    """A rollout of V12 under way (first step: 5 % of Plant_B), started at ``now``."""
    controller.start(world["settings"], V12, PLAN, "cli:ops", now=now, state=world["state"])


def copy_of(template: dict[str, Any], data: Path) -> dict[str, Any]:
    """A fresh copy of a built installation, for a test that changes it."""
    import shutil

    shutil.copytree(template["settings"].data_dir, data)
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    return {
        **template,
        "settings": settings,
        "state": StateStore.at(data),
        "traffic": Traffic(settings),
    }
