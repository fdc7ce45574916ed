"""The audit log and the SOP policy over HTTP (read only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from modelwarden.governance import service as governance
from modelwarden.policy import service as policy
from modelwarden.server.deps import json_response, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter()


@router.get(
    "/v1/audit/entries",
    tags=["audit"],
    responses=error_responses(422),
    summary="Audit entries, newest first (audit list)",
)
def entries(
    request: Request,
    subject: str | None = Query(None, max_length=300),
    action: str | None = Query(None, max_length=100, description="e.g. registry.* or rollout.*"),
    limit: int = Query(50, ge=1, le=5000),
) -> Response:
    return json_response(
        governance.audit_entries(runtime_of(request).state, subject, action, limit)
    )


@router.get(
    "/v1/audit/verify",
    tags=["audit"],
    summary="Recompute the hash chain; `ok` false names the first entry that does not fit",
)
async def verify(request: Request) -> Response:
    res = await run_in_threadpool(governance.verify_audit, runtime_of(request).state)
    return json_response(res.to_dict())


@router.get("/v1/policy", tags=["policy"], summary="The SOP policy the engine enforces")
def current_policy(request: Request) -> Response:
    rt = runtime_of(request)
    return json_response(policy.current(rt.settings, rt.state))


@router.get(
    "/v1/policy/sop",
    tags=["policy"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}, "description": "The SOP document"}},
    summary="The SOP document (Markdown) rendered from the policy in force",
)
def sop(request: Request) -> Response:
    rt = runtime_of(request)
    text = policy.sop_markdown(rt.settings, state=rt.state)
    return Response(text, media_type="text/markdown; charset=utf-8")


__all__ = ["router"]
