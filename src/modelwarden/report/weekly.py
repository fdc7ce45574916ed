"""The weekly governance pack: KPIs per plant and version, drift, findings and actions.

Everything in it is computed from the store. Findings and action items follow from the numbers
against fixed, documented thresholds (:data:`FINDING_RULES`), so two runs on the same data write
the same report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelwarden.errors import NotFoundError
from modelwarden.report.cache import cached_rows, remember, store_fingerprint
from modelwarden.report.sop import markdown_lines as sop_markdown
from modelwarden.report.sop import sop_section
from modelwarden.settings import Settings
from modelwarden.windows import Window, iso_week, latest_complete_week, week_label

BASELINE_WEEKS = 3

# What makes a finding. Changes are against the previous week of the same plant; version gaps
# compare a version with the plant's most used version in the same week.
FINDING_RULES = {
    "feedback_drop_points": 0.3,
    "safety_rate_rise_pp": 1.0,
    "p95_latency_rise_pct": 25.0,
    "version_feedback_gap_points": 0.5,
    "version_safety_gap_pp": 1.0,
    "min_rated": 10,
}


@dataclass
class WeeklyReport:
    week: str
    start: datetime
    end: datetime
    generated_at: datetime
    model_versions: list[str]
    plants: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    overall: dict[str, Any]
    drift: list[dict[str, Any]]
    drift_status: str
    findings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    response_drift: list[dict[str, Any]] = field(default_factory=list)
    quality_drift: list[dict[str, Any]] = field(default_factory=list)
    drift_trend: list[dict[str, Any]] = field(default_factory=list)
    sop: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _findings(
    plants: list[dict[str, Any]], versions: list[dict[str, Any]], drift: list[dict[str, Any]]
) -> tuple[list[str], list[str]]:
    r = FINDING_RULES
    findings: list[str] = []
    actions: list[str] = []
    for p in plants:
        name = p["plant_id"]
        if (
            p["feedback_avg_change"] is not None
            and p["feedback_n"] >= r["min_rated"]
            and p["feedback_avg_change"] <= -r["feedback_drop_points"]
        ):
            findings.append(
                f"Average feedback at {name} fell by {-p['feedback_avg_change']:.2f} "
                f"points against the previous week (now {p['feedback_avg']:.2f})."
            )
            actions.append(
                f"Review low-rated answers at {name} from this week and check SOP-MLOPS-003 "
                "trigger 2 (average feedback down by more than 0.5 points over 24 hours)."
            )
        if (
            p["safety_rate_change_pp"] is not None
            and p["safety_rate_change_pp"] >= r["safety_rate_rise_pp"]
        ):
            findings.append(
                f"Safety incident rate at {name} rose by "
                f"{p['safety_rate_change_pp']:.1f} percentage points "
                f"({p['safety_incidents']} incidents in {p['requests']} requests)."
            )
            actions.append(
                f"Review the flagged responses at {name} and check SOP-MLOPS-003 trigger 1 "
                "(safety incident rate up by more than 1 percentage point over 12 hours)."
            )
        if (
            p["latency_p95_change_pct"] is not None
            and p["latency_p95_change_pct"] >= r["p95_latency_rise_pct"]
        ):
            findings.append(
                f"P95 latency at {name} rose by {p['latency_p95_change_pct']:.0f}% "
                f"to {p['latency_p95_ms']:.0f} ms."
            )
            actions.append(
                f"Check upstream capacity at {name} and SOP-MLOPS-003 trigger 3 "
                "(P95 latency up by more than 50 % for more than 1 hour)."
            )
    by_plant: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        by_plant.setdefault(v["plant_id"], []).append(v)
    for plant, rows in sorted(by_plant.items()):
        main = max(rows, key=lambda x: x["requests"])
        for v in rows:
            if v is main:
                continue
            gaps = []
            if (
                v["feedback_avg"] is not None
                and main["feedback_avg"] is not None
                and main["feedback_avg"] - v["feedback_avg"] >= r["version_feedback_gap_points"]
            ):
                gaps.append(f"feedback {v['feedback_avg']:.2f} vs {main['feedback_avg']:.2f}")
            gap_pp = (v["safety_rate"] - main["safety_rate"]) * 100
            if gap_pp >= r["version_safety_gap_pp"]:
                gaps.append(
                    f"safety incident rate {v['safety_rate'] * 100:.1f}% vs "
                    f"{main['safety_rate'] * 100:.1f}%"
                )
            if (
                v["latency_p95_ms"]
                and main["latency_p95_ms"]
                and (v["latency_p95_ms"] > 1.5 * main["latency_p95_ms"])
            ):
                gaps.append(
                    f"P95 latency {v['latency_p95_ms']:.0f} ms vs {main['latency_p95_ms']:.0f} ms"
                )
            if gaps:
                findings.append(
                    f"{v['model_version']} at {plant} ({v['requests']} requests) "
                    f"underperforms {main['model_version']}: " + "; ".join(gaps) + "."
                )
                actions.append(
                    f"Roll {plant} back from {v['model_version']} to "
                    f"{main['model_version']} per SOP-MLOPS-003, open an incident with "
                    "the logs of the affected window, and quarantine the version "
                    "until it is re-validated and approved."
                )
    alerts = [d for d in drift if d["status"] == "ALERT" and d.get("kind", "prompt") == "prompt"]
    response_alerts = [d for d in drift if d["status"] == "ALERT" and d.get("kind") == "response"]
    if response_alerts:
        scopes = ", ".join(_where(d) for d in response_alerts)
        findings.append(f"Response drift detected ({scopes}): the answers changed.")
        actions.append(
            f"Compare this week's answers with earlier ones ({scopes}) and check whether a model, "
            "prompt or retrieval change explains them."
        )
    for d in drift:
        if d["status"] == "ALERT" and d.get("kind") == "quality":
            what = {"feedback": "feedback scores fell", "safety": "the safety flag rate rose"}
            findings.append(
                f"Quality drift at {_where(d)}: {what.get(d['signal'], d['signal'])} "
                f"({test_name(d['method'])}{_p_text(d)})."
            )
    if alerts:
        scopes = ", ".join(_where(d) for d in alerts)
        findings.append(f"Prompt drift detected ({scopes}): users are asking about new things.")
        actions.extend(
            [
                f"Analyze new query clusters from production logs ({scopes}).",
                "Curate new training data reflecting these patterns.",
                "Schedule a potential retraining cycle.",
            ]
        )
    return findings, actions


DRIFT_SCORE_NOTE = (
    "*Statistic* is −log10 of the suite's p-value (four permutation-calibrated detectors, "
    "adjusted for multiplicity); *Threshold* is −log10 α. *p (BH)* adjusts the p-value for the "
    "number of scopes in the table (Benjamini-Hochberg), and a row alerts when it is below α "
    "(and the effect also clears its floor): a 5 % chance of any false alert in the table in a "
    "week without drift. *Seed centroid-cosine* is the notebook's cosine distance between the two "
    "weeks' mean embeddings (fixed threshold 0.02, not calibrated), kept for continuity."
)

# The test behind each drift method's p-value, as a finding names it.
TEST_NAMES = {
    "feedback_score": "Mann-Whitney U test of the scores",
    "safety_rate": "Fisher's exact test of the flag rates",
    "cusum": "CUSUM on daily means",
    "bernoulli_cusum": "Bernoulli CUSUM, p-value from simulated runs",
    "suite": "calibrated drift suite (permutation tests, Holm-combined)",
}


def test_name(method: str) -> str:
    return TEST_NAMES.get(method, method)


def rank_findings(findings: list[str], live_canaries: set[str]) -> list[str]:
    """Most urgent first: a live canary that underperforms, then any version that does, then
    safety, feedback, latency and drift findings; the order among equals is kept."""

    def rank(text: str) -> int:
        if "underperforms" in text:
            return 0 if any(text.startswith(f"{v} ") for v in live_canaries) else 1
        low = text.lower()
        if "safety" in low:
            return 2
        if "feedback" in low:
            return 3
        if "latency" in low:
            return 4
        return 5

    return sorted(findings, key=rank)


def _where(d: dict[str, Any]) -> str:
    return d["scope"] + (f" / {d['model_version']}" if d.get("model_version") else "")


def _p_text(d: dict[str, Any]) -> str:
    return "" if d.get("p_value") is None else f", p = {d['p_value']:.3g}"


def drift_trend(settings: Settings, end: datetime, weeks: int = 8) -> list[dict[str, Any]]:
    """The stored weekly drift results of the ``weeks`` weeks up to ``end``: one row per week,
    scope, kind and signal, for the suite (embeddings) and every quality test, newest run kept."""
    # lazy: like the drift suite below, the history (NumPy) loads only when the report is built
    from modelwarden.drift.history import read_history

    points = read_history(settings, since=end - timedelta(weeks=weeks), until=end)
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in points:
        start = datetime.fromisoformat(r["window_start"])
        stop = datetime.fromisoformat(r["window_end"])
        if stop - start != timedelta(weeks=1) or start.weekday() != 0 or r["model_version"]:
            continue
        if r["kind"] != "quality" and (r["method"] != "suite" or r["baseline"] == "reservoir"):
            continue
        key = (r["window_start"], r["kind"], r["signal"], r["scope"], r["method"])
        if key not in latest or r["run_at"] >= latest[key]["run_at"]:
            latest[key] = {**r, "week": week_label(start)}
    return sorted(
        latest.values(),
        key=lambda r: (
            r["kind"],
            r["signal"],
            r["method"],
            r["scope"] != "all plants",
            r["scope"],
            r["window_start"],
        ),
    )


class _StoreQueries:
    """The report's queries over the log store (its time span and KPI tables): from the cache
    when the store is unchanged, else run on one connection shared by all of them."""

    def __init__(self, settings: Settings, fingerprint: str) -> None:
        self.settings = settings
        self.fingerprint = fingerprint
        self.asked: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        self._con: Any = None

    def _connection(self) -> Any:
        # Imported here, as the queries below are: the log store's readers load DuckDB and
        # Arrow, which a report on an unchanged store never needs.
        from modelwarden.store.reads import open_store

        if self._con is None:
            self._con = open_store(self.settings).connect()
        return self._con

    def _rows(
        self, question: dict[str, Any], compute: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        out = cached_rows(self.settings, question, compute, self.fingerprint)
        self.asked.append((question, out))
        return out

    def bounds(self) -> tuple[datetime, datetime]:
        def compute() -> list[dict[str, Any]]:
            from modelwarden.store.reads import require_data

            lo, hi = require_data(self.settings, self._connection())
            return [{"lo": lo, "hi": hi}]

        row = self._rows({"query": "time_bounds"}, compute)[0]
        return row["lo"], row["hi"]

    def kpis(self, since: datetime, until: datetime, by: tuple[str, ...]) -> list[dict[str, Any]]:
        def compute() -> list[dict[str, Any]]:
            # Imported here: the KPI queries need Ibis, which a report on an unchanged store
            # never loads (a third of its start-up).
            from modelwarden.kpi.compute import KpiQuery
            from modelwarden.kpi.service import compute_kpis

            q = KpiQuery(since=since, until=until, window="week", by=by)
            return compute_kpis(self.settings, q, self._connection())

        question = {
            "query": "kpis",
            "since": since.isoformat(),
            "until": until.isoformat(),
            "window": "week",
            "by": list(by),
        }
        return self._rows(question, compute)


def build_weekly_report(
    settings: Settings,
    week: str | None = None,
    *,
    embedder: str | None = None,
    threshold: float = 0.02,
    response: bool = True,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> WeeklyReport:
    """The report of ``week`` (default: the latest complete one).

    Its drift section runs prompt drift, response drift (unless ``response`` is False) and
    quality drift per plant and version against the three weeks before, stores them in the drift
    history, and shows the history of the weeks before as the trend.
    """
    # One walk of the store for every question below; unchanged data answers from the cache.
    fingerprint = store_fingerprint(settings)
    queries = _StoreQueries(settings, fingerprint)
    lo, hi = queries.bounds()
    week = week or latest_complete_week(hi)
    start, end = iso_week(week)
    if end <= lo or start > hi:
        raise NotFoundError(
            f"no requests in {week}; the store holds {lo:%Y-%m-%d} to {hi:%Y-%m-%d}", field="week"
        )
    plants = queries.kpis(start, end, ("plant_id",))
    versions = queries.kpis(start, end, ("plant_id", "model_version"))
    overall_rows = queries.kpis(start, end, ())
    overall = overall_rows[0] if overall_rows else {}
    baseline = Window(max(lo, start - timedelta(weeks=BASELINE_WEEKS)), start)
    drift: list[dict[str, Any]] = []
    response_drift: list[dict[str, Any]] = []
    quality_drift: list[dict[str, Any]] = []
    if baseline.since < baseline.until:
        current = Window(start, end)

        def rows(
            kind: str,
            by: tuple[str, ...] | None = None,
            method: str = "suite",
            seed_score: bool = False,
        ) -> list[dict[str, Any]]:
            # Identical questions on an unchanged store give identical rows: kept, not re-run.
            question = {
                "kind": kind,
                "method": method,
                "baseline": [baseline.since.isoformat(), baseline.until.isoformat()],
                "current": [current.since.isoformat(), current.until.isoformat()],
                "by": list(by) if by else None,
                "embedder": embedder,
                "threshold": threshold,
                "seed_score": seed_score,
            }
            kw: dict[str, Any] = {"kind": kind}
            if seed_score:
                kw["seed_score"] = True
            if method != "suite":
                kw.update(method=method, record=False, explain=False)
            if by:
                kw["by"] = by
            if kind != "quality":
                kw.update(
                    embedder=embedder, threshold=threshold, progress=progress, on_total=on_total
                )

            def compute() -> list[dict[str, Any]]:
                # Imported here: the drift suite loads the embedders, DuckDB and Arrow, which a
                # report on an unchanged store never needs.
                from modelwarden.drift.monitor import drift_over_windows

                computed.append(kind)
                return drift_over_windows(settings, baseline, current, **kw)

            out = cached_rows(settings, question, compute, fingerprint)
            asked.append((question, out))
            return out

        asked: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        computed: list[str] = []

        # The seed notebook's centroid-cosine score beside the suite's, for continuity: computed
        # on the same vectors in the same run (one read of the windows, not two).
        drift = rows("prompt", seed_score=True)
        if response:
            response_drift = rows("response")
        quality_drift = rows("quality", ("plant_id", "model_version"))
        # Embedding answers for response drift wrote to the store after the prompt rows were
        # kept; keep every answer under the store as it is now, so the next report finds them.
        after = store_fingerprint(settings) if computed else fingerprint
        if after != fingerprint:
            for question, out in [*asked, *queries.asked]:
                remember(settings, question, out, after)
    drift_status = (
        "ALERT"
        if any(d["status"] == "ALERT" for d in drift)
        else ("OK" if drift else "INSUFFICIENT_DATA")
    )
    findings, actions = _findings(plants, versions, drift + response_drift + quality_drift)
    sop = sop_section(settings, start, end)
    live = {r["version"] for r in sop["rollouts"] if r["status"] in ("running", "paused", "guard")}
    findings = rank_findings(findings, live)
    return WeeklyReport(
        week=week,
        start=start,
        end=end,
        generated_at=datetime.now(UTC),
        model_versions=sorted({v["model_version"] for v in versions}),
        plants=plants,
        versions=versions,
        overall=overall,
        drift=drift,
        drift_status=drift_status,
        findings=findings,
        actions=actions,
        response_drift=response_drift,
        quality_drift=quality_drift,
        drift_trend=drift_trend(settings, end, TREND_WEEKS),
        sop=sop,
    )


def headline(rep: WeeklyReport) -> str:
    """The pack in one line, as the page, the e-mail's subject and the chat message lead with it."""
    n = len(rep.findings)
    state = (
        "the model is performing within expected parameters"
        if not n
        else f"{n} finding{'s' if n != 1 else ''} need{'' if n != 1 else 's'} attention"
    )
    requests = (rep.overall or {}).get("requests")
    volume = f" in {requests:,} requests" if requests else ""
    return f"Week {rep.week}: {state}{volume}; drift {rep.drift_status}."


def render_markdown(rep: WeeklyReport) -> str:
    status_color = {"ALERT": "red", "OK": "green"}.get(rep.drift_status, "gray")
    lines = [
        "# Weekly Manufacturing Copilot Performance Report",
        "",
        f"**Date:** {rep.generated_at:%Y-%m-%d}",
        f"**Week:** {rep.week} ({rep.start:%Y-%m-%d} to {rep.end - timedelta(days=1):%Y-%m-%d})",
        f"**Model Version(s):** {', '.join(rep.model_versions) or '—'}",
        "",
        "---",
        "",
        "## 1. Key Performance Indicators (KPIs)",
        "",
        "| Plant | Requests | Avg. Latency (ms) | P95 Latency (ms) | P99 Latency (ms) "
        "| Avg. Feedback (n) | Safety Incidents (rate) | Confirmed Escalations "
        "| Δ Feedback | Δ Safety (pp) |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in rep.plants:
        lines.append(
            f"| **{p['plant_id']}** | {p['requests']} | {_fmt(p['latency_avg_ms'], 0)} "
            f"| {_fmt(p['latency_p95_ms'], 0)} | {_fmt(p['latency_p99_ms'], 0)} "
            f"| {_fmt(p['feedback_avg'])} ({p['feedback_n']}) "
            f"| {p['safety_incidents']} ({p['safety_rate'] * 100:.1f}%) "
            f"| {p['escalations_confirmed']} "
            f"| {_fmt(p['feedback_avg_change'], 2) if p['feedback_avg_change'] is not None else '—'} "
            f"| {_fmt(p['safety_rate_change_pp'], 1) if p['safety_rate_change_pp'] is not None else '—'} |"
        )
    o = rep.overall
    if o:
        lines.append(
            f"| **All plants** | {o['requests']} | {_fmt(o['latency_avg_ms'], 0)} "
            f"| {_fmt(o['latency_p95_ms'], 0)} | {_fmt(o['latency_p99_ms'], 0)} "
            f"| {_fmt(o['feedback_avg'])} ({o['feedback_n']}) "
            f"| {o['safety_incidents']} ({o['safety_rate'] * 100:.1f}%) "
            f"| {o['escalations_confirmed']} | "
            f"{_fmt(o['feedback_avg_change'], 2) if o['feedback_avg_change'] is not None else '—'} "
            f"| {_fmt(o['safety_rate_change_pp'], 1) if o['safety_rate_change_pp'] is not None else '—'} |"
        )
    lines += [
        "",
        "### By model version",
        "",
        "| Plant | Model Version | Requests | Avg. Latency (ms) | P95 Latency (ms) "
        "| Avg. Feedback (n) | Safety Incidents (rate) | Confirmed Escalations |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in rep.versions:
        lines.append(
            f"| {v['plant_id']} | {v['model_version']} | {v['requests']} "
            f"| {_fmt(v['latency_avg_ms'], 0)} | {_fmt(v['latency_p95_ms'], 0)} "
            f"| {_fmt(v['feedback_avg'])} ({v['feedback_n']}) "
            f"| {v['safety_incidents']} ({v['safety_rate'] * 100:.1f}%) "
            f"| {v['escalations_confirmed']} |"
        )
    lines += [
        "",
        "---",
        "",
        "## 2. Model Drift Analysis",
        "",
    ]
    if rep.drift:
        d0 = rep.drift[0]
        lines += [
            f"Prompt embeddings ({d0['embedder']}) of the week against the baseline "
            f"{d0['baseline']}.",
            "",
            DRIFT_SCORE_NOTE,
            "",
            "| Scope | Method | Statistic | p-value | p (BH) | Threshold | n (baseline / current) "
            "| Status | Seed centroid-cosine |",
            "|:---|:---|---:|---:|---:|---:|---:|:---|---:|",
        ]
        for d in rep.drift:
            score = "—" if d["score"] is None else f"`{d['score']:.4f}`"
            p_text = "—" if d.get("p_value") is None else f"`{d['p_value']:.4f}`"
            thr = "—" if d.get("threshold") is None else f"`{d['threshold']:.4g}`"
            seed_score = "—" if d.get("seed_score") is None else f"`{d['seed_score']:.4f}`"
            lines.append(
                f"| {d['scope']} | {d['method']} | {score} | {p_text} "
                f"| {_cell(d.get('p_adjusted'))} | {thr} "
                f"| {n_pair(d)} | **{d['status']}** | {seed_score} |"
            )
        topics = [
            (d["scope"], t)
            for d in rep.drift
            for t in (d.get("explanation") or {}).get("topics", [])
        ]
        if topics:
            lines += ["", "**Top new topics:**", ""]
            for scope, t in topics:
                example = (t.get("examples") or [""])[0]
                lines.append(
                    f"- {scope}: {t['status']} topic *{', '.join(t['key_terms'][:5])}*, "
                    f"{t['share_baseline'] * 100:.1f}% → {t['share_current'] * 100:.1f}% of "
                    f"prompts (e.g. “{example}”)"
                )
        lines += ["", f"- **Status:** <font color='{status_color}'>**{rep.drift_status}**</font>"]
    else:
        lines.append("- **Status:** INSUFFICIENT_DATA (no earlier week to compare against)")
    lines += _markdown_more_drift(rep)
    summary = (
        "The model is performing within expected parameters."
        if not rep.findings
        else f"{len(rep.findings)} finding(s) need attention this week."
    )
    lines += ["", "---", ""]
    lines += sop_markdown(rep.sop)
    lines += [
        "---",
        "",
        "## 4. Summary & Actions",
        "",
        f"- **Overall Performance:** {summary}",
        "- **Anomalies:**",
    ]
    lines += [f"    - {f}" for f in rep.findings] or ["    - No significant anomalies detected."]
    lines.append("- **Action Items:**")
    lines += [f"    {i}. {a}" for i, a in enumerate(rep.actions, 1)] or ["    - None."]
    lines.append("")
    return "\n".join(lines)


TREND_WEEKS = 8


def n_text(d: dict[str, Any], side: str) -> str:
    """A drift row's ``n_baseline`` or ``n_current``: "50,000 of 1,000,000 (sampled)" when the
    window had more requests than were tested (``drift_window_max``), else the count."""
    n, total = d.get(f"n_{side}"), d.get(f"n_{side}_total")
    if isinstance(n, int) and isinstance(total, int) and total > n:
        return f"{n:,} of {total:,} (sampled)"
    return "—" if n is None else str(n)


def n_pair(d: dict[str, Any]) -> str:
    """``n (baseline / current)`` of a drift row, see :func:`n_text`."""
    return f"{n_text(d, 'baseline')} / {n_text(d, 'current')}"


def _cell(v: Any, fmt: str = ".4f") -> str:
    return "—" if v is None else f"`{v:{fmt}}`"


def _markdown_more_drift(rep: WeeklyReport) -> list[str]:
    """Response drift, quality drift and the trend of the drift results, as Markdown."""
    lines: list[str] = []
    if rep.response_drift:
        lines += [
            "",
            "### Response drift",
            "",
            "| Scope | Method | Statistic | p-value | p (BH) | Threshold | n (baseline / current) "
            "| Status |",
            "|:---|:---|---:|---:|---:|---:|---:|:---|",
        ]
        for d in rep.response_drift:
            lines.append(
                f"| {d['scope']} | {d['method']} | {_cell(d['score'])} | {_cell(d['p_value'])} "
                f"| {_cell(d.get('p_adjusted'))} | {_cell(d['threshold'], '.4g')} "
                f"| {n_pair(d)} | **{d['status']}** |"
            )
    if rep.quality_drift:
        lines += [
            "",
            "### Quality drift (feedback and safety, per plant and version)",
            "",
            "| Scope | Version | Signal | Method | Statistic | p-value | Threshold "
            "| n (baseline / current) | Status |",
            "|:---|:---|:---|:---|---:|---:|---:|---:|:---|",
        ]
        for d in rep.quality_drift:
            lines.append(
                f"| {d['scope']} | {d.get('model_version') or 'all'} | {d['signal']} "
                f"| {d['method']} | {_cell(d['score'])} | {_cell(d['p_value'])} "
                f"| {_cell(d['threshold'], '.4g')} | {n_pair(d)} "
                f"| **{d['status']}** |"
            )
    trend = [t for t in rep.drift_trend if t["kind"] != "quality"]
    if trend:
        weeks = sorted({t["week"] for t in trend})
        lines += [
            "",
            "### Drift over the last weeks (suite p-value and status, from the drift history)",
            "",
            "| Kind | Scope | " + " | ".join(weeks) + " |",
            "|:---|:---|" + "---:|" * len(weeks),
        ]
        rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for t in trend:
            rows.setdefault((t["kind"], t["scope"]), {})[t["week"]] = t
        for (kind, scope), by_week in rows.items():
            cells = []
            for w in weeks:
                week = by_week.get(w)
                if week is None:
                    cells.append("—")
                elif week["p_value"] is None:
                    cells.append(week["status"])
                else:
                    cells.append(f"{week['p_value']:.3f} {week['status']}")
            lines.append(f"| {kind} | {scope} | " + " | ".join(cells) + " |")
    return lines
