"""Shadow testing through a real gateway: copies logged, paired with live answers, ranked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelwarden.errors import ConflictError
from modelwarden.gateway import fake_upstream
from modelwarden.governance import registry
from modelwarden.governance.routes import current_routes
from modelwarden.rollout import shadow
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import TOPICS
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
QUESTIONS = [item.questions[0] for topic in TOPICS[:3] for item in topic.items[:3]]


@pytest.fixture
def env(tmp_path: Path, state_url: str) -> Iterator[tuple[Settings, StateStore, str]]:
    live = ServerThread(fake_upstream.create_app(V11, latency_ms=0)).start()
    bad = ServerThread(fake_upstream.create_app(V12, latency_ms=20, quality="unsafe")).start()
    settings = Settings(
        data_dir=tmp_path / "data", embedder="hashing", embed_threads=1, state_url=state_url
    )
    state = StateStore.of(settings)
    registry.add(state, V11, live.url, "cli:ops", status="stable")
    registry.add(state, V12, bad.url, "cli:ops")
    with ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.1))) as gw:
        yield settings, state, gw.url
    state.close()
    live.stop()
    bad.stop()


def shadows_stored(settings: Settings) -> int:
    con = LogStore(settings.log_dir).connect()
    t = con.table("requests")
    return con.to_pyarrow(t.filter(t.route == "shadow")).num_rows


def test_shadow_answers_are_paired_ranked_and_kept_as_evidence(
    env: tuple[Settings, StateStore, str],
) -> None:
    settings, state, url = env
    table = shadow.start(settings, V12, 1.0, "cli:ops", state=state)
    assert table.shadow is not None and table.shadow.version == V12
    assert registry.get(state, V12).status == "shadow"
    with httpx.Client(base_url=url, timeout=10) as http:
        for i, q in enumerate(QUESTIONS):
            resp = http.post(
                "/v1/chat/completions",
                headers={"X-Plant-Id": "Plant_A"},
                json={"user": f"op{i}", "messages": [{"role": "user", "content": q}]},
            )
            assert resp.status_code == 200 and resp.json()["model"] == V11
    deadline = time.monotonic() + 15
    while shadows_stored(settings) < len(QUESTIONS):
        assert time.monotonic() < deadline, "shadow records did not arrive"
        wait_for_spool(url)
        time.sleep(0.1)

    rep = shadow.report(settings, top=3, state=state)
    s = rep.summary
    assert rep.version == V12 and s["pairs"] == len(QUESTIONS) and s["unpaired_shadows"] == 0
    assert s["live_flag_rate"] == 0 and s["shadow_flag_rate"] == 1.0
    assert s["new_safety_flags"] == len(QUESTIONS)
    assert s["distance_mean"] is not None and s["distance_mean"] > 0.05
    assert s["shadow_latency_p50_ms"] > s["live_latency_p50_ms"]
    assert len(rep.top) == 3
    assert rep.top[0].score >= rep.top[1].score >= rep.top[2].score >= 1.0
    first = rep.top[0]
    assert first.prompt in QUESTIONS and first.live_answer and first.shadow_answer
    assert first.new_safety and first.live_version == V11 and first.shadow_version == V12
    ev = registry.evidence(state, V12, "shadow_report")
    assert len(ev) == 1 and ev[0]["id"] == rep.evidence_id
    assert ev[0]["data"]["summary"]["pairs"] == len(QUESTIONS)

    shadow.stop(settings, "cli:ops", state=state)
    live = current_routes(state)
    assert live is not None and live.shadow is None
    assert registry.get(state, V12).status == "staging"


def test_a_quarantined_version_cannot_be_shadowed(env: tuple[Settings, StateStore, str]) -> None:
    settings, state, _url = env
    registry.transition(state, V12, "quarantined", "controller", "INC-1")
    with pytest.raises(ConflictError, match="quarantined"):
        shadow.start(settings, V12, 0.2, "cli:ops", state=state)
    live = current_routes(state)
    assert live is not None and live.shadow is None


def test_numbers_and_words() -> None:
    assert shadow.numbers("Torque to 85 Nm, then 12.5 % slower; every 200 hours") == {
        "85nm",
        "12.5%",
        "200",
    }
    assert shadow.jaccard_distance({"gloves", "goggles"}, {"gloves", "apron"}) == pytest.approx(
        2 / 3
    )
