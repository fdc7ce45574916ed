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
    print_table,
    settings,
)
from modelwarden.cli.render import (
    RESERVOIR_KIND_OPTION,
    RESERVOIR_PLANT_OPTION,
    emit,
    since_option,
    until_option,
)
from modelwarden.errors import EXIT_CHECK_FAILED

# The drift service is imported inside each command body: keeps --help fast.

baseline_app = typer.Typer(
    help="Reservoir-sampled drift baselines, kept up to date with windows judged OK.",
    no_args_is_help=True,
)
app.add_typer(baseline_app, name="baseline")

HISTORY_COLUMNS = [
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


def _print_history(rows: list[dict[str, Any]]) -> None:
    shown = [
        {
            **r,
            "window": r["window_start"][:10] + " .. " + r["window_end"][:10],
            "topics": "; ".join(", ".join(t.get("key_terms", [])[:3]) for t in r["topics"]),
        }
        for r in rows
    ]
    cols = [
        c for c in HISTORY_COLUMNS if c != "model_version" or any(r["model_version"] for r in rows)
    ]
    print_table(shown, cols, title="Drift history", headers={"model_version": "version"})


@app.command("drift-history")
@handle_errors
def drift_history(
    plant: str = typer.Option(None, "--plant", help="A plant, or 'all plants'."),
    version: str = typer.Option(None, "--version"),
    kind: str = typer.Option(None, "--kind", help="prompt, response or quality"),
    method: str = typer.Option(
        None, "--method", help="Only this method (a suite member's points too)."
    ),
    since: str = since_option("Windows starting at or after this date."),
    until: str = until_option("Windows ending at or before this date."),
    members: bool = typer.Option(False, "--members", help="Add the suite members' points."),
    format: Format = FORMAT_OPTION,
) -> None:
    """The stored drift results over time: one point per window, scope, baseline and method."""
    from modelwarden.drift import service  # imported here: keeps --help fast

    rows = service.drift_history(
        settings(),
        plant=plant,
        version=version,
        kind=kind,
        method=method,
        since=since,
        until=until,
        members=members,
    )
    emit(rows, format, lambda: _print_history(rows))


@baseline_app.command("update")
@handle_errors
def baseline_update(
    kind: str = typer.Option("prompt", "--kind", help="prompt or response"),
    plant: str = typer.Option(None, "--plant", help="Only this plant's reservoir."),
    since: str = since_option("First window (default: the first data)."),
    until: str = until_option(
        "Fold windows ending by this date (default: the last complete window)."
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
    from modelwarden.drift import service  # imported here: keeps --help fast

    rows = service.update_baseline(
        settings(),
        kind=kind,
        plant=plant,
        since=since,
        until=until,
        window=window,
        size=size,
        seed=seed,
        alpha=alpha,
    )

    def people() -> None:
        if rows:
            print_table(
                rows,
                [
                    "scope",
                    "kind",
                    "window",
                    "n",
                    "p_value",
                    "decision",
                    "reservoir_rows",
                    "left_out",
                ],
                title="Baseline update",
            )
        else:
            console.print("baselines are up to date: no complete window since the last update")

    emit(rows, format, people)
    if any(r["decision"] == "drifted" for r in rows):
        raise typer.Exit(EXIT_CHECK_FAILED)


@baseline_app.command("show")
@handle_errors
def baseline_show(format: Format = FORMAT_OPTION) -> None:
    """Every reservoir: rows kept and seen, windows folded and skipped, last update."""
    from modelwarden.drift import service  # imported here: keeps --help fast

    rows = service.baseline_rows(settings())
    emit(
        rows,
        format,
        lambda: print_table(
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
        ),
    )


@baseline_app.command("reset")
@handle_errors
def baseline_reset(
    kind: str = typer.Option("prompt", "--kind", help="prompt or response"),
    plant: str = typer.Option(None, "--plant", help="Default: the all-plants reservoir."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Delete a reservoir; the next update starts it again from the first window."""
    from modelwarden.drift import service  # imported here: keeps --help fast

    out = service.reset_baseline(settings(), kind, plant)
    emit(
        out,
        format,
        lambda: console.print(
            f"reset the {out['kind']} reservoir of {out['scope']} ({out['embedder']})"
        ),
    )


def _pin(kind: str, plant: str | None, pinned: bool, format: Format) -> None:
    from modelwarden.drift import service  # imported here: keeps --help fast

    out = service.pin_baseline(settings(), kind, plant, pinned)
    emit(
        out,
        format,
        lambda: console.print(
            f"{'pinned' if pinned else 'unpinned'} the {out['kind']} reservoir of "
            f"{out['scope']} ({out['embedder']})"
        ),
    )


@baseline_app.command("pin")
@handle_errors
def baseline_pin(
    kind: str = RESERVOIR_KIND_OPTION,
    plant: str = RESERVOIR_PLANT_OPTION,
    format: Format = FORMAT_OPTION,
) -> None:
    """Freeze a reservoir: updates leave it as it is until it is unpinned."""
    _pin(kind, plant, True, format)


@baseline_app.command("unpin")
@handle_errors
def baseline_unpin(
    kind: str = RESERVOIR_KIND_OPTION,
    plant: str = RESERVOIR_PLANT_OPTION,
    format: Format = FORMAT_OPTION,
) -> None:
    """Let updates change a pinned reservoir again."""
    _pin(kind, plant, False, format)
