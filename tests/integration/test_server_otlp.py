"""OpenTelemetry GenAI spans sent to ``POST /v1/traces`` arrive as request records."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

START_NS = 1_793_610_000_000_000_000  # 2026-11-02T09:00:00Z
TRACE = "5b8efff798038103d269b633813fc60c"


def s(v: str) -> dict[str, Any]:
    return {"stringValue": v}


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def genai_span(span_id: str, **extra: Any) -> dict[str, Any]:
    messages_in = [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Torque for M12 flange bolts?"}]},
    ]
    messages_out = [
        {
            "role": "assistant",
            "finish_reason": "stop",
            "parts": [{"type": "text", "content": "85 Nm in a star pattern."}],
        }
    ]
    attrs = [
        kv("gen_ai.operation.name", s("chat")),
        kv("gen_ai.request.model", s("sop-assistant-v1.2")),
        kv("gen_ai.usage.input_tokens", {"intValue": "12"}),
        kv("gen_ai.usage.output_tokens", {"intValue": 7}),
        kv("gen_ai.input.messages", s(json.dumps(messages_in))),
        kv("gen_ai.output.messages", s(json.dumps(messages_out))),
        kv("user.id", s("op-42")),
    ]
    span = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "chat sop-assistant-v1.2",
        "kind": 3,
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 412_500_000),
        "attributes": attrs,
        "status": {},
    }
    span.update(extra)
    return span


def export(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        kv("service.name", s("line-copilot")),
                        kv("modelwarden.plant_id", s("Plant_D")),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai"},
                        "spans": list(spans),
                    }
                ],
            }
        ]
    }


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "ingest")
    state.close()
    app = create_app(
        Settings(data_dir=data, embedder="hashing"), ServerConfig(flush_interval_s=0.1)
    )
    with (
        ServerThread(app) as thread,
        httpx.Client(
            base_url=thread.url, timeout=10, headers={"Authorization": f"Bearer {key}"}
        ) as http,
    ):
        yield http, data


def records(http: httpx.Client, data: Path) -> dict[str, dict[str, Any]]:
    wait_for_spool(str(http.base_url))
    con = LogStore(data / "log").connect()
    return {r["request_id"]: r for r in con.to_pyarrow(con.table("requests")).to_pylist()}


def test_genai_spans_in_otlp_json_become_request_records(
    srv: tuple[httpx.Client, Path],
) -> None:
    http, data = srv
    http_span = {
        "traceId": TRACE,
        "spanId": "00f067aa0ba902b7",
        "name": "GET /healthz",
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 1),
        "attributes": [kv("http.request.method", s("GET"))],
    }
    failed = genai_span("b7ad6b7169203331", status={"code": 2, "message": "upstream timed out"})
    failed["attributes"] = [a for a in failed["attributes"] if a["key"] != "gen_ai.output.messages"]
    body = export(genai_span("a1b2c3d4e5f60718"), http_span, failed)
    resp = http.post("/v1/traces", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}

    recs = records(http, data)
    assert set(recs) == {f"{TRACE}-a1b2c3d4e5f60718", f"{TRACE}-b7ad6b7169203331"}
    ok = recs[f"{TRACE}-a1b2c3d4e5f60718"]
    assert ok["model_version"] == "sop-assistant-v1.2"
    assert ok["user_prompt"] == "Torque for M12 flange bolts?"
    assert ok["generated_response"] == "85 Nm in a star pattern."
    assert ok["prompt_tokens"] == 12 and ok["completion_tokens"] == 7
    assert ok["latency_ms"] == pytest.approx(412.5)
    assert ok["timestamp"].isoformat() == "2026-11-02T09:00:00+00:00"
    assert ok["plant_id"] == "Plant_D" and ok["user_id"] == "op-42"
    assert ok["source"] == "http:/v1/traces"
    bad = recs[f"{TRACE}-b7ad6b7169203331"]
    assert bad["error"] == "upstream timed out" and bad["generated_response"] is None

    # Exporting the same spans again (exporters retry) adds nothing.
    gz = gzip.compress(json.dumps(body).encode())
    again = http.post(
        "/v1/traces",
        content=gz,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert again.status_code == 200
    assert len(records(http, data)) == 2


def test_a_genai_span_that_cannot_be_a_record_is_rejected_with_its_reason(
    srv: tuple[httpx.Client, Path],
) -> None:
    http, data = srv
    no_prompt = genai_span("0102030405060708")
    no_prompt["attributes"] = [
        a for a in no_prompt["attributes"] if a["key"] != "gen_ai.input.messages"
    ]
    resp = http.post("/v1/traces", json=export(no_prompt, genai_span("1112131415161718")))
    assert resp.status_code == 200
    partial = resp.json()["partialSuccess"]
    assert partial["rejectedSpans"] == 1
    assert "user_prompt" in partial["errorMessage"]
    assert list(records(http, data)) == [f"{TRACE}-1112131415161718"]
    con = LogStore(data / "log").connect()
    rejected = con.to_pyarrow(con.table("rejected")).to_pylist()
    assert [(r["record_key"], r["field"]) for r in rejected] == [
        (f"{TRACE}-0102030405060708", "user_prompt")
    ]


def test_otlp_protobuf_is_read_too(srv: tuple[httpx.Client, Path]) -> None:
    http, data = srv
    pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    from google.protobuf import json_format

    req = pb.ExportTraceServiceRequest()
    doc = export(genai_span("2122232425262728"))
    # Protobuf's JSON mapping carries ids as base64; the OTLP/JSON form above uses hex.
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()
    span["spanId"] = base64.b64encode(bytes.fromhex(span["spanId"])).decode()
    json_format.ParseDict(doc, req)
    resp = http.post(
        "/v1/traces",
        content=req.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-protobuf"
    out = pb.ExportTraceServiceResponse()
    out.ParseFromString(resp.content)
    assert out.partial_success.rejected_spans == 0
    rec = records(http, data)[f"{TRACE}-2122232425262728"]
    assert rec["prompt_tokens"] == 12 and rec["plant_id"] == "Plant_D"
    garbage = http.post(
        "/v1/traces", content=b"\xff\x00garbage", headers={"content-type": "application/x-protobuf"}
    )
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "malformed_json"


def test_otlp_errors_are_in_the_error_shape(srv: tuple[httpx.Client, Path]) -> None:
    http, _ = srv
    assert http.post("/v1/traces", json={"resourceSpans": "x"}).status_code == 400
    r = http.post(
        "/v1/traces",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "br"},
    )
    assert r.status_code == 415 and r.json()["error"]["field"] == "content-encoding"
    r = http.post(
        "/v1/traces",
        content=b"not gzip",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 400
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")
    r = http.post(
        "/v1/traces",
        content=bomb,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 413


def evaluation(
    name: str, score: Any, t_ns: int = START_NS + 60_000_000_000, **attrs: Any
) -> dict[str, Any]:
    return {
        "name": "gen_ai.evaluation.result",
        "timeUnixNano": str(t_ns),
        "attributes": [
            kv("gen_ai.evaluation.name", s(name)),
            kv("gen_ai.evaluation.score.value", score),
            *(kv(k, s(v)) for k, v in attrs.items()),
        ],
    }


def feedback_span(span_id: str, parent: str | None, *events: dict[str, Any]) -> dict[str, Any]:
    span = {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "user feedback",
        "startTimeUnixNano": str(START_NS),
        "endTimeUnixNano": str(START_NS + 1),
        "attributes": [kv("user.id", s("op-7"))],
        "events": list(events),
    }
    if parent is not None:
        span["parentSpanId"] = parent
    return span


def test_feedback_evaluations_become_feedback_events(srv: tuple[httpx.Client, Path]) -> None:
    http, data = srv
    spans = [
        # On a span of its own: feedback for the parent span's request.
        feedback_span(
            "3132333435363738",
            "a1b2c3d4e5f60718",
            evaluation("User_Feedback", {"doubleValue": 5.0}),
        ),
        # Named by modelwarden.request_id instead of a parent.
        feedback_span(
            "4142434445464748",
            None,
            evaluation(
                "human_feedback_score", {"intValue": "1"}, **{"modelwarden.request_id": "req-77"}
            ),
        ),
        # No parent and no request id: nothing to attach it to.
        feedback_span("5152535455565758", None, evaluation("user_feedback", {"intValue": 3})),
        # Not a whole number.
        feedback_span(
            "6162636465666768",
            "a1b2c3d4e5f60718",
            evaluation("user_feedback", {"doubleValue": 4.5}),
        ),
        # Automated evaluations are not feedback, and a span with only those is ignored.
        feedback_span(
            "7172737475767778", "a1b2c3d4e5f60718", evaluation("relevance", {"doubleValue": 0.9})
        ),
    ]
    resp = http.post("/v1/traces", json=export(*spans))
    assert resp.status_code == 200
    assert resp.json()["partialSuccess"]["rejectedSpans"] == 2
    wait_for_spool(str(http.base_url))
    con = LogStore(data / "log").connect()
    feedback = con.to_pyarrow(con.table("feedback")).to_pylist()
    assert sorted((f["request_id"], f["score"], f["user_id"]) for f in feedback) == [
        (f"{TRACE}-a1b2c3d4e5f60718", 5, "op-7"),
        ("req-77", 1, "op-7"),
    ]
    assert {f["timestamp"].isoformat() for f in feedback} == {"2026-11-02T09:01:00+00:00"}
    rejected = con.to_pyarrow(con.table("rejected")).to_pylist()
    assert sorted((r["kind"], r["field"]) for r in rejected) == [
        ("feedback", "request_id"),
        ("feedback", "score"),
    ]
    assert con.to_pyarrow(con.table("requests")).num_rows == 0
