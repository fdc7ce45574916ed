"""Knobs of the HTTP server and the gateway; everything else comes from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from modelwarden.errors import InputError
from modelwarden.governance.keys import gateway_auth_warning
from modelwarden.server.defaults import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    FLUSH_EARLY_RECORDS,
    FLUSH_INTERVAL_S,
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    UPSTREAM_TIMEOUT_S,
    check_host,
    is_loopback,
)
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "ServerConfig",
    "Serving",
    "is_loopback",
    "serving",
]


class ServerConfig(BaseModel):
    max_body_bytes: int = Field(
        default=MAX_BODY_BYTES, ge=1024, description="Larger request bodies get 413."
    )
    max_batch_records: int = Field(default=100_000, ge=1)
    flush_interval_s: float = Field(
        default=FLUSH_INTERVAL_S,
        gt=0,
        description="How often acknowledged records move into the log store.",
    )
    flush_early_records: int = Field(
        default=FLUSH_EARLY_RECORDS,
        ge=1,
        description="Move records into the store sooner once this many wait.",
    )
    routes_ttl_s: float = Field(
        default=0.5,
        gt=0,
        le=1.0,
        description="Route changes made elsewhere reach every request within this time.",
    )
    keys_ttl_s: float = Field(default=1.0, gt=0, description="A revoked key stops within this.")
    auth_max_failures: int = Field(
        default=10,
        ge=1,
        description="Failed authentications per minute from one address or key prefix before 429.",
    )
    auth_block_s: float = Field(default=60.0, gt=0, description="How long such a client waits.")
    run_controller: bool = Field(
        default=True, description="Tick the rollout controller and SOP policy inside the server."
    )
    tick_interval_s: float = Field(
        default=15.0, gt=0, description="How often the rollout controller and SOP policy tick."
    )
    run_report_schedule: bool = Field(
        default=True,
        description="Send the weekly pack on the report_schedule setting (when report_delivery "
        "names targets).",
    )
    report_check_interval_s: float = Field(
        default=60.0, gt=0, description="How often the weekly pack's schedule is checked."
    )
    build_rollups: bool = Field(
        default=True,
        description="Build the daily KPI rollups at start when the data directory has none.",
    )
    ingest_workers: int = Field(
        default=1,
        ge=0,
        description="Processes that check large ingest batches beside the gateway (0: a thread "
        "of the server).",
    )
    upstream_timeout_s: float = Field(default=UPSTREAM_TIMEOUT_S, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)
    otlp_grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the OTLP/gRPC trace receiver (the collector's is 4317); None: off.",
    )
    otlp_grpc_host: str = Field(default=DEFAULT_HOST, description="Interface of OTLP/gRPC.")
    otlp_grpc_required: bool = Field(
        default=True,
        description="Fail to start when the OTLP/gRPC port cannot be bound (else log and go on).",
    )
    shadow_max_in_flight: int = Field(
        default=64, ge=0, description="Shadow copies beyond this many in flight are dropped."
    )


@dataclass(frozen=True)
class Serving:
    """What ``modelwarden serve`` runs: the settings (with the gateway auth asked for), the
    server's knobs, and a warning to show when the chat gateway is open to anyone."""

    settings: Settings
    config: ServerConfig
    warning: str | None


def serving(
    settings: Settings,
    host: str,
    *,
    allow_remote: bool = False,
    gateway_auth: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    flush_interval_s: float = FLUSH_INTERVAL_S,
    flush_early_records: int = FLUSH_EARLY_RECORDS,
    upstream_timeout_s: float = UPSTREAM_TIMEOUT_S,
    otlp_grpc_port: int = DEFAULT_GRPC_PORT,
    tick_interval_s: float = 15.0,
    ingest_workers: int = 1,
) -> Serving:
    """Check the serve options and build what the server runs with.

    A non-loopback ``host`` needs ``allow_remote``; an OTLP/gRPC port other than the default must
    be free at start (0 turns the receiver off).
    """
    check_host(host, allow_remote)
    if flush_interval_s <= 0 or upstream_timeout_s <= 0 or tick_interval_s <= 0:
        raise InputError(
            "--flush-interval, --upstream-timeout and --tick-interval must be positive"
        )
    config = ServerConfig(
        max_body_bytes=max_body_bytes,
        flush_interval_s=flush_interval_s,
        flush_early_records=flush_early_records,
        upstream_timeout_s=upstream_timeout_s,
        otlp_grpc_port=otlp_grpc_port or None,
        otlp_grpc_host=host,
        otlp_grpc_required=otlp_grpc_port != DEFAULT_GRPC_PORT,
        tick_interval_s=tick_interval_s,
        ingest_workers=ingest_workers,
    )
    if gateway_auth is not None:
        if gateway_auth not in ("off", "required"):
            raise InputError("--gateway-auth must be off or required", field="gateway_auth")
        settings = settings.model_copy(update={"gateway_auth": gateway_auth})
    warning = gateway_auth_warning(StateStore.of(settings), settings.gateway_auth)
    return Serving(settings, config, warning)
