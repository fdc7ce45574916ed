"""Defaults of the server's knobs, as plain values: the command line shows them in ``--help``
without importing pydantic or the server itself. :class:`~modelwarden.server.config.ServerConfig`
takes its defaults from here."""

from __future__ import annotations

from modelwarden.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8400
# OTLP/gRPC: the collector's port.
DEFAULT_GRPC_PORT = 4317
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

MAX_BODY_BYTES = 16 * 1024 * 1024
FLUSH_INTERVAL_S = 1.0
FLUSH_EARLY_RECORDS = 20_000
UPSTREAM_TIMEOUT_S = 60.0


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_host(host: str, allow_remote: bool) -> None:
    """A server (``serve``, ``fake-upstream``) listens on a non-loopback host only if allowed."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(
            f"--host {host} would accept connections from other machines; "
            "add --allow-remote if that is intended",
            field="host",
        )
