"""Spans from the real instrumentation packages become request records, over OTLP/HTTP and gRPC.

Each convention's package (OpenInference, OpenLLMetry, OpenTelemetry GenAI v2) instruments the
official ``openai`` client in a process of its own (``otlp_emitter.py``) while it calls the fake
upstream; its spans go to a real server with the SDK's OTLP exporter. The plant comes from the
resource attribute named in the settings (``deployment.plant``). With message content turned off
in the package, the spans are kept as rejected records naming the attribute and the convention.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance import audit
from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import match_question
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

EMITTER = Path(__file__).with_name("otlp_emitter.py")
VERSION = "sop-assistant-v1.3"
QUESTION = "How often does the main conveyor need lubrication?"
STREAMED = "What is the lockout procedure before maintenance?"
SHOW_CONTENT = {
    "openinference": {},
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "true"},
    "genai": {
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    },
}
HIDE_CONTENT = {
    "openinference": {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true"},
    "openllmetry": {"TRACELOOP_TRACE_CONTENT": "false"},
    "genai": {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"},
}
NAMES = {
    "openinference": "OpenInference",
    "openllmetry": "OpenLLMetry",
    "genai": "OpenTelemetry GenAI",
}


class Srv(NamedTuple):
    url: str
    grpc: str
    key: str
    data: Path


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with ServerThread(fake_upstream.create_app(VERSION, latency_ms=0)) as thread:
        yield thread.url


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Srv]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "ingest")
    state.close()
    app = create_app(
        Settings(data_dir=data, embedder="hashing", otlp_plant_attribute="deployment.plant"),
        ServerConfig(flush_interval_s=0.1, otlp_grpc_port=0),
    )
    with ServerThread(app) as thread:
        port = app.state.runtime.otlp_grpc_port
        assert port
        yield Srv(thread.url, f"127.0.0.1:{port}", key, data)


def emit(conv: str, upstream: str, srv: Srv, protocol: str, env: dict[str, str]) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OPENINFERENCE_", "TRACELOOP_"))
    }
    endpoint = srv.grpc if protocol == "grpc" else srv.url
    proc = subprocess.run(
        [sys.executable, str(EMITTER), conv, upstream, endpoint, srv.key, protocol],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["exported"], proc.stderr[-3000:]
    assert len(out["spans"]) == 2, out  # one span per call, nothing else
    return out


def table(srv: Srv, name: str) -> list[dict[str, Any]]:
    wait_for_spool(srv.url)
    con = LogStore(srv.data / "log").connect()
    try:
        return con.to_pyarrow(con.table(name)).to_pylist()
    except Exception:  # no rows of that kind yet
        return []


CASES = [(c, "http") for c in ("openinference", "openllmetry", "genai")] + [("genai", "grpc")]


@pytest.mark.parametrize(("conv", "protocol"), CASES)
def test_spans_of_each_convention_become_request_records(
    conv: str, protocol: str, upstream: str, srv: Srv
) -> None:
    out = emit(conv, upstream, srv, protocol, SHOW_CONTENT[conv])
    ids = [s["request_id"] for s in out["spans"]]
    rows = {r["request_id"]: r for r in table(srv, "requests")}
    assert sorted(rows) == sorted(ids), table(srv, "rejected")
    plain, streamed = (rows[i] for i in ids)
    for rec, prompt in ((plain, QUESTION), (streamed, STREAMED)):
        qa = match_question(prompt)
        assert qa is not None
        assert rec["user_prompt"] == prompt
        assert rec["generated_response"] == qa.answer
        assert rec["model_version"] == VERSION  # the served model, not the requested one
        assert rec["plant_id"] == "Plant_C"
        assert rec["prompt_tokens"] == len(prompt.split())
        assert rec["completion_tokens"] == len(qa.answer.split())
        assert rec["latency_ms"] > 0
        assert rec["error"] is None
    if conv == "openinference":
        assert (plain["session_id"], plain["user_id"]) == ("shift-7", "op-42")
    metrics = httpx.get(srv.url + "/metrics").text
    assert f'modelwarden_otlp_llm_spans_total{{convention="{conv}"}} 2.0' in metrics


@pytest.mark.parametrize("conv", ["openinference", "openllmetry", "genai"])
def test_spans_without_content_are_rejected_naming_attribute_and_convention(
    conv: str, upstream: str, srv: Srv
) -> None:
    out = emit(conv, upstream, srv, "grpc", HIDE_CONTENT[conv])
    ids = sorted(s["request_id"] for s in out["spans"])
    assert table(srv, "requests") == []
    rejected = table(srv, "rejected")
    assert sorted(r["record_key"] for r in rejected) == ids
    for r in rejected:
        assert r["field"] == "user_prompt"
        assert f"read as {NAMES[conv]}" in r["reason"]
        needs = {
            "openinference": "llm.input_messages",
            "openllmetry": "gen_ai.prompt.N.*",
            "genai": "gen_ai.input.messages",
        }[conv]
        assert needs in r["reason"]


def _request(attrs: dict[str, str]) -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name="ai.generateText",
        start_time_unix_nano=1_793_610_000_000_000_000,
        end_time_unix_nano=1_793_610_000_500_000_000,
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()],
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )


def test_spans_of_an_unknown_convention_are_counted_not_dropped(srv: Srv) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    # Attributes as the Vercel AI SDK names them: LLM telemetry, but none of the three.
    req = _request({"ai.model.id": "sop-v1", "ai.prompt": "hi", "ai.response.text": "hello"})
    with grpc.insecure_channel(srv.grpc) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        resp = stub.Export(req, metadata=[("authorization", f"Bearer {srv.key}")], timeout=20)
    assert resp.partial_success.rejected_spans == 1
    assert "no known convention" in resp.partial_success.error_message
    assert "ai.model.id" in resp.partial_success.error_message
    http = httpx.post(
        srv.url + "/v1/traces",
        content=req.SerializeToString(),
        headers={"Authorization": f"Bearer {srv.key}", "content-type": "application/x-protobuf"},
    )
    assert http.status_code == 200
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'modelwarden_otlp_llm_spans_total{convention="unknown"} 2.0' in metrics
    assert table(srv, "requests") == []


def test_grpc_needs_an_ingest_key_and_refusals_are_audited(srv: Srv) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    req = _request({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"})
    with grpc.insecure_channel(srv.grpc) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as no_key:
            stub.Export(req, timeout=20)
        with pytest.raises(grpc.RpcError) as bad_key:
            stub.Export(req, metadata=[("x-api-key", "mw_not_a_key")], timeout=20)
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert bad_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    state = StateStore.at(srv.data)
    entries = audit.entries(state, action="grpc.refused")
    state.close()
    assert len(entries) == 2
