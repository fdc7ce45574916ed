"""The OpenAI-compatible endpoints of the gateway (see :mod:`modelwarden.gateway.proxy`).

Point any OpenAI client at ``http://HOST:PORT/v1``. Headers the gateway reads: ``X-User-Id`` (when
the body has no ``user``), ``X-Plant-Id``, ``X-Session-Id`` and ``X-Request-Id``; it answers with
``X-Request-Id``, ``X-ModelWarden-Route`` and ``X-ModelWarden-Version``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from modelwarden.errors import WardenError
from modelwarden.gateway.proxy import EMBEDDINGS, RESPONSES, Api
from modelwarden.governance.keys import ApiKey, ForbiddenError
from modelwarden.server.body import JSON_TYPES, _too_large, parse_json, read_json
from modelwarden.server.deps import requires, runtime_of
from modelwarden.server.errors import UnsupportedMediaType, error_responses
from modelwarden.server.runtime import Runtime

log = logging.getLogger("modelwarden.server")
router = APIRouter(tags=["gateway"])
CHAT_PATH = "/v1/chat/completions"


@router.post(
    CHAT_PATH,
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
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
    }
    check_plant(rt, headers, key)
    call = gateway.new_call(body, headers, key.plant_id if key else None)
    return await gateway.handle(call)


async def _proxy(request: Request, key: ApiKey | None, api: Api) -> Response:
    rt = runtime_of(request)
    body = await read_json(request, rt.config.max_body_bytes)
    headers = {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
    }
    check_plant(rt, headers, key)
    call = rt.gateway.new_call(body, headers, key.plant_id if key else None, api)
    return await rt.gateway.handle(call)


def _open_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["input"],
                        "properties": {"model": {"type": "string"}, "input": {}},
                        "additionalProperties": True,
                        "description": description,
                    }
                }
            },
        }
    }


@router.post(
    "/v1/responses",
    responses={
        **error_responses(400, 401, 403, 413, 415, 502, 503),
        200: {
            "description": "the upstream's response, or its event stream",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
    },
    openapi_extra=_open_body("an OpenAI Responses API request"),
    summary="Responses API through the route table (OpenAI-compatible)",
)
async def responses(
    request: Request, key: ApiKey | None = Depends(requires("gateway"))
) -> Response:
    return await _proxy(request, key, RESPONSES)


@router.post(
    "/v1/embeddings",
    responses={
        **error_responses(400, 401, 403, 413, 415, 502, 503),
        200: {"description": "the upstream's embeddings", "content": {"application/json": {}}},
    },
    openapi_extra=_open_body("an OpenAI embeddings request"),
    summary="Embeddings through the route table (OpenAI-compatible)",
)
async def embeddings(
    request: Request, key: ApiKey | None = Depends(requires("gateway"))
) -> Response:
    return await _proxy(request, key, EMBEDDINGS)


class _Disconnected(Exception):
    pass


async def _read(receive: Any, headers: dict[str, str], limit: int) -> bytes:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media in JSON_TYPES or media.endswith("+json")):
        raise UnsupportedMediaType(
            f"content type {media or 'none'!r} is not accepted here; send application/json",
            field="content-type",
            accepted=list(JSON_TYPES),
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def authorize(rt: Runtime, headers: dict[str, str], client: str | None = None) -> ApiKey | None:
    optional = rt.settings.gateway_auth == "off"
    return rt.keys.authorize(
        headers.get("authorization"), "gateway", optional=optional, client=client
    )


async def chat_response(
    rt: Runtime, headers: dict[str, str], body: Any, key: ApiKey | None
) -> Response:
    """The answer to an authorized chat request: ``headers`` (lower-case names), JSON ``body``.

    Raises :class:`~modelwarden.errors.WardenError` for an answer in the error shape.
    """
    check_plant(rt, headers, key)
    call = rt.gateway.new_call(body, headers, key.plant_id if key else None)
    return await rt.gateway.handle(call)


def check_plant(rt: Runtime, headers: dict[str, str], key: ApiKey | None) -> None:
    """A key bound to a plant speaks for that plant only: ``X-Plant-Id`` naming another is
    refused (and audited) rather than quietly replaced."""
    if key is None or key.plant_id is None:
        return
    asked = headers.get("x-plant-id", "").strip()
    if asked and asked != key.plant_id:
        raise rt.keys.refuse(
            ForbiddenError(
                f"this key is bound to plant {key.plant_id!r} and cannot write records of "
                f"plant {asked!r}",
                field="plant_id",
            ),
            key,
            "gateway",
            None,
        )


# The ``error.type`` an OpenAI client expects for each status.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body (``message``, ``type``, ``param``, ``code``), which this server's one
    error shape (``code``, ``message``, ``field``) extends."""
    error: dict[str, Any] = {
        "message": message,
        "type": OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error"),
        "param": param,
        "code": code,
    }
    if param is not None:
        error["field"] = param
    return {"error": error}


def error_answer(exc: Exception) -> Response:
    if isinstance(exc, WardenError):
        if exc.http_status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        body = openai_error(exc.http_status, exc.code, exc.message, exc.field)
        if exc.details:
            body["error"]["details"] = exc.details
        return JSONResponse(
            body, status_code=exc.http_status, headers=getattr(exc, "headers", None)
        )
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        openai_error(500, "internal", "internal error; see the server log"), status_code=500
    )


def header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # One pass over the raw headers, as lower-case names.
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


async def serve_chat(rt: Runtime, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``POST /v1/chat/completions`` as a bare ASGI handler: the same checks, answers and errors
    as :func:`chat_completions`, without the router and dependency resolution on every request.
    """
    try:
        headers = header_dict(scope["headers"])
        # The key is checked before the body is read, as for every other endpoint.
        client = scope.get("client")
        key = authorize(rt, headers, str(client[0]) if client else None)
        body = parse_json(await _read(receive, headers, rt.config.max_body_bytes))
        response = await chat_response(rt, headers, body, key)
    except _Disconnected:
        return
    except Exception as exc:
        response = error_answer(exc)
    await response(scope, receive, send)


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
