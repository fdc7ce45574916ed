"""Knobs of the HTTP server and the gateway; everything else comes from :class:`Settings`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from modelwarden.server.defaults import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    FLUSH_EARLY_RECORDS,
    FLUSH_INTERVAL_S,
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    UPSTREAM_TIMEOUT_S,
    is_loopback,
)

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "ServerConfig",
    "is_loopback",
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
