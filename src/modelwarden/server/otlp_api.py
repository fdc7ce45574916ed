"""``POST /v1/traces``: an OTLP/HTTP trace receiver that keeps GenAI spans as request records.

The answer is OTLP's own (``ExportTraceServiceResponse``, with ``partialSuccess`` when spans were
rejected), in the encoding of the request, so any OpenTelemetry exporter can send here. Rejected
spans go to the rejected store with their reasons, like any record.
"""

from __future__ import annotations

import time
import uuid
import zlib
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
        **error_responses(400, 401, 403, 413, 415),
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
    protobuf = otlp.protobuf_available()
    if not protobuf and request.headers.get("content-type", "").startswith(PROTOBUF_TYPES):
        raise UnsupportedMediaType(
            "OTLP protobuf needs opentelemetry-proto: pip install 'modelwarden[otlp]'; "
            "or export OTLP/HTTP JSON",
            field="content-type",
        )
    media = require_media_type(request, JSON_TYPES + (PROTOBUF_TYPES if protobuf else ()))
    raw = await read_body(request, rt.config.max_body_bytes)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    body = _inflate(raw, encoding, rt.config.max_body_bytes)
    if media in PROTOBUF_TYPES:
        spans = await run_in_threadpool(lambda: list(otlp.spans_from_protobuf(body)))
    else:
        spans = list(otlp.spans_from_json(parse_json(body)))
    by_kind = {
        "requests": [otlp.span_to_record(s) for s in spans if s.is_request],
        "feedback": [fb for s in spans if not s.is_request for fb in otlp.span_feedback(s)],
    }
    embedders = rt.store.embedders()
    rejected = 0
    first: dict[str, Any] | None = None
    for kind, records in by_kind.items():
        if not records:
            continue
        batch_id = uuid.uuid4().hex
        results, accepted, items = await run_in_threadpool(
            check_batch, kind, records, embedders, batch_id, key.plant_id if key else None
        )
        refuse_other_plants(rt, key, results, SOURCE)
        if items:
            await rt.spool_batch(SpoolBatch(kind, SOURCE, items, batch_id=batch_id))
        rejected += len(records) - accepted
        rt.metrics.ingest_records.inc(accepted)
        first = first or next((r for r in results if r["status"] == "invalid"), None)
    rt.metrics.ingest_invalid.inc(rejected)
    rt.metrics.ingest_latency.observe(time.perf_counter() - t0)
    message = ""
    if rejected and first is not None:
        message = f"{rejected} span(s) rejected; first: {first['field']}: {first['reason']}"
    if media in PROTOBUF_TYPES:
        return Response(otlp.protobuf_response(rejected, message), media_type=PROTOBUF_TYPES[0])
    out: dict[str, Any] = {}
    if rejected:
        out["partialSuccess"] = {"rejectedSpans": rejected, "errorMessage": message}
    return JSONResponse(out)
