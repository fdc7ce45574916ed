"""Incidents over HTTP: list, detail (timeline, trigger, notifications), resolve, and the RCA log
extract for download as Parquet or JSONL. Resolving needs an ``operator`` (or ``admin``) key.

``GET /v1/notifications`` is the notification outbox: what was delivered, what is being retried
(a channel that is down) and what failed for good, with each delivery's last error."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelwarden.governance import service as governance
from modelwarden.governance.keys import ApiKey
from modelwarden.server.deps import actor_of, json_response, requires, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])
notifications_router = APIRouter(prefix="/v1/notifications", tags=["incidents"])


class Resolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=20_000, description="Root cause and resolution.")


@router.get("", responses=error_responses(422), summary="Incidents, newest first")
def list_incidents(
    request: Request,
    status: Literal["open", "mitigated", "closed"] | None = Query(None),
) -> Response:
    return json_response(governance.list_incidents(runtime_of(request).state, status))


@router.get(
    "/{incident_id}",
    responses=error_responses(404),
    summary="One incident: trigger, timeline, notifications and RCA files",
)
def get_incident(request: Request, incident_id: str) -> Response:
    return json_response(governance.incident_detail(runtime_of(request).state, incident_id))


@router.post(
    "/{incident_id}/resolve",
    responses=error_responses(400, 401, 403, 404, 409, 422),
    summary="Close an incident with its root cause and resolution",
)
async def resolve(
    request: Request,
    incident_id: str,
    body: Resolve,
    key: ApiKey | None = Depends(requires("incidents")),
) -> Response:
    rt = runtime_of(request)
    inc = await run_in_threadpool(
        governance.close_incident, rt.state, incident_id, actor_of(key), body.note
    )
    return json_response(inc)


@router.get(
    "/{incident_id}/rca/{table}",
    responses={
        **error_responses(400, 404, 422),
        200: {
            "content": {"application/vnd.apache.parquet": {}, "application/x-ndjson": {}},
            "description": "The logs of the incident's window, as written when it was opened",
        },
    },
    response_class=Response,
    summary="Download the RCA log extract of one table (requests, feedback, escalations)",
)
def rca(
    request: Request,
    incident_id: str,
    table: Literal["requests", "feedback", "escalations"],
    format: Literal["parquet", "jsonl"] = Query("jsonl"),
) -> Response:
    rt = runtime_of(request)
    path = governance.rca_file(rt.settings, incident_id, table, format, rt.state)
    return FileResponse(
        path,
        media_type=governance.RCA_FORMATS[format],
        filename=f"{incident_id}-{table}.{format}",
    )


__all__ = ["router"]


@notifications_router.get(
    "",
    responses=error_responses(400, 422),
    summary="The notification outbox: counts, retries and failures, newest first",
)
def list_notifications(
    request: Request,
    status: Literal["pending", "sent", "failed"] | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    return json_response(governance.notification_status(runtime_of(request).state, status, limit))
