"""Serving commands: serve, compact, fake-upstream, routes show|set, keys create|list|revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    err_console,
    handle_errors,
    key_option,
    print_json,
    print_table,
    route_rows,
    settings,
    state_store,
)
from modelwarden.cli.options import output
from modelwarden.server import defaults
from modelwarden.server.defaults import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HOST,
    DEFAULT_PORT,
    check_host,
)

if TYPE_CHECKING:
    from modelwarden.store.state import StateStore

routes_app = typer.Typer(help="Show or change the gateway's route table.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys with roles for the HTTP API.", no_args_is_help=True)
app.add_typer(routes_app, name="routes")
app.add_typer(keys_app, name="keys")


def _state() -> StateStore:
    return state_store()


# ---- serve -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Interface to bind (loopback default)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --host (put TLS in front of it)."
    ),
    max_body_bytes: int = typer.Option(
        defaults.MAX_BODY_BYTES, "--max-body-bytes", min=1024, help="Larger bodies get 413."
    ),
    flush_interval: float = typer.Option(
        defaults.FLUSH_INTERVAL_S,
        "--flush-interval",
        help="Seconds between moves of acknowledged records from the spool into the log store.",
    ),
    flush_early: int = typer.Option(
        defaults.FLUSH_EARLY_RECORDS,
        "--flush-early",
        min=1,
        help="Move records into the store before the interval once this many wait.",
    ),
    upstream_timeout: float = typer.Option(
        defaults.UPSTREAM_TIMEOUT_S,
        "--upstream-timeout",
        help="Seconds the gateway waits for an upstream before it counts as failed.",
    ),
    otlp_grpc_port: int = typer.Option(
        DEFAULT_GRPC_PORT,
        "--otlp-grpc-port",
        min=0,
        max=65535,
        help="Port of the OTLP/gRPC trace receiver on --host (0: off). When the default port "
        "is taken the server starts without it; a port given here must be free.",
    ),
    ingest_workers: int = typer.Option(
        1,
        "--ingest-workers",
        min=0,
        help="Processes that parse and check large ingest batches beside the gateway, at a lower "
        "CPU priority (0: a thread of the server).",
    ),
    tick_interval: float = typer.Option(
        15.0,
        "--tick-interval",
        help="Seconds between ticks of the rollout controller and SOP policy (one instance ticks).",
    ),
    gateway_auth: str = typer.Option(
        None,
        "--gateway-auth",
        help="off (default): the chat gateway answers any client; required: every chat request "
        "needs a key (ingest, operator or admin). Also MODELWARDEN_GATEWAY_AUTH.",
        show_default=False,
    ),
    log_level: str = typer.Option("info", "--log-level"),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log"),
) -> None:
    """Run the HTTP API: ingest, KPIs, drift, reports, the gateway, routes and /metrics."""
    # imported here: keeps --help fast
    from modelwarden.server.app import create_app
    from modelwarden.server.config import serving
    from modelwarden.server.runner import serve_forever

    run = serving(
        settings(),
        host,
        allow_remote=allow_remote,
        gateway_auth=gateway_auth,
        max_body_bytes=max_body_bytes,
        flush_interval_s=flush_interval,
        flush_early_records=flush_early,
        upstream_timeout_s=upstream_timeout,
        otlp_grpc_port=otlp_grpc_port,
        tick_interval_s=tick_interval,
        ingest_workers=ingest_workers,
    )
    s = run.settings
    err_console.print(
        f"ModelWarden serving {s.data_dir} on http://{host}:{port} (OpenAPI at /openapi.json)"
        + (f"; OTLP/gRPC on {host}:{otlp_grpc_port}" if otlp_grpc_port else "")
        + f"; gateway auth {s.gateway_auth}"
    )
    if run.warning:
        err_console.print(f"[bold yellow]warning[/]: {run.warning}", highlight=False)
    serve_forever(create_app(s, run.config), host, port, log_level=log_level, access_log=access_log)


@app.command()
@handle_errors
def compact(
    kind: list[str] = typer.Option(
        None,
        "--kind",
        help="requests, feedback, escalations, rejected or embeddings (repeatable; default all).",
    ),
    min_files: int = typer.Option(
        2, "--min-files", min=2, help="Merge a directory only when it has at least this many files."
    ),
    grace: float = typer.Option(
        600.0,
        "--grace",
        min=0,
        help="Seconds superseded files stay on disk, outside the log root, for readers that listed them (0: delete now).",
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Merge each day partition's part files into one file (safe while `serve` runs)."""
    from modelwarden.ingest.service import compact_store

    result = compact_store(settings(), kind or None, min_files, grace)
    if format == Format.json:
        print_json(result)
    else:
        console.print(
            f"merged {result['files_in']} files into {result['files_out']} "
            f"in {result['directories']} directories ({result['rows']} rows); "
            f"deleted {result['retired']} merged files"
        )


@app.command("fake-upstream")
@handle_errors
def fake_upstream(
    port: int = typer.Option(..., "--port", min=1, max=65535),
    version: str = typer.Option(..., "--version", help="The model version it serves."),
    latency_ms: float = typer.Option(50.0, "--latency-ms", min=0),
    quality: str = typer.Option("good", "--quality", help="good, poor or unsafe answers."),
    error_rate: float = typer.Option(0.0, "--error-rate", min=0, max=1),
    unsafe_share: float = typer.Option(
        0.0, "--unsafe-share", min=0, max=1, help="Share of answers that are unsafe."
    ),
    poor_share: float = typer.Option(
        0.0, "--poor-share", min=0, max=1, help="Share of answers that are poor."
    ),
    seed: int = typer.Option(0, "--seed"),
    host: str = typer.Option(DEFAULT_HOST, "--host"),
    allow_remote: bool = typer.Option(False, "--allow-remote"),
) -> None:
    """Run an OpenAI-compatible model server that answers from the built-in corpus."""
    from modelwarden.gateway.fake_upstream import create_app
    from modelwarden.server.runner import serve_forever

    check_host(host, allow_remote)
    app = create_app(
        version,
        latency_ms,
        quality,
        error_rate,
        seed,
        unsafe_share=unsafe_share,
        poor_share=poor_share,
    )
    err_console.print(f"fake upstream {version} ({quality}) on http://{host}:{port}/v1")
    serve_forever(app, host, port, log_level="warning")


# ---- routes ------------------------------------------------------------------------------------
@routes_app.command("show")
@handle_errors
def routes_show(
    history: bool = typer.Option(False, "--history", help="Every version, newest first."),
    format: Format = FORMAT_OPTION,
) -> None:
    """The live route table (or its history)."""
    from modelwarden.governance import service

    if history:
        tables = service.routes_history(_state(), 1000)
        output(tables, format, lambda: _print_route_history(tables))
        return
    data = service.routes_now(_state())
    if format == Format.json:
        print_json(data)
    elif data is None:
        console.print("no routes are set; set them with: modelwarden routes set --stable V=URL")
    else:
        print_table(
            route_rows(data),
            title=f"Routes (version {data['version']}, set "
            f"{data['created_at']} by {data['created_by'] or '—'})",
        )


def _print_route_history(tables: list[dict[str, Any]]) -> None:
    print_table(
        [
            {
                "version": t["version"],
                "set at": t["created_at"],
                "by": t["created_by"],
                "stable": t["stable"]["version"],
                "canary": f"{t['canary']['version']} {t['canary_weight']:g}%"
                if t["canary"]
                else None,
                "shadow": t["shadow"]["version"] if t["shadow"] else None,
            }
            for t in tables
        ],
        title="Route history",
    )


@routes_app.command("set")
@handle_errors
def routes_set(
    stable: str = typer.Option(
        None, "--stable", help="VERSION=URL; default: the live stable version."
    ),
    canary: str = typer.Option(None, "--canary", help="VERSION=URL of the canary."),
    weight: float = typer.Option(None, "--weight", help="Percent of users on the canary (0-100)."),
    plants: str = typer.Option(None, "--plants", help="Comma list of plants the canary serves."),
    shadow: str = typer.Option(None, "--shadow", help="VERSION=URL that gets shadow copies."),
    shadow_sample: float = typer.Option(
        None, "--shadow-sample", help="Share of requests copied to the shadow (0-1, default 1)."
    ),
    note: str = typer.Option(None, "--note", help="Why (kept in the history)."),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Replace the route table; what is not stated is off (so --stable alone rolls back).

    A table that names a quarantined version is refused; every change goes to the audit log,
    under the key's name when --key is given (else the local user's).
    """
    from modelwarden.governance import service

    opts = service.RouteOptions(stable, canary, weight, plants, shadow, shadow_sample, note)
    table = service.set_routes_with_key(_state(), key, opts)
    output(
        table,
        format,
        lambda: print_table(route_rows(table), title=f"Routes set (version {table['version']})"),
    )


# ---- keys --------------------------------------------------------------------------------------
@keys_app.command("create")
@handle_errors
def keys_create(
    role: str = typer.Option(..., "--role", help="ingest, operator, reviewer, approver or admin"),
    name: str = typer.Option(None, "--name", help="Who or what uses it."),
    plant: str = typer.Option(None, "--plant", help="Bind the key to one plant."),
    per_minute: int = typer.Option(None, "--per-minute", help="Request budget per minute."),
    per_hour: int = typer.Option(None, "--per-hour", help="Request budget per hour."),
    admin_key: str = typer.Option(
        None,
        "--key",
        envvar="MODELWARDEN_KEY",
        help="An admin key; needed for roles above ingest once an admin key exists.",
        show_default=False,
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Create an API key; it is printed once and only its hash is kept.

    The first admin key is made here, on the machine, without a key; after that, roles above
    ingest need an admin key (--key).
    """
    from modelwarden.governance import service

    secret, key = service.create_key(
        _state(), role, name, plant, by=admin_key, per_minute=per_minute, per_hour=per_hour
    )
    if format == Format.json:
        print_json({"key": secret, **key.to_dict()})
        return
    console.print(f"API key {key.id} ({key.role}{', ' + key.plant_id if key.plant_id else ''}):")
    print(secret)
    err_console.print("Keep it now: it is not shown again. Send it as 'Authorization: Bearer KEY'.")


@keys_app.command("list")
@handle_errors
def keys_list(format: Format = FORMAT_OPTION) -> None:
    """Every key (never the secret): id, name, role, plant, created, revoked."""
    from modelwarden.governance import service

    keys = service.list_keys(_state())
    output(
        keys,
        format,
        lambda: print_table(
            keys,
            ["id", "name", "role", "plant_id", "prefix", "created_at", "revoked_at"],
            title="API keys",
        ),
    )


@keys_app.command("revoke")
@handle_errors
def keys_revoke(
    key_id: int = typer.Argument(..., help="The key's id (keys list)."),
    admin_key: str = typer.Option(
        None,
        "--key",
        envvar="MODELWARDEN_KEY",
        help="An admin key; needed once an admin key exists.",
        show_default=False,
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Revoke a key; a running server stops accepting it within a second."""
    from modelwarden.governance import service

    key = service.revoke_key(_state(), key_id, admin_key)
    output(key, format, lambda: console.print(f"revoked key {key['id']} ({key['role']})"))
