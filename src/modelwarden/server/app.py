"""The one FastAPI app of ``modelwarden serve``: ingest, reads, the gateway, routes, metrics.

Its OpenAPI document (``/openapi.json``) is the contract. Every error answers
``{"error": {"code", "message", "field"?, "details"?}}``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from modelwarden import __version__
from modelwarden.governance.routes import PutRoutes
from modelwarden.records import EscalationEvent, FeedbackEvent, RequestRecord
from modelwarden.server import (
    audit_api,
    evals_api,
    gateway_api,
    incidents_api,
    ingest_api,
    ops_api,
    otlp_api,
    read_api,
    registry_api,
    review_api,
    rollout_api,
)
from modelwarden.server.config import ServerConfig
from modelwarden.server.console import views as console
from modelwarden.server.deps import audit_refusal
from modelwarden.server.errors import ErrorBody, install_error_handlers
from modelwarden.server.otlp_grpc import GrpcReceiver
from modelwarden.server.output_metrics import OutputsCollector
from modelwarden.server.runtime import Runtime
from modelwarden.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
ModelWarden keeps fine-tuned LLM assistants safe in production.

* **ingest**: request logs, feedback and escalations, answered per record; durable (fsync'd)
  before the answer.
* **read**: KPIs, drift and the weekly report, with the CLI's parameters and JSON.
* **gateway**: an OpenAI-compatible `/v1/chat/completions` with sticky canary routing, shadow
  copies and a log record for every request.
* **routes**: the gateway's versioned route table.
* **operations**: `/healthz` and Prometheus `/metrics`.

Writes need `Authorization: Bearer KEY` (`modelwarden keys create --role ROLE`); the gateway needs
one only with `gateway_auth: required` (`serve --gateway-auth required`).
"""

# A chat request as far as the gateway looks at it; everything else passes through untouched.
CHAT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {"type": "string", "description": "ignored: the route table picks the version"},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string"},
                    "content": {"anyOf": [{"type": "string"}, {"type": "array"}, {"type": "null"}]},
                },
            },
        },
        "stream": {"type": "boolean"},
        "user": {"type": "string", "description": "the sticky routing key"},
    },
    "additionalProperties": True,
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in (
        ("RequestRecord", RequestRecord),
        ("FeedbackEvent", FeedbackEvent),
        ("EscalationEvent", EscalationEvent),
        ("PutRoutes", PutRoutes),
        ("ErrorBody", ErrorBody),
    ):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(js.pop("$defs", {}))
        components[name] = js
    components["ChatCompletionRequest"] = CHAT_REQUEST_SCHEMA
    # FastAPI documents its own 422 shape; this server answers 422 in the one error shape.
    for path in schema.get("paths", {}).values():
        for op in path.values():
            resp = op.get("responses", {}).get("422")
            if resp is not None:
                resp["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


class WardenApp(FastAPI):
    """FastAPI, with the gateway's chat endpoint served ahead of the router: it is the one
    endpoint on the hot path of every model call, and routing plus dependency resolution cost more
    than the endpoint itself. The route stays registered for the OpenAPI document.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == gateway_api.CHAT_PATH
            and scope["method"] == "POST"
        ):
            await gateway_api.serve_chat(self.state.runtime, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _start_grpc(runtime: Runtime) -> GrpcReceiver | None:
    cfg = runtime.config
    if cfg.otlp_grpc_port is None:
        return None
    receiver = GrpcReceiver(runtime, cfg.otlp_grpc_host, cfg.otlp_grpc_port)
    try:
        receiver.start(asyncio.get_running_loop())
    except OSError as exc:
        if cfg.otlp_grpc_required:
            raise
        log.warning("%s; OTLP/gRPC is off (OTLP/HTTP at /v1/traces still works)", exc)
        return None
    runtime.otlp_grpc_port = receiver.port
    return receiver


def create_app(
    settings: Settings,
    config: ServerConfig | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The server for one data directory; its state starts and stops with the app's lifespan.

    ``clock`` stamps the gateway's request records (default: the wall clock); a simulation
    passes its own, with ``run_controller=False``, and ticks the controller at simulated times.
    """
    runtime = Runtime(settings, config or ServerConfig(), clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        grpc_receiver = _start_grpc(runtime)
        # Everything imported so far lives as long as the process; frozen, the collector stops
        # walking it, which otherwise shows up as tens of milliseconds on a request now and then.
        gc.freeze()
        try:
            yield
        finally:
            if grpc_receiver is not None:
                await run_in_threadpool(grpc_receiver.stop)
            await runtime.stop()

    app = WardenApp(
        title="ModelWarden",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI is served from the package's own assets (console.views.docs); no CDN.
        docs_url=None,
        redoc_url=None,
        # The gateway's overhead is measured in microseconds; the app keeps its own metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.runtime = runtime
    runtime.metrics.registry.register(OutputsCollector(runtime.state))
    install_error_handlers(app, on_refused=audit_refusal)
    for module in (
        ingest_api,
        otlp_api,
        read_api,
        gateway_api,
        ops_api,
        review_api,
        registry_api,
        rollout_api,
        incidents_api,
        evals_api,
        audit_api,
    ):
        app.include_router(module.router)
    app.include_router(incidents_api.notifications_router)
    console.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


__all__ = ["create_app"]
