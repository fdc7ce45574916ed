"""The gateway with the official ``openai`` client, against real fake upstreams over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gatewayworld import V11, V12, Gw, fake_upstreams, gateway

from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import match_question
from modelwarden.store.state import StateStore

QUESTION = "How often does the main conveyor need lubrication?"
QA = match_question(QUESTION)
assert QA is not None


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    with fake_upstreams(
        good=(V11, {"latency_ms": 0}),
        unsafe=(V12, {"latency_ms": 0, "quality": "unsafe"}),
        failing=(V12, {"latency_ms": 0, "error_rate": 1.0}),
        slow=(V12, {"latency_ms": 1500}),
    ) as urls:
        yield {**urls, "closed": f"http://127.0.0.1:{free_port()}"}


@pytest.fixture
def gw(tmp_path: Path, upstreams: dict[str, str]) -> Iterator[Gw]:
    with gateway(tmp_path / "warden-data", upstreams["good"]) as g:
        yield g


def ask(client: openai.OpenAI, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="whatever-the-client-says",
        messages=[
            {"role": "system", "content": "You are the plant assistant."},
            {"role": "user", "content": QUESTION},
        ],
        **kw,
    )


def test_plain_completion_through_the_openai_client_is_answered_and_logged(gw: Gw) -> None:
    raw = ask(gw.client(), user="op-17", extra_headers={"X-Plant-Id": "Plant_B"})
    completion = raw.parse()
    assert completion.choices[0].message.content == QA.answer
    assert completion.model == V11
    assert completion.usage.prompt_tokens == len(QUESTION.split())
    assert completion.usage.completion_tokens == len(QA.answer.split())
    request_id = raw.headers["x-request-id"]
    assert raw.headers["x-modelwarden-route"] == "stable"

    rec = gw.records()[request_id]
    assert rec["model_version"] == V11
    assert rec["route"] == "stable"
    assert rec["plant_id"] == "Plant_B"
    assert rec["user_id"] == "op-17"
    assert rec["user_prompt"] == QUESTION
    assert rec["generated_response"] == QA.answer
    assert rec["prompt_tokens"] == len(QUESTION.split())
    assert rec["completion_tokens"] == len(QA.answer.split())
    assert rec["contains_safety_keyword"] is False
    assert rec["latency_ms"] > 0
    assert rec["source"] == "gateway"


def test_streaming_through_the_openai_client_is_relayed_and_logged(gw: Gw) -> None:
    client = gw.client()
    chunks = list(
        client.chat.completions.create(
            model="x",
            stream=True,
            user="op-18",
            messages=[{"role": "user", "content": QUESTION}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == QA.answer
    # The gateway asked the upstream for usage; the client did not, so it gets none.
    assert all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)

    with_usage = list(
        client.chat.completions.create(
            model="x",
            stream=True,
            user="op-18",
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": QUESTION}],
        )
    )
    assert with_usage[-1].usage.completion_tokens == len(QA.answer.split())

    streamed = [r for r in gw.records().values() if r["user_id"] == "op-18"]
    assert len(streamed) == 2
    for rec in streamed:
        assert rec["generated_response"] == QA.answer
        assert rec["completion_tokens"] == len(QA.answer.split())
        assert rec["error"] is None


def test_an_unsafe_answer_is_returned_but_flagged_and_counted(
    gw: Gw, upstreams: dict[str, str]
) -> None:
    gw.routes(
        stable=Upstream(version=V11, url=upstreams["good"]),
        canary=Upstream(version=V12, url=upstreams["unsafe"]),
        canary_weight=100,
    )
    raw = ask(gw.client(), user="op-19", extra_headers={"X-Plant-Id": "Plant_C"})
    assert raw.parse().choices[0].message.content == QA.unsafe_answer
    assert raw.headers["x-modelwarden-route"] == "canary"
    rec = gw.records()[raw.headers["x-request-id"]]
    assert rec["contains_safety_keyword"] is True
    assert rec["route"] == "canary" and rec["model_version"] == V12
    assert (
        'modelwarden_safety_flags_total{model_version="sop-assistant-v1.2",'
        'plant="Plant_C",route="canary"} 1.0'
    ) in gw.metrics()


def test_a_failing_canary_falls_back_to_stable(gw: Gw, upstreams: dict[str, str]) -> None:
    for name in ("failing", "closed"):
        gw.routes(
            stable=Upstream(version=V11, url=upstreams["good"]),
            canary=Upstream(version=V12, url=upstreams[name]),
            canary_weight=100,
        )
        raw = ask(gw.client(), user=f"op-{name}", extra_headers={"X-Plant-Id": "Plant_A"})
        assert raw.parse().choices[0].message.content == QA.answer
        assert raw.headers["x-modelwarden-route"] == "stable"
        rid = raw.headers["x-request-id"]
        recs = gw.records()
        assert recs[rid]["route"] == "stable" and recs[rid]["error"] is None
        failed = recs[f"{rid}.canary-failed"]
        assert failed["route"] == "canary" and failed["model_version"] == V12
        assert failed["parent_request_id"] == rid
        assert failed["error"]
    metrics = gw.metrics()
    assert (
        'modelwarden_canary_fallbacks_total{model_version="sop-assistant-v1.2",'
        'plant="Plant_A",route="canary"} 2.0'
    ) in metrics
    assert (
        'modelwarden_upstream_errors_total{model_version="sop-assistant-v1.2",'
        'plant="Plant_A",route="canary"} 2.0'
    ) in metrics


def test_a_canary_that_times_out_falls_back_to_stable(
    tmp_path: Path, upstreams: dict[str, str]
) -> None:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=upstreams["good"]),
            canary=Upstream(version=V12, url=upstreams["slow"]),
            canary_weight=100,
        ),
    )
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    config = ServerConfig(flush_interval_s=0.1, upstream_timeout_s=0.5)
    with ServerThread(create_app(settings, config)) as srv:
        g = Gw(data, srv)
        raw = ask(g.client(), user="op-slow")
        assert raw.parse().choices[0].message.content == QA.answer
        assert raw.headers["x-modelwarden-route"] == "stable"
        rid = raw.headers["x-request-id"]
        recs = g.records()
        g.state.close()
    # Given up after the gateway's 0.5 s, not after the upstream's 1.5 s.
    assert recs[f"{rid}.canary-failed"]["error"] == "upstream timed out"
    assert recs[rid]["route"] == "stable"


def test_a_failing_stable_is_a_502_in_the_error_shape(gw: Gw, upstreams: dict[str, str]) -> None:
    gw.routes(stable=Upstream(version=V11, url=upstreams["closed"]))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw.client(), user="op-20")
    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["details"] == {"model_version": V11, "route": "stable"}
    rec = gw.records()[caught.value.response.headers["x-request-id"]]
    assert rec["user_id"] == "op-20" and rec["error"].startswith("upstream")
    assert rec["generated_response"] is None


def test_no_routes_is_a_503(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", embedder="hashing")
    with ServerThread(create_app(settings)) as srv:
        resp = httpx.post(
            f"{srv.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "no_route"


def test_bad_chat_requests_are_400_not_500(gw: Gw) -> None:
    for body in ({"messages": []}, {"messages": "hi"}, [1, 2], {"model": "x"}):
        resp = httpx.post(f"{gw.url}/v1/chat/completions", json=body)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]["code"] == "bad_input"
    resp = httpx.post(
        f"{gw.url}/v1/chat/completions",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400


def test_keys_alone_do_not_switch_gateway_auth_on(gw: Gw) -> None:
    ingest, _ = create_key(gw.state, "ingest", name="plant b line", plant="Plant_B")
    create_key(gw.state, "reviewer")
    gw.thread.server.config.app.state.runtime.keys.invalidate()
    # gateway_auth is off (the default): keyless clients keep being answered ...
    assert ask(gw.client(), user="after-keys").parse().choices[0].message.content == QA.answer
    # ... and a known key still speaks for its plant only.
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(gw.client(ingest), user="op-21", extra_headers={"X-Plant-Id": "Plant_D"})
    assert "bound to plant 'Plant_B'" in str(refused.value)
    raw = ask(gw.client(ingest), user="op-22")
    assert gw.records()[raw.headers["x-request-id"]]["plant_id"] == "Plant_B"


def test_gateway_auth_required_needs_a_key_with_a_gateway_role(
    tmp_path: Path, upstreams: dict[str, str]
) -> None:
    data = tmp_path / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1, gateway_auth="required")
    thread = ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.1))).start()
    g = Gw(data, thread)
    try:
        g.routes(stable=Upstream(version=V11, url=upstreams["good"]))
        with pytest.raises(openai.AuthenticationError):  # required even before any key exists
            ask(g.client())
        ingest, _ = create_key(g.state, "ingest", name="plant b line", plant="Plant_B")
        reviewer, _ = create_key(g.state, "reviewer")
        thread.server.config.app.state.runtime.keys.invalidate()
        with pytest.raises(openai.AuthenticationError):
            ask(g.client())
        with pytest.raises(openai.AuthenticationError):
            ask(g.client("mw_not-a-key"))
        with pytest.raises(openai.PermissionDeniedError):
            ask(g.client(reviewer))
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(g.client(ingest), user="op-21", extra_headers={"X-Plant-Id": "Plant_D"})
        assert "bound to plant 'Plant_B'" in str(refused.value)
        raw = ask(g.client(ingest), user="op-21", extra_headers={"X-Plant-Id": "Plant_B"})
        assert g.records()[raw.headers["x-request-id"]]["plant_id"] == "Plant_B"
        raw = ask(g.client(ingest), user="op-22")
        assert g.records()[raw.headers["x-request-id"]]["plant_id"] == "Plant_B"
    finally:
        thread.stop()
        g.state.close()
