"""The ingest API: request logs, feedback and escalations, answered per record.

A batch is a JSON list of records, ``{"records": [...]}``, a single record object, or NDJSON
(``application/x-ndjson``, one record per line). Each record is validated on arrival and the
answer says, per record, ``accepted`` or ``invalid`` with the field and the reason. The whole
batch (invalid records included, which go to the rejected store with their reasons) is written
to the spool and fsync'd before the answer; the log store takes it in moments later. So
``accepted`` means durably kept: a record whose key is already stored is then counted as a
duplicate by the store and not added twice, so re-sending a batch is always safe.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from modelwarden.governance.keys import ApiKey
from modelwarden.records import FieldProblem
from modelwarden.server.body import JSON_TYPES, NDJSON_TYPES, read_body, require_media_type
from modelwarden.server.deps import requires, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(tags=["ingest"])


class RecordResult(BaseModel):
    index: int
    key: str | None = None
    status: Literal["accepted", "invalid"]
    field: str | None = None
    reason: str | None = None
    problems: list[FieldProblem] | None = None


class IngestResponse(BaseModel):
    batch_id: str
    kind: str
    received: int
    accepted: int
    invalid: int
    results: list[RecordResult]


async def ingest_batch(
    request: Request, kind: str, source: str, key: ApiKey | None = None
) -> Response:
    rt = runtime_of(request)
    t0 = time.perf_counter()
    media = require_media_type(request, JSON_TYPES + NDJSON_TYPES)
    body = await read_body(request, rt.config.max_body_bytes)
    embedders = rt.store.embedders() if kind == "requests" else {}
    # Parsed, validated, encoded for the spool and answered away from the event loop when large
    # (see ingest_checks), so that a busy ingest does not hold up the gateway.
    checked = await rt.ingest_checks.check(
        body,
        media in NDJSON_TYPES,
        kind,
        source,
        embedders,
        key.plant_id if key is not None else None,
        rt.config.max_batch_records,
        uuid.uuid4().hex,
    )
    refuse_other_plants(rt, key, checked.refused, source)
    if checked.spool_line is not None:
        await rt.spool_line(checked.spool_line, checked.received)
    rt.metrics.ingest_records.inc(checked.accepted)
    rt.metrics.ingest_invalid.inc(checked.invalid)
    rt.metrics.ingest_latency.observe(time.perf_counter() - t0)
    return Response(checked.answer, media_type="application/json")


def refuse_other_plants(
    rt: Any, key: ApiKey | None, results: list[dict[str, Any]], source: str
) -> None:
    """Audit the records a plant-bound key was refused (one entry per batch)."""
    if key is None or key.plant_id is None:
        return
    refused = [r for r in results if r["status"] == "invalid" and r.get("field") == "plant_id"]
    if refused:
        rt.keys.refusals.add(
            key.actor,
            "auth.refused",
            source,
            f"{len(refused)} record(s) of another plant than {key.plant_id!r}",
            {"prefix": key.prefix, "keys": [r["key"] for r in refused[:20]]},
        )


def _body_doc(record_schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{record_schema}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"type": "array", "items": ref},
                            {
                                "type": "object",
                                "properties": {"records": {"type": "array", "items": ref}},
                                "required": ["records"],
                            },
                            ref,
                        ]
                    }
                },
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one record per line"}
                },
            },
        }
    }


_ERRORS = error_responses(400, 401, 403, 413, 415, 507)


@router.post(
    "/v1/logs",
    response_model=IngestResponse,
    responses=_ERRORS,
    openapi_extra=_body_doc("RequestRecord"),
    summary="Store request logs (the seed's schema)",
)
async def post_logs(request: Request, key: ApiKey | None = Depends(requires("ingest"))) -> Response:
    return await ingest_batch(request, "requests", "http:/v1/logs", key)


@router.post(
    "/v1/feedback",
    response_model=IngestResponse,
    responses=_ERRORS,
    openapi_extra=_body_doc("FeedbackEvent"),
    summary="Store feedback events (1-5 scores that arrive after the request)",
)
async def post_feedback(request: Request, _key: Any = Depends(requires("events"))) -> Response:
    return await ingest_batch(request, "feedback", "http:/v1/feedback")


@router.post(
    "/v1/escalations",
    response_model=IngestResponse,
    responses=_ERRORS,
    openapi_extra=_body_doc("EscalationEvent"),
    summary="Store escalations (user-reported problems with an answer)",
)
async def post_escalations(request: Request, _key: Any = Depends(requires("events"))) -> Response:
    return await ingest_batch(request, "escalations", "http:/v1/escalations")
