"""FastAPI dependencies: the app's runtime, and who is asking (an API key, or a console session).

A write needs a key whose role may perform the action: sent as ``Authorization: Bearer KEY``, or
held by a console session (the ``mw_session`` cookie) together with the session's CSRF token in
the ``X-CSRF-Token`` header or the form's ``csrf`` field. Every refusal (no key, an unknown key, a
role that may not, a missing CSRF token) is written to the audit log before the answer goes out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelwarden.governance import audit
from modelwarden.governance.keys import ApiKey, AuthError, ForbiddenError, bearer
from modelwarden.governance.registry import key_actor
from modelwarden.governance.sessions import Session, get_session
from modelwarden.server.runtime import Runtime

SESSION_COOKIE = "mw_session"
CSRF_HEADER = "x-csrf-token"

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key from `modelwarden keys create --role ROLE`.",
)


class CsrfError(ForbiddenError):
    code = "csrf"


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def session_of(request: Request) -> Session | None:
    """The console session of this request, if its cookie names a live one (cached per request)."""
    if "mw_session" in request.scope.get("state", {}):
        cached: Session | None = request.state.mw_session
        return cached
    rt = runtime_of(request)
    s = get_session(rt.state, request.cookies.get(SESSION_COOKIE), rt.keys)
    request.state.mw_session = s
    return s


def audit_refusal(request: Request, exc: Exception) -> None:
    """One audit entry for a refused request: who (if known), what, and why."""
    rt = runtime_of(request)
    key: ApiKey | None = getattr(request.state, "mw_key", None)
    actor = key_actor(key) if key is not None else "anonymous"
    audit.record(
        rt.state,
        actor,
        "http.refused",
        request.url.path,
        str(getattr(exc, "message", exc)),
        {
            "method": request.method,
            "path": request.url.path,
            "status": getattr(exc, "http_status", 403),
            "code": getattr(exc, "code", "forbidden"),
            "client": request.client.host if request.client else None,
        },
    )


async def _csrf_token(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        v = form.get("csrf")
        return v if isinstance(v, str) else None
    return None


async def caller(request: Request, action: str) -> ApiKey | None:
    """The key allowed to perform ``action`` for this request; 401/403 otherwise.

    The refusal is audited by the app's error handler (:func:`audit_refusal`), which also sees
    the refusals a service makes (the four-eyes rule, a reviewer acting for another).
    """
    rt = runtime_of(request)
    authorization = request.headers.get("authorization")
    secret = bearer(authorization)
    session = None if secret else session_of(request)
    if session is not None:
        key = session.key
        request.state.mw_key = key
        if request.method not in ("GET", "HEAD") and await _csrf_token(request) != session.csrf:
            raise CsrfError("this form's CSRF token is missing or stale; reload the page")
        if not rt.keys.may(key.role, action):
            raise ForbiddenError(f"a key with role {key.role!r} may not do this", role=key.role)
        return key
    if secret:
        request.state.mw_key = rt.keys.lookup(secret)
    return rt.keys.authorize(
        authorization,
        action,
        optional=action == "gateway" and rt.settings.gateway_auth == "off",
        client=client_address(request.scope),
    )


def requires(action: str) -> Callable[..., Awaitable[ApiKey | None]]:
    """A dependency that lets the request through only with a key whose role may ``action``."""

    async def check(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    ) -> ApiKey | None:
        return await caller(request, action)

    check.__name__ = f"requires_{action}"
    return check


def requires_key(action: str) -> Callable[..., Awaitable[ApiKey]]:
    """Like :func:`requires`, for actions that must name a key even before any key exists."""

    async def check(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    ) -> ApiKey:
        key = await caller(request, action)
        if key is None:  # pragma: no cover - only the gateway lets a request through keyless
            raise AuthError("this request needs an API key")
        return key

    check.__name__ = f"requires_key_{action}"
    return check


def client_address(scope: Any) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def json_default(v: Any) -> str:
    # The CLI's ``--format json`` prints with ``default=str``; the API answers the same text.
    return str(v)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as JSON the way the CLI prints it (non-finite numbers as null)."""
    body = json.dumps(_finite(data), default=json_default, ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def actor_of(key: ApiKey | None) -> str:
    return key_actor(key) if key is not None else "api"
