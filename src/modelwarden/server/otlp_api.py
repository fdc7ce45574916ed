"""``POST /v1/traces``: an OTLP/HTTP trace receiver that keeps GenAI spans as request records.

The answer is OTLP's own (``ExportTraceServiceResponse``, with ``partialSuccess`` when spans were
rejected), in the encoding of the request, so any OpenTelemetry exporter can send here. Rejected
spans go to the rejected store with their reasons, like any record.
"""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelwarden.errors import MalformedBody
from modelwarden.governance.keys import ApiKey
from modelwarden.ingest import otlp
from modelwarden.ingest.validation import check_batch
from modelwarden.server.body import (
    JSON_TYPES,
    parse_json,
    read_body,
    require_media_type,
)
from modelwarden.server.deps import requires, runtime_of
from modelwarden.server.errors import (
    PayloadTooLarge,
    UnsupportedMediaType,
    error_responses,
)
from modelwarden.server.ingest_api import refuse_other_plants
from modelwarden.server.runtime import Runtime
from modelwarden.store.spool import SpoolBatch

router = APIRouter(tags=["ingest"])

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


def _kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


# A chat span with the user's feedback on it, as an instrumented assistant exports it.
EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [_kv("modelwarden.plant_id", {"stringValue": "Plant_B"})]},
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "a1b2c3d4e5f60718",
                            "name": "chat sop-assistant-v1.2",
                            "kind": 3,
                            "startTimeUnixNano": "1793610000000000000",
                            "endTimeUnixNano": "1793610000412500000",
                            "attributes": [
                                _kv("gen_ai.operation.name", {"stringValue": "chat"}),
                                _kv("gen_ai.request.model", {"stringValue": "sop-assistant-v1.2"}),
                                _kv("gen_ai.usage.input_tokens", {"intValue": "12"}),
                                _kv("gen_ai.usage.output_tokens", {"intValue": "7"}),
                                _kv(
                                    "gen_ai.input.messages",
                                    {
                                        "stringValue": '[{"role": "user", "parts": [{"type": '
                                        '"text", "content": "Torque for M12 flange bolts?"}]}]'
                                    },
                                ),
                                _kv(
                                    "gen_ai.output.messages",
                                    {
                                        "stringValue": '[{"role": "assistant", "parts": [{"type": '
                                        '"text", "content": "85 Nm in a star pattern."}]}]'
                                    },
                                ),
                            ],
                            "events": [
                                {
                                    "name": "gen_ai.evaluation.result",
                                    "timeUnixNano": "1793610000300000000",
                                    "attributes": [
                                        _kv(
                                            "gen_ai.evaluation.name",
                                            {"stringValue": "human_feedback_score"},
                                        ),
                                        _kv("gen_ai.evaluation.score.value", {"doubleValue": 4}),
                                    ],
                                }
                            ],
                            "status": {},
                        }
                    ]
                }
            ],
        }
    ]
}
SOURCE = "http:/v1/traces"


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"content encoding {encoding!r} is not accepted; send gzip", field="content-encoding"
        )
    # Bounded, so that a small compressed body cannot expand past the size limit.
    d = zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedBody(f"the body is not valid {encoding}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(
            f"the decompressed body is larger than {limit} bytes", limit_bytes=limit
        )
    return out


@router.post(
    "/v1/traces",
    responses={
        **error_responses(400, 401, 403, 413, 415, 507),
        200: {
            "description": "OTLP ExportTraceServiceResponse",
            "content": {"application/json": {}, "application/x-protobuf": {}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"resourceSpans": {"type": "array"}},
                        "description": "OTLP/HTTP JSON ExportTraceServiceRequest",
                    },
                    "example": EXAMPLE,
                },
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    summary="OpenTelemetry GenAI spans as request records (OTLP/HTTP)",
)
async def post_traces(
    request: Request, key: ApiKey | None = Depends(requires("ingest"))
) -> Response:
    rt = runtime_of(request)
    t0 = time.perf_counter()
    media = require_media_type(request, JSON_TYPES + PROTOBUF_TYPES)
    raw = await read_body(request, rt.config.max_body_bytes)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    body = _inflate(raw, encoding, rt.config.max_body_bytes)
    if media in PROTOBUF_TYPES:
        spans = await run_in_threadpool(lambda: list(otlp.spans_from_protobuf(body)))
    else:
        spans = list(otlp.spans_from_json(parse_json(body)))
    outcome = await ingest_spans(rt, spans, SOURCE, key)
    rt.metrics.ingest_latency.observe(time.perf_counter() - t0)
    if media in PROTOBUF_TYPES:
        return Response(
            otlp.protobuf_response(outcome.rejected, outcome.message),
            media_type=PROTOBUF_TYPES[0],
        )
    out: dict[str, Any] = {}
    if outcome.rejected:
        out["partialSuccess"] = {"rejectedSpans": outcome.rejected, "errorMessage": outcome.message}
    return JSONResponse(out)


@dataclass
class SpanOutcome:
    rejected: int = 0
    message: str = ""
    unknown: int = 0


async def ingest_spans(
    rt: Runtime, spans: list[otlp.Span], source: str, key: ApiKey | None = None
) -> SpanOutcome:
    """Validate the spans' records and spool them; shared by OTLP/HTTP and OTLP/gRPC.

    Each LLM span is read with its own convention (GenAI, OpenInference or OpenLLMetry); a
    record it cannot fill is kept as rejected, naming the attribute and the convention. Spans
    that look like LLM telemetry of no known convention are counted (the metric and the
    answer's ``partialSuccess``), not stored.
    """
    plant_attribute = rt.settings.otlp_plant_attribute
    requests: list[dict[str, Any]] = []
    hints: list[dict[str, str]] = []
    feedback: list[dict[str, Any]] = []
    unknown: dict[str, int] = {}
    for span in spans:
        conv = otlp.convention(span)
        if conv is None:  # not an LLM call; it may carry the user's feedback on one
            feedback.extend(otlp.span_feedback(span))
            continue
        if conv not in otlp.CONVENTIONS:
            keys = sorted(k for k in span.attributes if k.startswith(otlp.LLM_PREFIXES))[:3]
            sample = ", ".join(keys)
            unknown[sample] = unknown.get(sample, 0) + 1
            continue
        if otlp.is_llm_call(span, conv):
            mapped = otlp.map_span(span, conv, plant_attribute)
            requests.append(mapped.record)
            hints.append(mapped.missing)
            rt.metrics.otlp_spans.labels(convention=conv).inc()
        else:
            feedback.extend(otlp.span_feedback(span))
    by_kind: dict[str, tuple[list[dict[str, Any]], list[dict[str, str]] | None]] = {
        "requests": (requests, hints),
        "feedback": (feedback, None),
    }
    embedders = rt.store.embedders()
    rejected = 0
    first: dict[str, Any] | None = None
    for kind, (records, kind_hints) in by_kind.items():
        if not records:
            continue
        batch_id = uuid.uuid4().hex
        results, accepted, items = await run_in_threadpool(
            check_batch,
            kind,
            records,
            embedders,
            batch_id,
            key.plant_id if key else None,
            kind_hints,
        )
        refuse_other_plants(rt, key, results, source)
        if items:
            await rt.spool_batch(SpoolBatch(kind, source, items, batch_id=batch_id))
        rejected += len(records) - accepted
        rt.metrics.ingest_records.inc(accepted)
        first = first or next((r for r in results if r["status"] == "invalid"), None)
    rt.metrics.ingest_invalid.inc(rejected)
    n_unknown = sum(unknown.values())
    if n_unknown:
        rt.metrics.otlp_spans.labels(convention="unknown").inc(n_unknown)
    parts = []
    if rejected and first is not None:
        parts.append(f"{rejected} span(s) rejected; first: {first['field']}: {first['reason']}")
    if n_unknown:
        samples = "; ".join(sorted(unknown))
        parts.append(
            f"{n_unknown} LLM span(s) of no known convention (GenAI, OpenInference, OpenLLMetry) "
            f"not stored; attributes such as {samples}"
        )
    return SpanOutcome(rejected + n_unknown, " | ".join(parts), n_unknown)
