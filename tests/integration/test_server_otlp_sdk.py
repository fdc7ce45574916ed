"""Spans made by the OpenTelemetry SDK and sent by its OTLP exporter arrive as records.

The SDK's ``OTLPSpanExporter`` (opentelemetry-exporter-otlp-proto-http) sends OTLP/HTTP protobuf
to a real server on 127.0.0.1. That exporter has no JSON mode, so the JSON test encodes the same
SDK spans with the SDK's own OTLP encoder and sends them in the OTLP/JSON mapping (hex ids,
integer enums), as the OTLP specification defines it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

START_NS = 1_793_610_000_000_000_000  # 2026-11-02T09:00:00Z
MINUTE_NS = 60 * 1_000_000_000
EVALUATION = "gen_ai.evaluation.result"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "ingest")
    state.close()
    app = create_app(
        Settings(data_dir=data, embedder="hashing"), ServerConfig(flush_interval_s=0.1)
    )
    with ServerThread(app) as thread:
        yield thread.url, key, data


def _messages(role: str, text: str, **extra: Any) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}], **extra}])


def make_spans(prompt: str = "Torque for M12 flange bolts?") -> dict[str, Any]:
    """GenAI spans as an instrumented assistant makes them with the SDK, and their ids."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "line-copilot", "modelwarden.plant_id": "Plant_D"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai")

    def chat(name: str, start: int, **attrs: Any) -> trace.Span:
        span = tracer.start_span(name, kind=SpanKind.CLIENT, start_time=start)
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "sop-assistant-v1.2",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 7,
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                        {"role": "user", "parts": [{"type": "text", "content": prompt}]},
                    ]
                ),
                "user.id": "op-42",
                **attrs,
            }
        )
        return span

    ok = chat(
        "chat sop-assistant-v1.2",
        START_NS,
        **{
            "gen_ai.output.messages": _messages(
                "assistant", "85 Nm in a star pattern.", finish_reason="stop"
            )
        },
    )
    # Feedback given while the span is open: inline on the request record.
    ok.add_event(
        EVALUATION,
        {"gen_ai.evaluation.name": "human_feedback_score", "gen_ai.evaluation.score.value": 4.0},
        timestamp=START_NS + 300_000_000,
    )
    # An automated evaluation is not user feedback.
    ok.add_event(
        EVALUATION,
        {"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.2},
        timestamp=START_NS + 310_000_000,
    )
    ok.end(end_time=START_NS + 412_500_000)

    failed = chat("chat sop-assistant-v1.2", START_NS + MINUTE_NS)
    failed.set_status(Status(StatusCode.ERROR, "upstream timed out"))
    failed.end(end_time=START_NS + MINUTE_NS + 30_000_000_000)

    # An HTTP span beside them is not a GenAI operation.
    http_span = tracer.start_span("GET /healthz", start_time=START_NS, kind=SpanKind.SERVER)
    http_span.set_attribute("http.request.method", "GET")
    http_span.end(end_time=START_NS + 1_000_000)

    # Feedback given later, on a span of its own under the chat span.
    later = START_NS + 5 * MINUTE_NS
    fb_span = tracer.start_span(
        "user feedback", context=trace.set_span_in_context(ok), start_time=later
    )
    fb_span.set_attribute("user.id", "op-42")
    fb_span.add_event(
        EVALUATION,
        {
            "gen_ai.evaluation.name": "user_feedback",
            "gen_ai.evaluation.score.value": 2,
            "gen_ai.evaluation.explanation": "the torque is for M10",
        },
        timestamp=later + 1_000_000,
    )
    fb_span.end(end_time=later + 2_000_000)

    # A score outside 1-5 is kept in the rejected store with its reason.
    bad_fb = tracer.start_span(
        "user feedback", context=trace.set_span_in_context(failed), start_time=later
    )
    bad_fb.add_event(
        EVALUATION,
        {"gen_ai.evaluation.name": "user_feedback", "gen_ai.evaluation.score.value": 7},
        timestamp=later,
    )
    bad_fb.end(end_time=later + 1)

    provider.shutdown()

    def sid(span: trace.Span) -> str:
        ctx = span.get_span_context()
        return f"{ctx.trace_id:032x}-{ctx.span_id:016x}"

    return {
        "spans": memory.get_finished_spans(),
        "ok": sid(ok),
        "failed": sid(failed),
        "feedback": sid(fb_span),
    }


def _tables(url: str, data: Path) -> dict[str, list[dict[str, Any]]]:
    wait_for_spool(url)
    con = LogStore(data / "log").connect()
    return {
        kind: con.to_pyarrow(con.table(kind)).to_pylist()
        for kind in ("requests", "feedback", "rejected")
    }


def _check(made: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> None:
    reqs = {r["request_id"]: r for r in tables["requests"]}
    assert set(reqs) == {made["ok"], made["failed"]}
    ok = reqs[made["ok"]]
    assert ok["model_version"] == "sop-assistant-v1.2"
    assert ok["user_prompt"] == "Torque for M12 flange bolts?"
    assert ok["generated_response"] == "85 Nm in a star pattern."
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == (12, 7)
    assert ok["latency_ms"] == pytest.approx(412.5)
    assert ok["timestamp"].isoformat() == "2026-11-02T09:00:00+00:00"
    assert (ok["plant_id"], ok["user_id"]) == ("Plant_D", "op-42")
    assert ok["human_feedback_score"] == 4
    assert ok["source"] == "http:/v1/traces"
    failed = reqs[made["failed"]]
    assert failed["error"] == "upstream timed out"
    assert failed["generated_response"] is None
    assert failed["human_feedback_score"] is None
    assert failed["latency_ms"] == pytest.approx(30_000.0)

    assert [
        (f["request_id"], f["score"], f["comment"], f["user_id"], f["timestamp"].isoformat())
        for f in tables["feedback"]
    ] == [(made["ok"], 2, "the torque is for M10", "op-42", "2026-11-02T09:05:00.001000+00:00")]

    assert [(r["kind"], r["record_key"], r["field"], r["reason"]) for r in tables["rejected"]] == [
        ("feedback", made["failed"], "score", "input should be less than or equal to 5")
    ]


def test_the_sdk_exporter_sends_protobuf_that_arrives_as_records(
    srv: tuple[str, str, Path],
) -> None:
    url, key, data = srv
    made = make_spans()
    exporter = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    # The server answers 200 with a partial success: the exporter counts that as delivered.
    assert exporter.export(made["spans"]) == SpanExportResult.SUCCESS
    _check(made, _tables(url, data))

    # Exporters retry; the same spans again add nothing, gzip-compressed this time.
    again = OTLPSpanExporter(
        endpoint=f"{url}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    assert again.export(made["spans"]) == SpanExportResult.SUCCESS
    tables = _tables(url, data)
    assert len(tables["requests"]) == 2 and len(tables["feedback"]) == 1
    exporter.shutdown()
    again.shutdown()


def test_the_sdk_exporter_is_refused_without_a_key(srv: tuple[str, str, Path]) -> None:
    url, _, data = srv
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=10)
    assert exporter.export(make_spans()["spans"]) == SpanExportResult.FAILURE
    exporter.shutdown()
    assert all(rows == [] for rows in _tables(url, data).values())


def otlp_json(spans: list[ReadableSpan]) -> dict[str, Any]:
    """The SDK's encoding of ``spans`` in the OTLP/JSON mapping: hex ids, integer enums."""
    doc = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex()
    return doc


def test_sdk_spans_in_otlp_json_arrive_as_records(srv: tuple[str, str, Path]) -> None:
    url, key, data = srv
    made = make_spans()
    doc = otlp_json(made["spans"])
    resp = httpx.post(
        f"{url}/v1/traces", json=doc, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "partialSuccess": {
            "rejectedSpans": 1,
            "errorMessage": "1 span(s) rejected; first: score: input should be less than or "
            "equal to 5",
        }
    }
    _check(made, _tables(url, data))
