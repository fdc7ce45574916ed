"""uvicorn's httptools protocol, serving the gateway's plain chat completions without ASGI.

Every model call passes through ``POST /v1/chat/completions``, so its per-request cost is the
gateway's added latency. Through ASGI a request costs a scope, a request-response cycle with its
event, a task running the app, a ``Response`` object and two writes (head, then body); here a
plain (non-streaming) chat request that is well-formed JSON is answered straight from the
protocol: the same key check, the same gateway, the same answers and error shape, written in one
write. Everything else (other routes, streaming, a body that is not JSON or too large, a request
pipelined behind another, ``Expect: 100-continue``) is handed to uvicorn's own handling
unchanged, as if this class were not there.

The class leans on uvicorn's protocol internals (pinned to uvicorn 0.54). Should they change, the
server does not fail: :func:`protocol_for` checks what this module needs of uvicorn (the module's
names, the methods it overrides) before the server starts, and the first request on each
connection checks the attributes it reads; either way a mismatch logs one warning naming what is
missing and every request takes uvicorn's standard path.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import uvicorn

from modelwarden.server import gateway_api
from modelwarden.server.app import WardenApp

log = logging.getLogger("modelwarden.server")

CHAT_TARGET = gateway_api.CHAT_PATH.encode()

# What this module uses of uvicorn's httptools protocol: methods it overrides or calls, and the
# attributes it reads once a request's headers are parsed.
REQUIRED_METHODS = (
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "shutdown",
)
REQUIRED_ATTRIBUTES = (
    "config",
    "parser",
    "url",
    "headers",
    "cycle",
    "pipeline",
    "expect_100_continue",
    "flow",
    "loop",
    "tasks",
    "client",
    "server_state",
    "access_log",
    "access_logger",
    "transport",
)

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError as exc:  # a uvicorn whose httptools module is laid out differently
    _IMPORT_PROBLEM: str | None = f"cannot import its httptools protocol ({exc})"
    HttpToolsProtocol = object  # type: ignore[assignment,misc]
    STATUS_LINE = {}
else:
    _IMPORT_PROBLEM = None


def incompatibility() -> str | None:
    """Why the fast path cannot run on the installed uvicorn, or None when it can."""
    if _IMPORT_PROBLEM is not None:
        return _IMPORT_PROBLEM
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(HttpToolsProtocol, m, None))]
    if missing:
        return f"its HttpToolsProtocol has no {', '.join(missing)}"
    if not isinstance(STATUS_LINE, dict) or not all(
        isinstance(STATUS_LINE.get(code), bytes) for code in (200, 400, 401, 429, 502, 503)
    ):
        return "its STATUS_LINE table is not the status-to-bytes map the fast path writes"
    return None


def _fallback_warning(reason: str) -> None:
    log.warning(
        "the gateway's fast path is off: the installed uvicorn %s lacks what it was built on "
        "(uvicorn 0.54): %s; every request takes uvicorn's standard path",
        uvicorn.__version__,
        reason,
    )


class _InFlight:
    """Stands for the answer being written, for uvicorn's pipelining check."""

    response_complete = False


_IN_FLIGHT = _InFlight()


class GatewayHttpProtocol(HttpToolsProtocol):
    # None until the first request has been checked; then whether uvicorn's instance has every
    # attribute the fast path reads.
    compatible: bool | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        state = getattr(getattr(getattr(self, "config", None), "app", None), "state", None)
        self._runtime = getattr(state, "runtime", None)
        self._limit = self._runtime.config.max_body_bytes if self._runtime is not None else 0
        self._fast: list[bytes] | None = None
        self._fast_size = 0
        self._keep_alive = True
        self._busy = False
        self._close_after = False

    # ---- parser callbacks ------------------------------------------------------------------
    def _check_compatible(self) -> bool:
        missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(self, a)]
        cls = type(self)
        if missing:
            cls.compatible = False
            _fallback_warning(f"its protocol has no attribute {', '.join(missing)}")
        else:
            cls.compatible = True
        return cls.compatible

    def on_headers_complete(self) -> None:
        compatible = self.compatible
        if compatible is None:
            compatible = self._check_compatible()
        if not compatible:
            super().on_headers_complete()
            return
        if (
            self._runtime is not None
            and self.url == CHAT_TARGET
            and self.parser.get_method() == b"POST"
            and not self._busy
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
        ):
            self._fast = []
            self._fast_size = 0
            self._keep_alive = (
                self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            )
            return
        self._fast = None
        if self._busy and (self.cycle is None or self.cycle.response_complete):
            # Pipelined behind a request this class is answering: uvicorn queues it behind an
            # unfinished cycle, and it is started when that answer is written.
            self.cycle = _IN_FLIGHT  # type: ignore[assignment]
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._fast is None:
            super().on_body(body)
            return
        self._fast_size += len(body)
        if self._fast_size <= self._limit:
            self._fast.append(body)

    def on_message_complete(self) -> None:
        if self._fast is None:
            super().on_message_complete()
            return
        chunks, self._fast = self._fast, None
        body = b"".join(chunks)
        headers = gateway_api.header_dict(self.headers)
        data: Any = None
        if (
            self._fast_size <= self._limit
            and headers.get("content-type", "").split(";", 1)[0].strip().lower()
            == "application/json"
        ):
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                data = None
        if not isinstance(data, dict) or data.get("stream"):
            # uvicorn's own path, with the request as it came; the app answers it (streams,
            # and the errors for a body that is not JSON, too large or of the wrong type).
            if self._fast_size > self._limit:
                body = body[: self._limit + 1]
            super().on_headers_complete()
            if body:
                super().on_body(body)
            super().on_message_complete()
            return
        self._busy = True
        # One request at a time per connection: a pipelined one waits in the socket.
        self.flow.pause_reading()
        task = self.loop.create_task(self._serve(headers, data))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # ---- answering ---------------------------------------------------------------------------
    async def _serve(self, headers: dict[str, str], data: dict[str, Any]) -> None:
        rt = self._runtime
        assert rt is not None
        try:
            key = gateway_api.authorize(rt, headers, self.client[0] if self.client else None)
            response = await gateway_api.chat_response(rt, headers, data, key)
        except Exception as exc:
            response = gateway_api.error_answer(exc)
        status = response.status_code
        out = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *response.raw_headers):
            out += [name, b": ", value, b"\r\n"]
        keep_alive = self._keep_alive and not self._close_after
        if not keep_alive:
            out.append(b"connection: close\r\n")
        out += [b"\r\n", bytes(response.body)]
        if self.access_log:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            self.access_logger.info(
                '%s - "POST %s HTTP/1.1" %d', client, gateway_api.CHAT_PATH, status
            )
        self._busy = False
        if not self.transport.is_closing():
            self.transport.write(b"".join(out))
            if keep_alive:
                self.on_response_complete()
            else:
                self.transport.close()
        if response.background is not None:
            try:
                await response.background()
            except Exception:
                log.exception("the work after a gateway answer failed")

    # ---- connection --------------------------------------------------------------------------
    def shutdown(self) -> None:
        if self._busy:
            self._close_after = True
            return
        super().shutdown()


def protocol_for(app: Any) -> Any:
    """The uvicorn ``http`` setting for ``app``: this protocol for a ModelWarden app, unless the
    installed uvicorn is not one it can work with (then uvicorn's own, with a warning)."""
    if not isinstance(app, WardenApp):
        return "httptools"
    reason = incompatibility()
    if reason is not None:
        _fallback_warning(reason)
        return "httptools"
    return GatewayHttpProtocol


__all__ = ["GatewayHttpProtocol", "incompatibility", "protocol_for"]
