"""Rollouts over HTTP: the live plan, its step and split, the judge, each SOP rule's state, and
the operator's pause, resume, promote and rollback (each with a reason, each audited).

Reads need no key; every operation needs an ``operator`` (or ``admin``) key.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelwarden.governance.keys import ApiKey
from modelwarden.rollout import service as rollout_service
from modelwarden.server.deps import actor_of, json_response, requires, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"])

_WRITE = error_responses(400, 401, 403, 404, 409, 422)


class StartRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=200)
    plan_yaml: str | None = Field(
        default=None,
        max_length=100_000,
        description="A rollout plan as YAML (modelwarden rollout plan); default: the built-in plan",
    )


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=4000, description="Goes into the audit log.")


@router.get("", summary="Every rollout, newest first")
def list_rollouts(request: Request, limit: int = Query(50, ge=1, le=1000)) -> Response:
    return json_response(rollout_service.list_rollouts(runtime_of(request).state, limit))


@router.get(
    "/current",
    summary="The rollout under way (else the latest): step, split, verdict, SOP rule states",
)
async def current(request: Request) -> Response:
    rt = runtime_of(request)
    view = await run_in_threadpool(rollout_service.rollout_view, rt.settings, rt.state)
    return json_response(view)


@router.post("", status_code=201, responses=_WRITE, summary="Start a canary rollout")
async def start(
    request: Request, body: StartRollout, key: ApiKey | None = Depends(requires("rollout"))
) -> Response:
    rt = runtime_of(request)
    view = await run_in_threadpool(
        rollout_service.start_rollout,
        rt.settings,
        rt.state,
        body.version,
        actor_of(key),
        body.plan_yaml,
    )
    rt.routes.invalidate()
    return json_response(view, 201)


@router.post(
    "/current/{operation}",
    responses=_WRITE,
    summary="Pause, resume, promote (next step now) or roll back (the SOP rollback: all traffic "
    "to stable, the canary quarantined, an incident with the RCA extract, notifications)",
)
async def operate(
    request: Request,
    operation: Literal["pause", "resume", "promote", "rollback"],
    body: Operation,
    key: ApiKey | None = Depends(requires("rollout")),
) -> Response:
    rt = runtime_of(request)
    view = await run_in_threadpool(
        rollout_service.operate,
        rt.settings,
        rt.state,
        operation,
        actor_of(key),
        body.reason,
        rt.notifier,
    )
    rt.routes.invalidate()
    return json_response(view)


__all__ = ["router"]
