"""The model registry over HTTP: versions, lifecycle, quarantine, the release flow and evidence.

The same service functions as ``modelwarden registry ...``, with the same JSON. Registering,
promoting and quarantining need an ``operator`` (or ``admin``) key; asking for a release an
``operator``, ``approver`` or ``admin`` key; approving one an ``approver`` key that did not ask
for it (the four-eyes rule).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelwarden.governance import service as governance
from modelwarden.governance.keys import ApiKey
from modelwarden.rollout import service as rollout_service
from modelwarden.server.deps import actor_of, json_response, requires, requires_key, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(prefix="/v1/registry", tags=["registry"])

_READ = error_responses(404, 422)
_WRITE = error_responses(400, 401, 403, 404, 409, 422)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddVersion(_Body):
    version: str = Field(min_length=1, max_length=200, examples=["sop-assistant-v1.3"])
    endpoint: str = Field(min_length=1, max_length=2000, examples=["http://127.0.0.1:9001/v1"])
    notes: str | None = Field(default=None, max_length=4000)
    stable: bool = Field(
        default=False, description="Register as stable (only while no version is): routes it."
    )


class Promote(_Body):
    to: Literal["shadow", "canary", "stable"]
    reason: str = Field(default="", max_length=4000)


class Reason(_Body):
    reason: str = Field(min_length=1, max_length=4000)


class ReleaseRequestIn(_Body):
    reason: str = Field(default="", max_length=4000, description="What was fixed.")


class Approve(_Body):
    eval_run: str = Field(
        min_length=1, max_length=200, description="A run of this version made after quarantine."
    )
    baseline_run: str | None = Field(
        default=None, max_length=200, description="Default: the stable version's newest run."
    )
    note: str = Field(default="", max_length=4000)


@router.get("/versions", responses=_READ, summary="Every registered version (registry list)")
def list_versions(
    request: Request, status: str | None = Query(None, description="Only versions in this status")
) -> Response:
    return json_response(governance.list_versions(runtime_of(request).state, status))


@router.post("/versions", status_code=201, responses=_WRITE, summary="Register a version")
async def add_version(
    request: Request, body: AddVersion, key: ApiKey | None = Depends(requires("registry"))
) -> Response:
    rt = runtime_of(request)
    info = await run_in_threadpool(
        governance.add_version,
        rt.state,
        body.version,
        body.endpoint,
        actor_of(key),
        body.notes,
        body.stable,
    )
    rt.routes.invalidate()
    return json_response(info, 201)


@router.get(
    "/versions/{version}",
    responses=_READ,
    summary="A version: status, release requests, evidence, audit trail (registry show)",
)
def get_version(request: Request, version: str) -> Response:
    return json_response(governance.version_detail(runtime_of(request).state, version))


@router.get("/versions/{version}/evidence", responses=_READ, summary="A version's evidence")
def get_evidence(
    request: Request, version: str, kind: str | None = Query(None, max_length=100)
) -> Response:
    return json_response(governance.version_evidence(runtime_of(request).state, version, kind))


@router.get(
    "/versions/{version}/scorecard",
    responses=_READ,
    summary="A version's scorecard: metrics with intervals, gate results, human review",
)
async def get_scorecard(request: Request, version: str) -> Response:
    rt = runtime_of(request)
    card = await run_in_threadpool(governance.version_scorecard, rt.settings, rt.state, version)
    return json_response(card)


@router.post("/versions/{version}/promote", responses=_WRITE, summary="Move a version forward")
async def promote(
    request: Request,
    version: str,
    body: Promote,
    key: ApiKey | None = Depends(requires("registry")),
) -> Response:
    rt = runtime_of(request)
    info = await run_in_threadpool(
        rollout_service.promote_version, rt.state, version, body.to, actor_of(key), body.reason
    )
    rt.routes.invalidate()
    return json_response(info.to_dict())


@router.post(
    "/versions/{version}/quarantine",
    responses=_WRITE,
    summary="Quarantine a version and take it out of the routes",
)
async def quarantine(
    request: Request,
    version: str,
    body: Reason,
    key: ApiKey | None = Depends(requires("registry")),
) -> Response:
    rt = runtime_of(request)
    info = await run_in_threadpool(
        governance.quarantine_version, rt.state, version, body.reason, actor_of(key)
    )
    rt.routes.invalidate()
    return json_response(info)


@router.post(
    "/versions/{version}/release-requests",
    status_code=201,
    responses=_WRITE,
    summary="Ask for a quarantined version's release (a different approver key approves)",
)
async def request_release(
    request: Request,
    version: str,
    body: ReleaseRequestIn,
    key: ApiKey = Depends(requires_key("release")),
) -> Response:
    rt = runtime_of(request)
    req = await run_in_threadpool(governance.request_release, rt.state, version, key, body.reason)
    return json_response(req, 201)


@router.post(
    "/versions/{version}/approve",
    responses={
        **_WRITE,
        200: {"description": "`approved` says whether the gate passed; nothing changes if not"},
    },
    summary="Release a quarantined version if its re-validation passes the gate (four eyes)",
)
async def approve(
    request: Request,
    version: str,
    body: Approve,
    key: ApiKey = Depends(requires_key("approve")),
) -> Response:
    rt = runtime_of(request)
    res = await run_in_threadpool(
        governance.approve_release,
        rt.state,
        version,
        key,
        body.eval_run,
        body.baseline_run,
        None,
        body.note,
    )
    rt.routes.invalidate()
    return json_response(res.to_dict())


__all__ = ["router"]
