"""The Responses API and embeddings through the gateway, with the official ``openai`` client.

Same routing (sticky canary, fallback), shadow copies, safety check, records and metrics as chat
completions, against real fake upstreams over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gatewayworld import V11, V12, V13, Gw, fake_upstreams, gateway

from modelwarden.gateway import fake_upstream
from modelwarden.governance.routes import Upstream
from modelwarden.simulate.corpus import match_question

QUESTION = "How often does the main conveyor need lubrication?"
QA = match_question(QUESTION)
assert QA is not None


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    with fake_upstreams(
        good=(V11, {"latency_ms": 0}),
        unsafe=(V12, {"latency_ms": 0, "quality": "unsafe"}),
        failing=(V12, {"latency_ms": 0, "error_rate": 1.0}),
        shadow=(V13, {"latency_ms": 0, "quality": "poor"}),
    ) as urls:
        yield urls


@pytest.fixture
def gw(tmp_path: Path, upstreams: dict[str, str]) -> Iterator[Gw]:
    with gateway(tmp_path / "warden-data", upstreams["good"]) as g:
        yield g


def test_responses_create_is_answered_and_logged(gw: Gw) -> None:
    raw = gw.client().responses.with_raw_response.create(
        model="anything",
        input=[{"role": "user", "content": QUESTION}],
        instructions="Answer from the SOP.",
        extra_headers={"X-Plant-Id": "Plant_B", "X-User-Id": "op-5"},
    )
    resp = raw.parse()
    assert resp.output_text == QA.answer
    assert resp.model == V11
    assert raw.headers["x-modelwarden-route"] == "stable"
    rec = gw.records()[raw.headers["x-request-id"]]
    assert (rec["model_version"], rec["plant_id"], rec["user_id"], rec["route"]) == (
        V11,
        "Plant_B",
        "op-5",
        "stable",
    )
    assert rec["user_prompt"] == QUESTION
    assert rec["generated_response"] == QA.answer
    assert rec["prompt_tokens"] == len(QUESTION.split())
    assert rec["completion_tokens"] == len(QA.answer.split())
    assert rec["contains_safety_keyword"] is False
    assert (
        'modelwarden_gateway_requests_total{model_version="sop-assistant-v1.1",'
        'plant="Plant_B",route="stable"} 1.0' in gw.metrics()
    )


def test_streamed_responses_are_relayed_and_logged(gw: Gw) -> None:
    with gw.client().responses.with_streaming_response.create(
        model="anything", input=QUESTION, stream=True, extra_headers={"X-Plant-Id": "Plant_A"}
    ) as raw:
        rid = raw.headers["x-request-id"]
        events = list(raw.parse())
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == QA.answer
    completed = [e for e in events if e.type == "response.completed"]
    assert completed and completed[0].response.usage.output_tokens == len(QA.answer.split())
    rec = gw.records()[rid]
    assert rec["generated_response"] == QA.answer
    assert rec["user_prompt"] == QUESTION
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (
        len(QUESTION.split()),
        len(QA.answer.split()),
    )


def test_responses_take_the_sticky_canary_with_safety_flags(
    gw: Gw, upstreams: dict[str, str]
) -> None:
    gw.routes(
        stable=Upstream(version=V11, url=upstreams["good"]),
        canary=Upstream(version=V12, url=upstreams["unsafe"]),
        canary_weight=50,
    )
    routes: dict[str, set[str]] = {}
    for user in ("op-1", "op-2", "op-3", "op-4", "op-5", "op-6", "op-7", "op-8"):
        for _ in range(2):  # the same user lands on the same route every time
            raw = gw.client().responses.with_raw_response.create(
                model="x", input=QUESTION, extra_headers={"X-User-Id": user}
            )
            routes.setdefault(user, set()).add(raw.headers["x-modelwarden-route"])
    assert all(len(r) == 1 for r in routes.values())
    canary_users = [u for u, r in routes.items() if r == {"canary"}]
    assert canary_users and len(canary_users) < len(routes)
    recs = gw.records(16)
    flagged = [r for r in recs.values() if r["route"] == "canary"]
    assert len(flagged) == 2 * len(canary_users)
    assert all(r["contains_safety_keyword"] and r["model_version"] == V12 for r in flagged)
    assert all(r["generated_response"] == QA.unsafe_answer for r in flagged)


def test_a_failing_canary_falls_back_to_stable_for_responses_and_embeddings(
    gw: Gw, upstreams: dict[str, str]
) -> None:
    gw.routes(
        stable=Upstream(version=V11, url=upstreams["good"]),
        canary=Upstream(version=V12, url=upstreams["failing"]),
        canary_weight=100,
    )
    user = {"X-User-Id": "op-9"}  # the canary serves users by their sticky bucket
    raw = gw.client().responses.with_raw_response.create(
        model="x", input=QUESTION, extra_headers=user
    )
    assert raw.headers["x-modelwarden-route"] == "stable"
    assert raw.parse().output_text == QA.answer
    emb = gw.client().embeddings.with_raw_response.create(
        model="x", input="conveyor", extra_headers=user
    )
    assert emb.headers["x-modelwarden-route"] == "stable"
    recs = gw.records(4)
    for rid in (raw.headers["x-request-id"], emb.headers["x-request-id"]):
        assert recs[rid]["route"] == "stable"
        assert recs[f"{rid}.canary-failed"]["error"] == "upstream answered HTTP 500"
    assert (
        'modelwarden_canary_fallbacks_total{model_version="sop-assistant-v1.2",'
        'plant="unknown",route="canary"} 2.0' in gw.metrics()
    )


def test_embeddings_pass_through_and_are_logged(gw: Gw) -> None:
    texts = ["lockout procedure", "spill kit location"]
    raw = gw.client().embeddings.with_raw_response.create(
        model="x", input=texts, extra_headers={"X-Plant-Id": "Plant_D"}
    )
    resp = raw.parse()
    assert len(resp.data) == 2
    expected = fake_upstream.fake_embedding(texts[1])
    assert resp.data[1].embedding == pytest.approx(expected, abs=1e-6)  # base64 decoded
    floats = gw.client().embeddings.create(model="x", input="x", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(fake_upstream.fake_embedding("x"))
    rec = gw.records(2)[raw.headers["x-request-id"]]
    assert (rec["model_version"], rec["plant_id"]) == (V11, "Plant_D")
    assert rec["user_prompt"] == "lockout procedure\nspill kit location"
    assert rec["generated_response"] == "[2 embedding(s) of 8 dimensions]"
    assert rec["prompt_tokens"] == 5


def test_shadow_copies_of_responses(gw: Gw, upstreams: dict[str, str]) -> None:
    gw.routes(
        stable=Upstream(version=V11, url=upstreams["good"]),
        shadow=Upstream(version=V13, url=upstreams["shadow"]),
        shadow_sample=1.0,
    )
    raw = gw.client().responses.with_raw_response.create(model="x", input=QUESTION)
    assert raw.parse().output_text == QA.answer  # the live answer, never the shadow's
    rid = raw.headers["x-request-id"]
    recs = gw.records(2)
    shadow = recs[f"{rid}.shadow"]
    assert (shadow["route"], shadow["model_version"]) == ("shadow", V13)
    assert shadow["generated_response"] == QA.poor_answer
    assert shadow["parent_request_id"] == rid


def test_bad_responses_and_embeddings_requests_are_400(gw: Gw) -> None:
    for path, body, field in (
        ("/v1/responses", {"model": "x"}, "input"),
        ("/v1/responses", {"model": "x", "input": []}, "input"),
        ("/v1/embeddings", {"model": "x", "input": ""}, "input"),
        ("/v1/embeddings", {"model": "x", "input": "a", "stream": True}, "stream"),
    ):
        resp = httpx.post(gw.url + path, json=body)
        assert resp.status_code == 400, (path, body, resp.text)
        assert resp.json()["error"]["field"] == field
