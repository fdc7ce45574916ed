"""Drift history and the reservoir baselines: drift-history, baseline update|show|reset|pin|unpin."""

from __future__ import annotations

from typing import Any

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    handle_errors,
    print_json,
    print_table,
    settings,
)
from modelwarden.errors import InputError, NotFoundError

baseline_app = typer.Typer(
    help="Reservoir-sampled drift baselines, kept up to date with windows judged OK.",
    no_args_is_help=True,
)
app.add_typer(baseline_app, name="baseline")


def _time(value: str | None, field: str) -> Any:
    from modelwarden.windows import parse_time

    return parse_time(value, field) if value else None


@app.command("drift-history")
@handle_errors
def drift_history(
    plant: str = typer.Option(None, "--plant", help="A plant, or 'all plants'."),
    version: str = typer.Option(None, "--version"),
    kind: str = typer.Option(None, "--kind", help="prompt, response or quality"),
    method: str = typer.Option(
        None, "--method", help="Only this method (a suite member's points too)."
    ),
    since: str = typer.Option(None, "--since", help="Windows starting at or after this date."),
    until: str = typer.Option(None, "--until", help="Windows ending at or before this date."),
    members: bool = typer.Option(False, "--members", help="Add the suite members' points."),
    format: Format = FORMAT_OPTION,
) -> None:
    """The stored drift results over time: one point per window, scope, baseline and method."""
    from modelwarden.drift.history import read_history

    if kind is not None and kind not in ("prompt", "response", "quality"):
        raise InputError("kind must be prompt, response or quality", field="kind")
    rows = read_history(
        settings(),
        plant=plant,
        version=version,
        kind=kind,
        method=method,
        since=_time(since, "since"),
        until=_time(until, "until"),
        members=members,
    )
    if format == Format.json:
        print_json(rows)
        return
    shown = [
        {
            **r,
            "window": r["window_start"][:10] + " .. " + r["window_end"][:10],
            "topics": "; ".join(", ".join(t.get("key_terms", [])[:3]) for t in r["topics"]),
        }
        for r in rows
    ]
    cols = [
        "window",
        "kind",
        "signal",
        "scope",
        "model_version",
        "baseline",
        "method",
        "statistic",
        "p_value",
        "threshold",
        "status",
        "topics",
    ]
    if not any(r["model_version"] for r in rows):
        cols.remove("model_version")
    print_table(shown, cols, title="Drift history", headers={"model_version": "version"})


@baseline_app.command("update")
@handle_errors
def baseline_update(
    kind: str = typer.Option("prompt", "--kind", help="prompt or response"),
    plant: str = typer.Option(None, "--plant", help="Only this plant's reservoir."),
    since: str = typer.Option(None, "--since", help="First window (default: the first data)."),
    until: str = typer.Option(
        None,
        "--until",
        help="Fold windows ending by this date (default: the last complete window).",
    ),
    window: str = typer.Option("week", "--window", help="day or week"),
    size: int = typer.Option(2000, "--size", min=20, help="Rows kept by a new reservoir."),
    seed: int = typer.Option(0, "--seed", min=0),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0001, max=0.5),
    format: Format = FORMAT_OPTION,
) -> None:
    """Fold the windows since the last update into the reservoirs, if the suite finds them OK.

    A window that drifted against the reservoir is skipped and listed, so the baseline never
    absorbs a drift; exit 1 when a window was skipped for drift.
    """
    from modelwarden.drift.baseline import update_baselines
    from modelwarden.errors import EXIT_CHECK_FAILED

    rows = update_baselines(
        settings(),
        kind=kind,
        plant=plant,
        since=_time(since, "since"),
        until=_time(until, "until"),
        window=window,
        size=size,
        seed=seed,
        alpha=alpha,
    )
    if format == Format.json:
        print_json(rows)
    elif rows:
        print_table(
            rows,
            ["scope", "kind", "window", "n", "p_value", "decision", "reservoir_rows", "left_out"],
            title="Baseline update",
        )
    else:
        console.print("baselines are up to date: no complete window since the last update")
    if any(r["decision"] == "drifted" for r in rows):
        raise typer.Exit(EXIT_CHECK_FAILED)


@baseline_app.command("show")
@handle_errors
def baseline_show(format: Format = FORMAT_OPTION) -> None:
    """Every reservoir: rows kept and seen, windows folded and skipped, last update."""
    from modelwarden.drift.baseline import baseline_rows

    rows = baseline_rows(settings())
    if format == Format.json:
        print_json(rows)
        return
    print_table(
        [{**r, "skipped": ", ".join(r["skipped"])} for r in rows],
        [
            "scope",
            "kind",
            "embedder",
            "rows",
            "rows_seen",
            "windows_folded",
            "folded_through",
            "skipped",
            "pinned",
            "updated_at",
        ],
        title="Drift baselines (reservoirs)",
    )


def _scope(plant: str | None) -> str:
    from modelwarden.drift.history import ALL_PLANTS

    return plant or ALL_PLANTS


@baseline_app.command("reset")
@handle_errors
def baseline_reset(
    kind: str = typer.Option("prompt", "--kind", help="prompt or response"),
    plant: str = typer.Option(None, "--plant", help="Default: the all-plants reservoir."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Delete a reservoir; the next update starts it again from the first window."""
    from modelwarden.drift.history import check_kind, delete_reservoir, reservoir_lock
    from modelwarden.embed.service import embedder_key

    s = settings()
    check_kind(kind)
    name = embedder_key(s, None)
    with reservoir_lock(s):
        found = delete_reservoir(s, _scope(plant), kind, name)
    if not found:
        raise NotFoundError(f"no reservoir for {_scope(plant)} ({kind}, {name})", field="plant")
    out = {"scope": _scope(plant), "kind": kind, "embedder": name, "reset": True}
    print_json(out) if format == Format.json else console.print(
        f"reset the {kind} reservoir of {_scope(plant)} ({name})"
    )


def _pin(kind: str, plant: str | None, pinned: bool, format: Format) -> None:
    from modelwarden.drift.history import check_kind, set_pinned
    from modelwarden.embed.service import embedder_key

    s = settings()
    check_kind(kind)
    name = embedder_key(s, None)
    set_pinned(s, _scope(plant), kind, name, pinned)
    out = {"scope": _scope(plant), "kind": kind, "embedder": name, "pinned": pinned}
    print_json(out) if format == Format.json else console.print(
        f"{'pinned' if pinned else 'unpinned'} the {kind} reservoir of {_scope(plant)} ({name})"
    )


@baseline_app.command("pin")
@handle_errors
def baseline_pin(
    kind: str = typer.Option("prompt", "--kind"),
    plant: str = typer.Option(None, "--plant"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Freeze a reservoir: updates leave it as it is until it is unpinned."""
    _pin(kind, plant, True, format)


@baseline_app.command("unpin")
@handle_errors
def baseline_unpin(
    kind: str = typer.Option("prompt", "--kind"),
    plant: str = typer.Option(None, "--plant"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Let updates change a pinned reservoir again."""
    _pin(kind, plant, False, format)
