"""OTLP over gRPC: the collector's ``TraceService/Export`` beside ``POST /v1/traces``.

The same spans become the same records as over HTTP (:func:`otlp_api.ingest_spans`): rejected
spans go to the rejected store with their reasons and the answer's ``partial_success`` counts
them. The key travels in the call's metadata, ``authorization: Bearer KEY`` or ``x-api-key: KEY``
(what an exporter's ``headers`` setting sends), with the role ``ingest``; refusals are audited.

The gRPC server runs in threads of the serving process; each call decodes and maps its spans on
its own thread and hands the records to the server's event loop, which spools them as it does
records that arrive over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from modelwarden.errors import WardenError
from modelwarden.governance import audit
from modelwarden.governance.keys import AuthError, ForbiddenError
from modelwarden.governance.registry import key_actor
from modelwarden.ingest import otlp
from modelwarden.server.defaults import DEFAULT_GRPC_PORT
from modelwarden.server.otlp_api import ingest_spans
from modelwarden.server.runtime import Runtime

log = logging.getLogger(__name__)

SOURCE = "grpc:TraceService/Export"
# A gRPC client waits this long for the spool before the call fails (and the exporter retries).
SPOOL_TIMEOUT_S = 30.0


def _authorization(metadata: tuple[Any, ...]) -> str | None:
    meta = {str(k).lower(): v for k, v in metadata}
    if meta.get("authorization"):
        return str(meta["authorization"])
    if meta.get("x-api-key"):
        return f"Bearer {meta['x-api-key']}"
    return None


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, rt: Runtime, loop: asyncio.AbstractEventLoop) -> None:
        self.rt = rt
        self.loop = loop

    def _refuse(self, context: grpc.ServicerContext, exc: WardenError) -> None:
        status = (
            grpc.StatusCode.UNAUTHENTICATED
            if isinstance(exc, AuthError)
            else grpc.StatusCode.PERMISSION_DENIED
        )
        key = None
        secret = otlp_secret(context)
        if secret:
            key = self.rt.keys.lookup(secret)
        audit.record(
            self.rt.state,
            key_actor(key) if key is not None else "anonymous",
            "grpc.refused",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            exc.message,
            {"status": status.name, "code": exc.code, "client": context.peer()},
        )
        context.abort(status, exc.message)

    def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        t0 = time.perf_counter()
        key = None
        try:
            key = self.rt.keys.authorize(_authorization(context.invocation_metadata()), "ingest")
        except (AuthError, ForbiddenError) as exc:
            self._refuse(context, exc)
        try:
            spans = list(otlp.spans_from_message(request))
            outcome = asyncio.run_coroutine_threadsafe(
                ingest_spans(self.rt, spans, SOURCE, key), self.loop
            ).result(SPOOL_TIMEOUT_S)
        except WardenError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except futures.TimeoutError:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the spool did not answer in time")
        self.rt.metrics.ingest_latency.observe(time.perf_counter() - t0)
        return otlp.protobuf_message(outcome.rejected, outcome.message, outcome.unknown)


def otlp_secret(context: grpc.ServicerContext) -> str | None:
    authorization = _authorization(context.invocation_metadata())
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class GrpcReceiver:
    """The OTLP/gRPC server of one runtime; ``start`` binds ``host:port`` (0 picks a port)."""

    def __init__(self, rt: Runtime, host: str, port: int, *, workers: int = 4) -> None:
        self.rt = rt
        self.host = host
        self.port = port
        self.workers = workers
        self.server: grpc.Server | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> int:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="otlp-grpc"),
            options=[("grpc.max_receive_message_length", self.rt.config.max_body_bytes)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            TraceReceiver(self.rt, loop), server
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind OTLP/gRPC to {self.host}:{self.port}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot bind OTLP/gRPC to {self.host}:{self.port} (in use?)")
        server.start()
        self.server = server
        self.port = bound
        log.info("OTLP/gRPC on %s:%d", self.host, bound)
        return bound

    def stop(self, grace: float = 5.0) -> None:
        if self.server is not None:
            self.server.stop(grace).wait()
            self.server = None


__all__ = ["DEFAULT_GRPC_PORT", "GrpcReceiver", "TraceReceiver"]
