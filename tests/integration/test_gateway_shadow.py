"""Shadow copies: sent in the background, never returned, never waited for, always logged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import match_question
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
QUESTION = "What PPE do I need to handle sulfuric acid?"
QA = match_question(QUESTION)
assert QA is not None
SHADOW_DELAY_MS = 1500


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    live = ServerThread(fake_upstream.create_app(V11, latency_ms=0)).start()
    slow_unsafe = ServerThread(
        fake_upstream.create_app(V12, latency_ms=SHADOW_DELAY_MS, quality="unsafe")
    ).start()
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=live.url),
            shadow=Upstream(version=V12, url=slow_unsafe.url),
            shadow_sample=1.0,
        ),
    )
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    with ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.1))) as srv:
        yield srv.url, data
    live.stop()
    slow_unsafe.stop()


def stored(url: str, data: Path) -> dict[str, dict[str, Any]]:
    wait_for_spool(url)
    con = LogStore(data / "log").connect()
    return {r["request_id"]: r for r in con.to_pyarrow(con.table("requests")).to_pylist()}


def wait_for_record(url: str, data: Path, request_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = stored(url, data)
        if request_id in recs:
            return recs
        time.sleep(0.1)
    raise AssertionError(f"{request_id} was never logged")


def test_the_shadow_answer_is_never_returned_nor_waited_for_and_is_logged(
    gw: tuple[str, Path],
) -> None:
    url, data = gw
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="x",
        user="op-7",
        messages=[{"role": "user", "content": QUESTION}],
        extra_headers={"X-Plant-Id": "Plant_C"},
    )
    elapsed = time.perf_counter() - t0
    answer = raw.parse().choices[0].message.content
    assert answer == QA.answer
    assert answer != QA.unsafe_answer
    assert raw.headers["x-modelwarden-route"] == "stable"
    assert elapsed < SHADOW_DELAY_MS / 1000 / 2, f"the live answer waited {elapsed:.2f} s"

    live_id = raw.headers["x-request-id"]
    recs = wait_for_record(url, data, f"{live_id}.shadow")
    live, shadow = recs[live_id], recs[f"{live_id}.shadow"]
    assert live["route"] == "stable" and live["parent_request_id"] is None
    assert live["generated_response"] == QA.answer
    assert shadow["route"] == "shadow"
    assert shadow["parent_request_id"] == live_id
    assert shadow["model_version"] == V12
    assert shadow["generated_response"] == QA.unsafe_answer
    assert shadow["contains_safety_keyword"] is True
    assert shadow["latency_ms"] >= SHADOW_DELAY_MS
    assert shadow["user_id"] == "op-7" and shadow["plant_id"] == "Plant_C"


def test_a_streamed_request_gets_a_shadow_copy_too(gw: tuple[str, Path]) -> None:
    url, data = gw
    t0 = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        timeout=10,
        json={
            "model": "x",
            "stream": True,
            "user": "op-8",
            "messages": [{"role": "user", "content": QUESTION}],
        },
    ) as resp:
        body = resp.read().decode()
        live_id = resp.headers["x-request-id"]
    assert time.perf_counter() - t0 < SHADOW_DELAY_MS / 1000 / 2
    assert body.rstrip().endswith("data: [DONE]")
    chunks = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert {c["model"] for c in chunks} == {V11}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == QA.answer
    recs = wait_for_record(url, data, f"{live_id}.shadow")
    assert recs[f"{live_id}.shadow"]["generated_response"] == QA.unsafe_answer
    assert recs[live_id]["generated_response"] == QA.answer


def test_shadow_copies_are_left_out_of_kpis(gw: tuple[str, Path]) -> None:
    url, data = gw
    with httpx.Client(base_url=url, timeout=10) as http:
        ids = [
            http.post(
                "/v1/chat/completions",
                json={
                    "model": "x",
                    "user": f"u{i}",
                    "messages": [{"role": "user", "content": QUESTION}],
                },
            ).headers["x-request-id"]
            for i in range(3)
        ]
        wait_for_record(url, data, f"{ids[-1]}.shadow")
        for rid in ids:
            wait_for_record(url, data, f"{rid}.shadow")
        kpis = http.get("/v1/kpis", params={"window": "all", "by": "model_version"}).json()
        with_shadow = http.get(
            "/v1/kpis", params={"window": "all", "by": "model_version", "include_shadow": "true"}
        ).json()
    assert {r["model_version"]: r["requests"] for r in kpis} == {V11: 3}
    assert {r["model_version"]: r["requests"] for r in with_shadow} == {V11: 3, V12: 3}
