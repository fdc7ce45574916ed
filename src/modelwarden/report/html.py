"""The weekly report as one self-contained HTML page with trend charts (no network, no browser).

Charts are rendered by matplotlib's Agg backend to PNG and embedded as data URIs, so the page can
be mailed or archived as a single file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import timedelta
from typing import Any

from markdown_it import MarkdownIt

from modelwarden.report.sop import markdown_lines as sop_markdown
from modelwarden.report.weekly import (
    DRIFT_SCORE_NOTE,
    WeeklyReport,
    headline,
    n_text,
    render_markdown,
)

TREND_METRICS = (
    ("latency_p95_ms", "P95 latency (ms)"),
    ("feedback_avg", "Average feedback (1-5)"),
    ("safety_rate", "Safety incident rate"),
)


def _chart(trend: list[dict[str, Any]], metric: str, title: str) -> str:
    # lazy: matplotlib is slow to import and needs its Agg backend chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=110)
    plants = sorted({r["plant_id"] for r in trend})
    for plant in plants:
        rows = sorted((r for r in trend if r["plant_id"] == plant), key=lambda r: r["window_start"])
        xs = [r["window_start"].strftime("%m-%d") for r in rows]
        ys = [r[metric] if r[metric] is not None else float("nan") for r in rows]
        ax.plot(xs, ys, marker="o", label=plant)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if isinstance(v, float):
                text = (
                    f"{v * 100:.1f}%"
                    if key == "safety_rate"
                    else f"{v:.4f}"
                    if key in ("p_value", "p_adjusted")
                    else f"{v:.4g}"
                    if key in ("score", "threshold", "statistic", "seed_score")
                    else f"{v:,.2f}"
                )
            elif key in ("n_baseline", "n_current"):
                text = n_text(r, key.removeprefix("n_"))
            else:
                text = "—" if v is None else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _drift_chart(trend: list[dict[str, Any]], kind: str, alpha: float) -> str:
    """-log10 of the suite's p-value per week and scope, with the line where it alerts."""
    # lazy: as in _chart
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [t for t in trend if t["kind"] == kind and t["p_value"] is not None]
    weeks = sorted({t["week"] for t in rows})
    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=110)
    for scope in sorted({t["scope"] for t in rows}):
        by_week = {t["week"]: t["p_value"] for t in rows if t["scope"] == scope}
        ys = [-math.log10(max(by_week[w], 1e-300)) if w in by_week else float("nan") for w in weeks]
        ax.plot(weeks, ys, marker="o", label=scope)
    ax.axhline(-math.log10(alpha), color="#900", linestyle="--", linewidth=1, label=f"α = {alpha}")
    ax.set_title(f"{kind.capitalize()} drift: -log10 p (suite)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _drift_more(rep: WeeklyReport) -> str:
    """Response drift, quality drift and the trend of the stored drift results."""
    parts: list[str] = []
    cols = [
        ("scope", "Scope"),
        ("method", "Method"),
        ("score", "Statistic"),
        ("p_value", "p-value"),
        ("threshold", "Threshold"),
        ("n_baseline", "n baseline"),
        ("n_current", "n current"),
        ("status", "Status"),
    ]
    if rep.response_drift:
        rcols = [*cols[:4], ("p_adjusted", "p (BH)"), *cols[4:]]
        parts.append(f"<h3>Response drift</h3>{_table(rep.response_drift, rcols)}")
    if rep.quality_drift:
        qcols = [cols[0], ("model_version", "Version"), ("signal", "Signal"), *cols[1:]]
        parts.append(
            "<h3>Quality drift (feedback and safety, per plant and version)</h3>"
            f'<div id="quality-drift">{_table(rep.quality_drift, qcols)}</div>'
        )
    trend = [t for t in rep.drift_trend if t["kind"] != "quality"]
    if trend:
        alpha = next((t["alpha"] for t in trend if t.get("alpha")), 0.05)
        charts = "".join(
            f'<figure><img alt="{kind} drift trend" src="data:image/png;base64,'
            f'{_drift_chart(trend, kind, alpha)}"></figure>'
            for kind in ("prompt", "response")
            if any(t["kind"] == kind and t["p_value"] is not None for t in trend)
        )
        tcols = [
            ("week", "Week"),
            ("kind", "Kind"),
            ("scope", "Scope"),
            ("statistic", "Statistic"),
            ("p_value", "p-value"),
            ("status", "Status"),
        ]
        parts.append(
            "<h3>Drift over the last weeks (suite p-value and status, from the drift history)</h3>"
            f'<div id="drift-trend">{charts}{_table(trend, tcols)}</div>'
        )
    return "".join(parts)


def render_html(rep: WeeklyReport, trend: list[dict[str, Any]]) -> str:
    """The report page: status, KPI table, trend charts per plant, drift, findings and actions."""
    status_class = {"ALERT": "alert", "OK": "ok"}.get(rep.drift_status, "muted")
    charts = "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{_chart(trend, key, title)}"></figure>'
        for key, title in TREND_METRICS
        if trend
    )
    kpi_cols = [
        ("plant_id", "Plant"),
        ("requests", "Requests"),
        ("latency_avg_ms", "Avg. latency (ms)"),
        ("latency_p95_ms", "P95 latency (ms)"),
        ("latency_p99_ms", "P99 latency (ms)"),
        ("feedback_avg", "Avg. feedback"),
        ("feedback_n", "Rated"),
        ("safety_incidents", "Safety incidents"),
        ("safety_rate", "Safety rate"),
        ("escalations_confirmed", "Confirmed escalations"),
    ]
    version_cols = [("plant_id", "Plant"), ("model_version", "Model version"), *kpi_cols[1:]]
    # The plant table also carries the week-over-week changes and the "All plants" row.
    plant_cols = [
        *kpi_cols,
        ("feedback_avg_change", "Δ feedback"),
        ("safety_rate_change_pp", "Δ safety (pp)"),
        ("latency_p95_change_pct", "Δ P95 (%)"),
    ]
    plant_rows = [*rep.plants]
    if rep.overall:
        plant_rows.append({**rep.overall, "plant_id": "All plants"})
    topics = "".join(
        f"<li>{html.escape(d['scope'])}: {html.escape(t['status'])} topic "
        f"<i>{html.escape(', '.join(t['key_terms'][:5]))}</i>, "
        f"{t['share_baseline'] * 100:.1f}% → {t['share_current'] * 100:.1f}% of prompts "
        f"(e.g. “{html.escape((t.get('examples') or [''])[0])}”)</li>"
        for d in rep.drift
        for t in (d.get("explanation") or {}).get("topics", [])
    )
    topics_html = f'<h3>Top new topics</h3><ul id="new-topics">{topics}</ul>' if topics else ""
    sop_md = "\n".join(sop_markdown(rep.sop))
    sop_html = MarkdownIt("commonmark").enable("table").render(sop_md)
    drift_cols = [
        ("scope", "Scope"),
        ("method", "Method"),
        ("score", "Score"),
        ("p_value", "p-value"),
        ("p_adjusted", "p (BH)"),
        ("threshold", "Threshold"),
        ("n_baseline", "n baseline"),
        ("n_current", "n current"),
        ("status", "Status"),
        ("seed_score", "Seed centroid-cosine"),
    ]
    findings = "".join(f"<li>{html.escape(f)}</li>" for f in rep.findings) or (
        "<li>No significant anomalies detected.</li>"
    )
    actions = "".join(f"<li>{html.escape(a)}</li>" for a in rep.actions) or "<li>None.</li>"
    last_day = rep.end - timedelta(days=1)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Weekly Manufacturing Copilot Performance Report {html.escape(rep.week)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}}
th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
th:first-child,td:first-child{{text-align:left}}
.status{{font-weight:bold;padding:.1rem .5rem;border-radius:.3rem}}
.alert{{background:#fdd;color:#900}} .ok{{background:#dfd;color:#060}} .muted{{background:#eee}}
figure{{display:inline-block;margin:0 1rem 1rem 0}}
@page{{size:A4 landscape;margin:1.2cm}}
@media print{{body{{margin:0;max-width:none;font-family:sans-serif}} details{{display:none}}
table{{font-size:.7rem}} img{{max-width:100%}}}}
</style></head><body>
<h1>Weekly Manufacturing Copilot Performance Report</h1>
<p id="headline"><b>{html.escape(headline(rep))}</b></p>
<p><b>Date:</b> {rep.generated_at:%Y-%m-%d} &middot; <b>Week:</b> {html.escape(rep.week)}
({rep.start:%Y-%m-%d} to {last_day:%Y-%m-%d}) &middot; <b>Model version(s):</b>
{html.escape(", ".join(rep.model_versions))}</p>
<p>Drift status: <span class="status {status_class}" id="drift-status">{rep.drift_status}</span>
&middot; Findings: <b id="finding-count">{len(rep.findings)}</b></p>
<h2>1. Key Performance Indicators (KPIs)</h2>
{_table(plant_rows, plant_cols)}
<h3>By model version</h3>
{_table(rep.versions, version_cols)}
<h3>Trends</h3>
{charts}
<h2>2. Model Drift Analysis</h2>
<p id="drift-score-note">{html.escape(DRIFT_SCORE_NOTE.replace("*", ""))}</p>
{_table(rep.drift, drift_cols)}
{topics_html}
{_drift_more(rep)}
<div id="sop">{sop_html}</div>
<h2>4. Summary &amp; Actions</h2>
<h3>Anomalies</h3><ul id="findings">{findings}</ul>
<h3>Action items</h3><ol id="actions">{actions}</ol>
<details><summary>Markdown version</summary><pre>{html.escape(render_markdown(rep))}</pre></details>
</body></html>
"""
