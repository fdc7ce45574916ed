"""Knobs of the HTTP server and the gateway; everything else comes from :class:`Settings`."""

from __future__ import annotations

from pydantic import BaseModel, Field

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8400
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class ServerConfig(BaseModel):
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    max_batch_records: int = Field(default=100_000, ge=1)
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="How often acknowledged records move into the log store."
    )
    flush_early_records: int = Field(
        default=20_000, ge=1, description="Move records into the store sooner once this many wait."
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
    upstream_timeout_s: float = Field(default=60.0, gt=0)
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_max_connections: int = Field(default=512, ge=1)
    shadow_max_in_flight: int = Field(
        default=64, ge=0, description="Shadow copies beyond this many in flight are dropped."
    )


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
