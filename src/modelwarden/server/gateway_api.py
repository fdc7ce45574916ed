"""The OpenAI-compatible endpoints of the gateway (see :mod:`modelwarden.gateway.proxy`).

Point any OpenAI client at ``http://HOST:PORT/v1``. Headers the gateway reads: ``X-User-Id`` (when
the body has no ``user``), ``X-Plant-Id``, ``X-Session-Id`` and ``X-Request-Id``; it answers with
``X-Request-Id``, ``X-ModelWarden-Route`` and ``X-ModelWarden-Version``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from modelwarden.auth import ApiKey
from modelwarden.server.body import read_json
from modelwarden.server.deps import requires, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(tags=["gateway"])


@router.post(
    "/v1/chat/completions",
    responses={
        **error_responses(400, 401, 403, 413, 415, 502, 503),
        200: {
            "description": "the upstream's chat completion, or its event stream",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                }
            },
        }
    },
    summary="Chat completion through the route table (OpenAI-compatible)",
)
async def chat_completions(
    request: Request, key: ApiKey | None = Depends(requires("gateway"))
) -> Response:
    rt = runtime_of(request)
    body = await read_json(request, rt.config.max_body_bytes)
    gateway = rt.gateway
    # One pass over the raw headers; Starlette's Headers scans them again for every lookup.
    headers = {k.decode("latin-1").lower(): v.decode("latin-1")
               for k, v in request.scope["headers"]}
    call = gateway.new_call(body, headers, key.plant_id if key else None)
    return await gateway.handle(call)


@router.get("/v1/models", summary="The versions the route table serves (OpenAI-compatible)")
async def models(request: Request) -> dict[str, Any]:
    table = runtime_of(request).routes.get()
    ups = [] if table is None else [u for u in (table.stable, table.canary) if u is not None]
    return {
        "object": "list",
        "data": [
            {"id": u.version, "object": "model", "created": 0, "owned_by": "modelwarden"}
            for u in ups
        ],
    }
