"""Core commands: ingest, rejected, embed, simulate, kpis, drift, report, status, demo."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    TabularFormat,
    app,
    console,
    err_console,
    handle_errors,
    key_option,
    print_csv,
    print_json,
    print_table,
    progress_bar,
    settings,
    state_store,
)
from modelwarden.cli.render import emit, stage_bar
from modelwarden.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED

# Services are imported inside each command body: keeps --help fast.


# ---- ingest ------------------------------------------------------------------------------------
class KindChoice(StrEnum):
    requests = "requests"
    feedback = "feedback"
    escalations = "escalations"


def _print_ingest(report: dict[str, Any]) -> None:
    print_table(
        [
            {
                "kind": report["kind"],
                "read": report["read"],
                "accepted": report["accepted"],
                "duplicates": report["duplicates"],
                "rejected": report["rejected"],
                "embeddings stored": report["embeddings_stored"],
            }
        ],
        title="Ingest",
    )
    if report["duplicates"]:
        console.print(
            f"{report['duplicates']} record(s) were already stored and were not added again."
        )
    if report["first_rejections"]:
        print_table(
            [
                {
                    "source": r["source"],
                    "where": r["location"],
                    "field": r["field"],
                    "reason": r["reason"],
                }
                for r in report["first_rejections"]
            ],
            title="First rejected records (all are kept: modelwarden rejected)",
        )


@app.command()
@handle_errors
def ingest(
    paths: list[str] = typer.Argument(
        ..., help="JSONL, CSV or Parquet files; - reads JSONL from stdin."
    ),
    kind: KindChoice = typer.Option(KindChoice.requests, "--kind", "-k"),
    embed: bool = typer.Option(False, "--embed", help="Embed prompts that arrive without vectors."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Validate and store records. Bad records are kept with their reasons; exit 2 if any."""
    from modelwarden.ingest.service import ingest_files  # imported here: keeps --help fast

    with stage_bar(f"ingesting {kind.value}", enabled=format == Format.table) as bar:
        out = ingest_files(
            settings(),
            paths,
            kind.value,
            embed=embed,
            progress=bar.advance,
            on_total=bar.total,
            on_stage=bar.stage,
        )
    emit(out, format, lambda: _print_ingest(out))
    if out["rejected"]:
        err_console.print(
            f"[bold red]error[/]: {out['rejected']} record(s) rejected and kept with their reasons; "
            "list them with: modelwarden rejected"
        )
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
@handle_errors
def rejected(
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    source: str = typer.Option(None, "--source", help="Only records from this file."),
    format: Format = FORMAT_OPTION,
) -> None:
    """List rejected records with their file, line or row, field and reason."""
    from modelwarden.ingest.service import rejected as rejected_records  # keeps --help fast

    rows = rejected_records(settings(), limit=limit, source=source)
    if format == Format.json:
        print_json(rows)
        return
    print_table(
        [
            {
                "rejected at": f"{r['rejected_at']:%Y-%m-%d %H:%M:%S}",
                "kind": r["kind"],
                "source": r["source"],
                "where": r["location"],
                "key": r["record_key"],
                "field": r["field"],
                "reason": r["reason"],
            }
            for r in rows
        ],
        title="Rejected records",
    )


# ---- embed -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def embed(
    kind: str = typer.Option("prompt", "--kind", help="prompt, response or all"),
    since: str = typer.Option(None, "--since"),
    until: str = typer.Option(None, "--until"),
    format: Format = FORMAT_OPTION,
) -> None:
    """Embed stored requests that have no vector from the current embedder yet."""
    # imported here: keeps --help fast
    from modelwarden.embed.service import embed_kinds
    from modelwarden.windows import parse_time

    lo = parse_time(since, "since") if since else None
    hi = parse_time(until, "until") if until else None
    with stage_bar(f"embedding {kind}s", enabled=format == Format.table) as bar:
        done = embed_kinds(
            settings(), kind, lo, hi, progress=bar.advance, on_total=bar.total, on_stage=bar.stage
        )
    reports = [r.to_dict() for r in done]
    emit(reports, format, lambda: print_table(reports, title="Embeddings"))


# ---- simulate ----------------------------------------------------------------------------------
@app.command()
@handle_errors
def simulate(
    days: int = typer.Option(28, "--days", min=1, max=3660),
    seed: int = typer.Option(0, "--seed"),
    scenario: str = typer.Option(
        "stable", "--scenario", help="stable, drift, incident, or a comma list (drift,incident)"
    ),
    end: str = typer.Option(
        None, "--end", help="End (exclusive), default Monday 00:00 UTC this week"
    ),
    scale: float = typer.Option(1.0, "--scale", help="Multiply the traffic volume."),
    out: Path = typer.Option(None, "--out", help="Write requests JSONL here (events beside it)."),
    ingest_: bool = typer.Option(False, "--ingest", help="Store the traffic directly."),
    to_gateway: str = typer.Option(
        None,
        "--to-gateway",
        help="Send live traffic to this gateway (http://127.0.0.1:8400) instead: plant "
        "operators asking through the OpenAI client, with user ids and X-Plant-Id.",
    ),
    rate: float = typer.Option(5.0, "--rate", min=0.01, help="--to-gateway: requests a second."),
    duration: float = typer.Option(
        60.0, "--duration", min=0.1, help="--to-gateway: seconds to send for."
    ),
    key: str = typer.Option(
        None, "--key", envvar="MODELWARDEN_KEY", help="--to-gateway: an API key (ingest role)."
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Generate realistic plant traffic (deterministic for a seed and end), or send it live to a
    running gateway with --to-gateway URL --rate N."""
    from modelwarden.ingest.service import simulate_traffic  # imported here: keeps --help fast

    if to_gateway is not None:
        _simulate_live(to_gateway, rate, duration, key, seed, format)
        return
    summary = simulate_traffic(
        settings(),
        days=days,
        seed=seed,
        scenario=scenario,
        end=end,
        scale=scale,
        out=out,
        store=ingest_,
    )
    if format == Format.json:
        print_json(summary)
    else:
        print_table(
            [{k: v for k, v in summary.items() if k not in ("files", "ingested")}],
            title="Simulated traffic",
        )
        for f in summary.get("files", []):
            console.print(f"wrote {f}")
        if "ingested" in summary:
            print_table(summary["ingested"], title="Stored")


# ---- kpis --------------------------------------------------------------------------------------
KPI_HEADERS = {
    "window_start": "window",
    "plant_id": "plant",
    "model_version": "version",
    "latency_avg_ms": "avg ms",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
    "latency_p99_ms": "p99 ms",
    "feedback_avg": "feedback",
    "feedback_n": "rated",
    "safety_incidents": "safety",
    "safety_rate": "safety rate",
    "errors": "errors",
    "escalations_confirmed": "escalations",
    "requests_change_pct": "Δ req %",
    "latency_p95_change_pct": "Δ p95 %",
    "feedback_avg_change": "Δ feedback",
    "safety_rate_change_pp": "Δ safety pp",
}


def _simulate_live(
    url: str, rate: float, duration: float, key: str | None, seed: int, format: Format
) -> None:
    from modelwarden.simulate.service import send_live  # imported here: keeps --help fast

    if format == Format.table and url.startswith(("http://", "https://")):
        console.print(f"sending {rate:g} requests a second to {url} for {duration:g} s")
    res = send_live(url, rate, duration, api_key=key, seed=seed)

    def people() -> None:
        title = f"{res['ok']} answered, {res['failed']} failed in {res['seconds']:.1f} s"
        print_table(res["by"], title=title)
        console.print(f"{res['feedback']} feedback events sent")
        for e in res["errors"]:
            err_console.print(f"[red]failed[/]: {e}", highlight=False)

    emit(res, format, people)
    if res["ok"] == 0:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command()
@handle_errors
def kpis(
    since: str = typer.Option(None, "--since", help="ISO date or time (inclusive)."),
    until: str = typer.Option(None, "--until", help="ISO date or time (exclusive)."),
    window: str = typer.Option("week", "--window", help="day, week or all"),
    by: str = typer.Option(
        "plant_id", "--by", help="Comma list of plant_id, model_version, route."
    ),
    include_shadow: bool = typer.Option(False, "--include-shadow"),
    format: TabularFormat = typer.Option(TabularFormat.table, "--format", "-f"),
) -> None:
    """KPIs per window and group: latency avg/p50/p95/p99, feedback, safety, escalations."""
    from modelwarden.kpi.service import kpi_table  # imported here: keeps --help fast

    kt = kpi_table(settings(), since, until, window, by, include_shadow)
    rows, cols = kt.rows, kt.columns
    if format == TabularFormat.json:
        print_json(rows)
    elif format == TabularFormat.csv:
        print_csv(rows, cols)
    else:
        shown = [
            {**r, "window_start": (f"{r['window_start']:%Y-%m-%d}" if r["window_start"] else "all")}
            for r in rows
        ]
        print_table(
            shown,
            [
                c
                for c in cols
                if c
                not in ("latency_p50_ms", "errors", "requests_change_pct", "latency_p95_change_pct")
            ],
            title="KPIs",
            headers=KPI_HEADERS,
        )


# ---- drift ----


DRIFT_COLUMNS = [
    "scope",
    "model_version",
    "signal",
    "method",
    "score",
    "p_value",
    "p_adjusted",
    "threshold",
    "n_baseline",
    "n_current",
    "status",
]


def print_drift_rows(rows: list[dict[str, Any]], title: str) -> None:
    """The drift table, with the version and signal columns only when some row has one."""
    cols = [
        c
        for c in DRIFT_COLUMNS
        if c not in ("model_version", "signal", "p_adjusted") or any(r.get(c) for r in rows)
    ]
    print_table(
        rows, cols, title=title, headers={"model_version": "version", "p_adjusted": "p (BH)"}
    )
    for r in rows:
        where = r["scope"] + (f" / {r['model_version']}" if r.get("model_version") else "")
        if r.get("note"):
            console.print(f"  {where}: {r['note']}", highlight=False)
        for t in (r.get("explanation") or {}).get("topics", []):
            console.print(
                f"  {where}: {t['status']} topic {', '.join(t['key_terms'][:4])} — "
                f"{t['share_baseline'] * 100:.1f}% → {t['share_current'] * 100:.1f}% "
                f"(e.g. “{(t['examples'] or [''])[0]}”)",
                highlight=False,
            )
        detail = r.get("detail") or {}
        if r["status"] == "ALERT" and detail.get("alarm_day"):
            console.print(
                f"  {where}: {r['signal']} CUSUM alarm on {detail['alarm_day']} "
                f"(change began {detail.get('change_day')})",
                highlight=False,
            )


@app.command()
@handle_errors
def drift(
    baseline: str = typer.Option(
        None,
        "--baseline",
        help="Window (2026-W43..2026-W45, dates), a file (.npy, .parquet, "
        ".jsonl) or 'reservoir' (see modelwarden baseline).",
    ),
    current: str = typer.Option(None, "--current", help="Window (2026-W46, dates) or a file."),
    plant: str = typer.Option(None, "--plant"),
    version: str = typer.Option(None, "--version", help="Only this model version's traffic."),
    by: str = typer.Option(
        "plant_id",
        "--by",
        help="Rows besides the overall one: plant_id, model_version, "
        "plant_id,model_version, or '' for the overall row only.",
    ),
    kind: str = typer.Option(
        "prompt",
        "--kind",
        help="prompt or response embeddings, or quality (feedback and safety rates)",
    ),
    method: str = typer.Option(
        "suite",
        "--method",
        help="suite (default), mmd, classifier, clusters, centroid_cosine, "
        "centroid_euclidean, or seed (the notebook's fixed threshold)",
    ),
    alpha: float = typer.Option(
        0.05, "--alpha", min=0.0001, max=0.5, help="False alarm rate of the calibrated tests."
    ),
    threshold: float = typer.Option(0.02, "--threshold", help="Only for --method seed."),
    format: Format = FORMAT_OPTION,
) -> None:
    """Drift between two windows or files, overall and per plant or version. Exit 1 on an alert.

    Window runs are stored in the drift history (modelwarden drift-history); a re-run of the
    same window replaces its points.
    """
    from modelwarden.drift.service import run_drift  # imported here: keeps --help fast

    with progress_bar("embedding", enabled=format == Format.table) as bar:
        run = run_drift(
            settings(),
            baseline,
            current,
            plant=plant,
            version=version,
            by=by,
            kind=kind,
            method=method,
            alpha=alpha,
            threshold=threshold,
            files=True,
            progress=bar.advance,
            on_total=bar.total,
        )
    emit(run.rows, format, lambda: print_drift_rows(run.rows, run.title))
    if run.alert:
        raise typer.Exit(EXIT_CHECK_FAILED)


# ---- report ------------------------------------------------------------------------------------
class ReportFormat(StrEnum):
    md = "md"
    html = "html"
    json = "json"


report_app = typer.Typer(
    help="Write the weekly governance report; `report send` delivers it, `report schedule` says "
    "when serve sends the next one.",
    invoke_without_command=True,
)
app.add_typer(report_app, name="report")


@report_app.callback()
@handle_errors
def report(
    ctx: typer.Context,
    week: str = typer.Option(
        None, "--week", help="ISO week, e.g. 2026-W47 (default: latest complete)."
    ),
    format: ReportFormat = typer.Option(ReportFormat.md, "--format", "-f"),
    out: Path = typer.Option(None, "--out", help="Where to write it (default DATA/reports/)."),
) -> None:
    """Write the weekly governance report (Markdown, HTML with trend charts, or JSON)."""
    if ctx.invoked_subcommand is not None:
        return
    from modelwarden.report.service import write_weekly  # imported here: keeps --help fast

    with progress_bar("embedding for drift", enabled=True) as bar:
        path = write_weekly(
            settings(), week, out, format.value, progress=bar.advance, on_total=bar.total
        )
    console.print(f"wrote {path}")


@report_app.command("send")
@handle_errors
def report_send(
    week: str = typer.Option(
        None, "--week", help="ISO week, e.g. 2026-W47 (default: latest complete)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Send a week that was already sent (by hand or by the schedule)."
    ),
    key: str = key_option(),
    format: Format = FORMAT_OPTION,
) -> None:
    """Build the weekly pack now (HTML and PDF under DATA/reports/) and deliver it.

    It goes to the report_delivery targets. A week already sent is refused unless --force.

    Exit 0 when every target took it; 1 when a delivery failed (it stays in the outbox, and
    serve or `incidents notify` retries it).
    """
    from modelwarden.report.service import send_weekly  # imported here: keeps --help fast

    s = settings()
    with progress_bar("embedding for drift", enabled=format == Format.table) as bar:
        res = send_weekly(
            s,
            state_store(),
            week,
            force=force,
            key=key,
            progress=bar.advance,
            on_total=bar.total,
        )
    if format == Format.json:
        print_json(res.to_dict())
    else:
        console.print(f"[bold]{res.headline}[/]", highlight=False)
        console.print(f"files: {res.files['html']}, {res.files['pdf']}", highlight=False)
        console.print(f"link: {res.link}", highlight=False)
        shown = {d["channel"]: d["target"] for d in res.targets}
        print_table(
            [
                {
                    "channel": d["channel"],
                    "target": shown.get(d["channel"], ""),
                    "status": d["status"],
                    "attempts": d["attempts"],
                    "error": d["last_error"],
                }
                for d in res.deliveries
            ],
            title=f"Weekly pack {res.week} ({res.event_id})",
        )
    if any(d["status"] != "sent" for d in res.deliveries):
        raise typer.Exit(EXIT_CHECK_FAILED)


@report_app.command("schedule")
@handle_errors
def report_schedule(format: Format = FORMAT_OPTION) -> None:
    """When serve sends the next weekly pack, where it goes, and the weeks already sent."""
    from modelwarden.report.service import schedule_status  # imported here: keeps --help fast

    info = schedule_status(settings(), state=state_store())
    if format == Format.json:
        print_json(info)
        return
    owed = (
        f"{info['owed_week']} (due since {info['owed_since']:%Y-%m-%d %H:%M} UTC; "
        + ("serve sends it at its next check)" if info["enabled"] else "no targets to send to)")
        if info["owed_week"]
        else "none"
    )
    rows = [
        {"item": "schedule", "value": info["schedule"]},
        {
            "item": "targets",
            "value": ", ".join(f"{t['channel']} {t['target']}" for t in info["targets"])
            or "none: set report_delivery (serve sends nothing)",
        },
        {"item": "link base", "value": f"{info['public_url'].rstrip('/')}/reports/<week>"},
        {
            "item": "last sent",
            "value": f"{info['last_sent_week']} at {info['last_sent_at']:%Y-%m-%d %H:%M} UTC "
            f"({info['last_trigger']})"
            if info["last_sent_week"]
            else "never",
        },
        {"item": "owed now", "value": owed},
        {
            "item": "next",
            "value": f"{info['next_week']} at {info['next_due_local']:%a %Y-%m-%d %H:%M %Z} "
            f"({info['next_due_at']:%Y-%m-%d %H:%M} UTC)",
        },
    ]
    print_table(rows, title="Weekly pack schedule")


# ---- status ------------------------------------------------------------------------------------
@app.command()
@handle_errors
def status(format: Format = FORMAT_OPTION) -> None:
    """What the data directory holds."""
    from modelwarden.ingest.service import data_status  # imported here: keeps --help fast

    info = data_status(settings())
    if format == Format.json:
        print_json(info)
    else:
        rows = [
            {"item": k, "value": json.dumps(v, default=str) if isinstance(v, dict) else v}
            for k, v in info.items()
        ]
        print_table(rows, title="ModelWarden data")


# ---- demo --------------------------------------------------------------------------------------
@app.command()
@handle_errors
def demo(
    days: int = typer.Option(28, "--days", min=14, max=365),
    seed: int = typer.Option(7, "--seed"),
    format: Format = FORMAT_OPTION,
) -> None:
    """The closed loop in compressed time: plant traffic through the real gateway, a bad canary
    rolled back by the SOP, notified, quarantined, re-validated, approved by a second person and
    released again; then the weekly report. Starts from an empty data directory."""
    # imported here: keeps --help fast
    from rich.markup import escape

    from modelwarden.demo.service import DemoOptions, run_demo

    s = settings()
    people = format == Format.table
    if people:
        console.print(f"[bold]ModelWarden demo[/] — data in {s.data_dir}")
        console.print("[dim]simulated time (UTC) · step · what happened[/]")

    def show(step: Any) -> None:
        if people:
            style = STEP_STYLES.get(step.kind, "bold")
            console.print(
                f"{step.at:%a %d %b %H:%M}  [{style}]{step.kind:<10}[/] {escape(step.title)}",
                highlight=False,
            )

    with progress_bar(
        f"embedding prompts ({s.embedder})", enabled=people and s.embedder == "minilm"
    ) as bar:
        res = run_demo(
            s,
            DemoOptions(days=days, seed=seed),
            on_step=show,
            embed_progress=bar.advance,
            embed_total=bar.total,
        )
    if not people:
        print_json(res.to_dict())
        return
    rep = res.report
    rows = [
        {
            k: p[k]
            for k in (
                "plant_id",
                "requests",
                "latency_avg_ms",
                "latency_p95_ms",
                "feedback_avg",
                "safety_incidents",
                "escalations_confirmed",
            )
        }
        for p in rep.plants
    ]
    print_table(rows, title=f"Weekly KPIs {rep.week}", headers=KPI_HEADERS)
    if rep.findings:
        console.print("[bold]Findings[/]")
        for f in rep.findings:
            console.print(f"  • {f}", highlight=False)
    console.print(f"drift status: [bold]{rep.drift_status}[/]")
    console.print(
        f"[bold green]report written to {res.report_paths[0]}[/] in {res.seconds:.0f} s",
        highlight=False,
    )


STEP_STYLES = {
    "trip": "bold red",
    "routes": "bold green",
    "quarantine": "bold yellow",
    "incident": "bold magenta",
    "notify": "cyan",
    "approve": "bold blue",
    "release": "bold green",
    "no_rollback": "bold red",
}


rollups_app = typer.Typer(
    help="Daily KPI rollups the console's overview reads (kept current by ingest).",
    no_args_is_help=True,
)
app.add_typer(rollups_app, name="rollups")


@rollups_app.command("rebuild")
@handle_errors
def rollups_rebuild(format: Format = FORMAT_OPTION) -> None:
    """Recompute the daily rollups from every stored record (ingest waits meanwhile)."""
    from modelwarden.kpi.service import rebuild_rollups  # imported here: keeps --help fast

    rep = rebuild_rollups(settings())
    if format == Format.json:
        print_json(rep)
    else:
        console.print(
            f"rebuilt {rep['rows']} daily rollups ({rep['latency_rows']} latency buckets) over "
            f"{rep['requests']:,} requests in {rep['seconds']:.1f} s"
        )
