"""HTTP errors and the handlers that give every failure the one JSON error shape.

Every error body is ``{"error": {"code", "message", "field"?, "details"?}}``
(:meth:`~modelwarden.errors.WardenError.to_dict`). A :class:`WardenError` keeps its own
``http_status``; FastAPI's parameter validation answers 422, unknown paths 404, and anything
unexpected 500 with no internals in the body (the traceback goes to the server log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelwarden.errors import StateUnavailable, WardenError
from modelwarden.store.state import UNREACHABLE

# How long a client is asked to wait before retrying while the state database is away.
STATE_RETRY_AFTER_S = 5

log = logging.getLogger("modelwarden.server")


class PayloadTooLarge(WardenError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(WardenError):
    code = "unsupported_media_type"
    http_status = 415


class InvalidBody(WardenError):
    """A JSON body that parsed but does not have the shape the endpoint takes."""

    code = "invalid_body"
    http_status = 422

    @classmethod
    def from_validation(cls, exc: ValidationError) -> InvalidBody:
        problems = [
            {
                "field": ".".join(str(x) for x in e.get("loc", ())) or "(body)",
                "reason": str(e.get("msg", "invalid")).removeprefix("Value error, "),
            }
            for e in exc.errors(include_url=False)
        ]
        first = problems[0] if problems else {"field": "(body)", "reason": "invalid"}
        return cls(f"{first['field']}: {first['reason']}", field=first["field"], problems=problems)


class ServiceUnavailable(WardenError):
    code = "unavailable"
    http_status = 503


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """The one error shape of the HTTP API."""

    error: ErrorDetail


def error_response(exc: WardenError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("query", "since") -> "since"; ("body", "records", 3, "latency_ms") -> "records.3.latency_ms"
    parts = [str(x) for x in loc]
    if parts and parts[0] in ("query", "path", "header", "body", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "(request)"


def validation_error_body(exc: RequestValidationError) -> dict[str, Any]:
    problems = [
        {"field": _field_of(e.get("loc", ())), "reason": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"field": "(request)", "reason": "invalid request"}
    return {
        "error": {
            "code": "invalid_parameter",
            "message": f"{first['field']}: {first['reason']}",
            "field": first["field"],
            "details": {"problems": problems},
        }
    }


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(
    app: FastAPI, on_refused: Callable[[Request, Exception], None] | None = None
) -> None:
    """The one error shape for every failure; ``on_refused`` sees each 401 and 403 first."""

    async def warden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WardenError)
        if exc.http_status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        if on_refused is not None and exc.http_status in (401, 403):
            await run_in_threadpool(on_refused, request, exc)
        custom = getattr(request.state, "mw_error_page", None)
        if custom is not None:
            page: Response = custom(exc)
            return page
        headers = getattr(exc, "headers", None)
        if isinstance(exc, StateUnavailable) and headers is None:
            headers = {"Retry-After": str(STATE_RETRY_AFTER_S)}
        return error_response(exc, headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(validation_error_body(exc), status_code=422)

    async def http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def state_away(_request: Request, exc: Exception) -> JSONResponse:
        # The state database is down or restarting: nothing was changed; the client retries.
        log.warning("state store unavailable: %s", str(exc).splitlines()[0])
        body = {
            "error": {
                "code": StateUnavailable.code,
                "message": "the state database is unavailable; nothing was changed, "
                f"retry in {STATE_RETRY_AFTER_S} s",
                "field": "state_url",
            }
        }
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(STATE_RETRY_AFTER_S)}
        )

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        body = {"error": {"code": "internal", "message": "internal error; see the server log"}}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(WardenError, warden)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    for kind in UNREACHABLE:
        app.add_exception_handler(kind, state_away)
    app.add_exception_handler(Exception, unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries that document the error shape for ``statuses``."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "error")} for s in statuses}


_DESCRIPTIONS = {
    400: "bad input (malformed JSON, an invalid parameter)",
    401: "no API key, or an unknown or revoked one",
    403: "the API key's role may not do this",
    404: "not found",
    409: "the current state forbids it",
    413: "the body is larger than the server's limit",
    415: "the body is not JSON",
    422: "a parameter failed validation",
    502: "the upstream model server failed",
    503: "not ready (no routes set), or the state database is unavailable (Retry-After)",
    507: "the disk under the data directory is full; nothing of the request was kept",
}
