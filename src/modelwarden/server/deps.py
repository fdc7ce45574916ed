"""FastAPI dependencies: the app's runtime and API-key checks by action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelwarden.governance.keys import ApiKey
from modelwarden.server.runtime import Runtime

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key from `modelwarden keys create --role ROLE`.",
)


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def requires(action: str) -> Callable[..., Awaitable[ApiKey | None]]:
    """A dependency that lets the request through only with a key whose role may ``action``."""

    async def check(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    ) -> ApiKey | None:
        return runtime_of(request).keys.authorize(
            request.headers.get("authorization"),
            action,
            optional_without_keys=action == "gateway",
        )

    check.__name__ = f"requires_{action}"
    return check


def json_default(v: Any) -> str:
    # The CLI's ``--format json`` prints with ``default=str``; the API answers the same text.
    return str(v)
