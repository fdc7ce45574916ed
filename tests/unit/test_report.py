"""Findings and action items of the weekly report, from hand-made KPI and drift rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwarden.report.weekly import (
    FINDING_RULES,
    WeeklyReport,
    _findings,
    latest_complete_week,
    rank_findings,
    render_markdown,
)

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)

DRIFT_ACTIONS = [
    "Curate new training data reflecting these patterns.",
    "Schedule a potential retraining cycle.",
]


def plant(name: str, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "window_start": WEEK_START,
        "plant_id": name,
        "requests": 400,
        "latency_avg_ms": 260.0,
        "latency_p50_ms": 250.0,
        "latency_p95_ms": 450.0,
        "latency_p99_ms": 600.0,
        "feedback_avg": 4.3,
        "feedback_n": 150,
        "safety_incidents": 1,
        "safety_rate": 0.0025,
        "errors": 0,
        "escalations_confirmed": 1,
        "requests_change_pct": 2.0,
        "latency_p95_change_pct": 3.0,
        "feedback_avg_change": 0.05,
        "safety_rate_change_pp": 0.1,
    }
    row.update(kw)
    return row


def version(plant_id: str, model: str, **kw: Any) -> dict[str, Any]:
    row = plant(plant_id, model_version=model)
    row.update(kw)
    return row


def drift(scope: str, status: str, score: float | None = 0.004) -> dict[str, Any]:
    return {
        "scope": scope,
        "kind": "prompt",
        "embedder": "hashing-384",
        "method": "centroid_cosine (seed)",
        "baseline": "2026-10-26 .. 2026-11-16",
        "current": "2026-11-16 .. 2026-11-23",
        "n_baseline": 900,
        "n_current": 300,
        "threshold": 0.02,
        "score": score,
        "status": status,
    }


QUIET_PLANTS = [plant("Plant_A"), plant("Plant_B")]
QUIET_VERSIONS = [version("Plant_A", V11), version("Plant_B", V11)]
QUIET_DRIFT = [drift("all plants", "OK"), drift("Plant_A", "OK"), drift("Plant_B", "OK")]


def report(
    findings: list[str], actions: list[str], drift_rows: list[dict[str, Any]], status: str
) -> WeeklyReport:
    return WeeklyReport(
        week="2026-W47",
        start=WEEK_START,
        end=datetime(2026, 11, 23, tzinfo=UTC),
        generated_at=datetime(2026, 11, 23, 6, tzinfo=UTC),
        model_versions=[V11],
        plants=QUIET_PLANTS,
        versions=QUIET_VERSIONS,
        overall=plant("All"),
        drift=drift_rows,
        drift_status=status,
        findings=findings,
        actions=actions,
    )


def _section(md: str, title: str) -> str:
    start = md.index(title)
    nxt = md.find("\n## ", start + len(title))
    return md[start : nxt if nxt >= 0 else len(md)]


# ---- nothing wrong -----------------------------------------------------------------------------
def test_quiet_week_has_no_findings() -> None:
    assert _findings(QUIET_PLANTS, QUIET_VERSIONS, QUIET_DRIFT) == ([], [])


def test_quiet_week_renders_no_anomalies_and_no_actions() -> None:
    md = render_markdown(report([], [], QUIET_DRIFT, "OK"))
    summary = _section(md, "## 4. Summary & Actions")
    assert "- **Overall Performance:** The model is performing within expected parameters." in md
    assert summary.split("\n")[2:] == [
        "- **Overall Performance:** The model is performing within expected parameters.",
        "- **Anomalies:**",
        "    - No significant anomalies detected.",
        "- **Action Items:**",
        "    - None.",
        "",
    ]
    assert "<font color='green'>**OK**</font>" in md


def test_insufficient_data_is_not_a_finding() -> None:
    rows = [drift("all plants", "INSUFFICIENT_DATA", None)]
    assert _findings(QUIET_PLANTS, QUIET_VERSIONS, rows) == ([], [])
    md = render_markdown(report([], [], rows, "INSUFFICIENT_DATA"))
    assert (
        "| all plants | centroid_cosine (seed) | — | — | — | `0.02` | 900 / 300 "
        "| **INSUFFICIENT_DATA** |" in md
    )


# ---- feedback drop -----------------------------------------------------------------------------
def test_feedback_drop() -> None:
    plants = [plant("Plant_A"), plant("Plant_C", feedback_avg=3.85, feedback_avg_change=-0.45)]
    findings, _ = _findings(plants, QUIET_VERSIONS, QUIET_DRIFT)
    assert findings == [
        "Average feedback at Plant_C fell by 0.45 points against the previous week (now 3.85)."
    ]


def test_feedback_drop_thresholds() -> None:
    drop = FINDING_RULES["feedback_drop_points"]
    at_threshold = plant("Plant_C", feedback_avg=4.0, feedback_avg_change=-drop)
    just_under = plant("Plant_C", feedback_avg=4.0, feedback_avg_change=-(drop - 0.01))
    too_few = plant(
        "Plant_C",
        feedback_avg=2.0,
        feedback_avg_change=-2.0,
        feedback_n=FINDING_RULES["min_rated"] - 1,
    )
    no_previous = plant("Plant_C", feedback_avg_change=None)
    assert len(_findings([at_threshold], [], [])[0]) == 1
    for p in (just_under, too_few, no_previous):
        assert _findings([p], [], []) == ([], [])


# ---- safety rise -------------------------------------------------------------------------------
def test_safety_rise() -> None:
    plants = [
        plant(
            "Plant_B",
            safety_incidents=12,
            requests=366,
            safety_rate=12 / 366,
            safety_rate_change_pp=2.73,
        )
    ]
    findings, _ = _findings(plants, QUIET_VERSIONS, QUIET_DRIFT)
    assert findings == [
        "Safety incident rate at Plant_B rose by 2.7 percentage points "
        "(12 incidents in 366 requests)."
    ]
    assert _findings([plant("Plant_B", safety_rate_change_pp=0.99)], [], []) == ([], [])


def test_latency_rise() -> None:
    plants = [plant("Plant_D", latency_p95_ms=700.4, latency_p95_change_pct=40.2)]
    assert _findings(plants, [], [])[0] == ["P95 latency at Plant_D rose by 40% to 700 ms."]


def test_every_finding_comes_with_an_action() -> None:
    """A report that says findings "need attention" must not list "None." as its actions."""
    cases = {
        "feedback drop": [plant("Plant_C", feedback_avg=3.85, feedback_avg_change=-0.45)],
        "safety rise": [
            plant(
                "Plant_B",
                safety_incidents=12,
                requests=366,
                safety_rate=12 / 366,
                safety_rate_change_pp=2.73,
            )
        ],
        "latency rise": [plant("Plant_D", latency_p95_ms=700.4, latency_p95_change_pct=40.2)],
    }
    without_action = []
    for name, plants in cases.items():
        findings, actions = _findings(plants, QUIET_VERSIONS, QUIET_DRIFT)
        assert len(findings) == 1
        if not actions:
            without_action.append(name)
    assert without_action == []


# ---- a worse canary version --------------------------------------------------------------------
def test_worse_canary_version() -> None:
    versions = [
        version("Plant_A", V11),
        version(
            "Plant_B",
            V11,
            requests=302,
            feedback_avg=4.36,
            safety_rate=1 / 302,
            latency_p95_ms=517.0,
        ),
        version(
            "Plant_B",
            V12,
            requests=64,
            feedback_avg=2.42,
            safety_rate=11 / 64,
            latency_p95_ms=865.0,
        ),
    ]
    findings, actions = _findings(QUIET_PLANTS, versions, QUIET_DRIFT)
    assert findings == [
        f"{V12} at Plant_B (64 requests) underperforms {V11}: feedback 2.42 vs 4.36; "
        "safety incident rate 17.2% vs 0.3%; P95 latency 865 ms vs 517 ms."
    ]
    assert actions == [
        f"Roll Plant_B back from {V12} to {V11} per SOP-MLOPS-003, open an incident with the "
        "logs of the affected window, and quarantine the version until it is re-validated "
        "and approved."
    ]


def test_version_only_slightly_worse_is_not_a_finding() -> None:
    versions = [
        version(
            "Plant_B", V11, requests=300, feedback_avg=4.3, safety_rate=0.0, latency_p95_ms=500.0
        ),
        version(
            "Plant_B", V12, requests=60, feedback_avg=3.9, safety_rate=0.009, latency_p95_ms=740.0
        ),
    ]
    assert _findings([], versions, []) == ([], [])


# ---- drift -------------------------------------------------------------------------------------
def test_drift_alert() -> None:
    rows = [
        drift("all plants", "OK"),
        drift("Plant_A", "OK"),
        drift("Plant_C", "ALERT", 0.0607),
        drift("Plant_D", "ALERT", 0.0315),
    ]
    findings, actions = _findings(QUIET_PLANTS, QUIET_VERSIONS, rows)
    assert findings == [
        "Prompt drift detected (Plant_C, Plant_D): users are asking about new things."
    ]
    assert actions == [
        "Analyze new query clusters from production logs (Plant_C, Plant_D).",
        *DRIFT_ACTIONS,
    ]


def test_everything_at_once_renders_numbered_actions() -> None:
    plants = [
        plant(
            "Plant_B",
            safety_incidents=12,
            requests=366,
            safety_rate=12 / 366,
            safety_rate_change_pp=2.73,
        ),
        plant("Plant_C", feedback_avg=3.99, feedback_avg_change=-0.31),
    ]
    versions = [
        version("Plant_B", V11, requests=302, feedback_avg=4.36),
        version("Plant_B", V12, requests=64, feedback_avg=2.42),
    ]
    rows = [drift("all plants", "OK"), drift("Plant_C", "ALERT", 0.0607)]
    findings, actions = _findings(plants, versions, rows)
    assert findings == [
        "Safety incident rate at Plant_B rose by 2.7 percentage points "
        "(12 incidents in 366 requests).",
        "Average feedback at Plant_C fell by 0.31 points against the previous week (now 3.99).",
        f"{V12} at Plant_B (64 requests) underperforms {V11}: feedback 2.42 vs 4.36.",
        "Prompt drift detected (Plant_C): users are asking about new things.",
    ]
    # One action per plant finding, the rollback for the canary, the three drift actions.
    assert len(actions) == 6
    assert actions[0].startswith("Review the flagged responses at Plant_B")
    assert actions[1].startswith("Review low-rated answers at Plant_C")
    md = render_markdown(report(findings, actions, rows, "ALERT"))
    summary = _section(md, "## 4. Summary & Actions")
    assert "- **Overall Performance:** 4 finding(s) need attention this week." in summary
    assert [f"    - {f}" for f in findings] == [
        ln for ln in summary.split("\n") if ln.startswith("    - ")
    ]
    numbered = [ln for ln in summary.split("\n") if ln[:6] in {f"    {i}." for i in range(1, 7)}]
    assert numbered == [f"    {i}. {a}" for i, a in enumerate(actions, 1)]
    assert "No significant anomalies detected." not in md and "- None." not in md
    drift_md = _section(md, "## 2. Model Drift Analysis")
    assert (
        "| Plant_C | centroid_cosine (seed) | `0.0607` | — | — | `0.02` | 900 / 300 | **ALERT** |"
        in drift_md
    )
    assert "<font color='red'>**ALERT**</font>" in drift_md


def test_kpi_table_rows() -> None:
    md = render_markdown(report([], [], QUIET_DRIFT, "OK"))
    kpi = _section(md, "## 1. Key Performance Indicators (KPIs)")
    assert "| Plant | Requests | Avg. Latency (ms) | P95 Latency (ms) | P99 Latency (ms) " in kpi
    assert "| **Plant_A** | 400 | 260 | 450 | 600 | 4.30 (150) | 1 (0.2%) | 1 | 0.05 | 0.1 |" in kpi
    assert (
        "| **All plants** | 400 | 260 | 450 | 600 | 4.30 (150) | 1 (0.2%) | 1 | 0.05 | 0.1 |" in kpi
    )
    assert "| Plant_B | sop-assistant-v1.1 | 400 | 260 | 450 | 4.30 (150) | 1 (0.2%) | 1 |" in kpi
    assert "**Week:** 2026-W47 (2026-11-16 to 2026-11-22)" in md


def test_a_missing_value_renders_as_a_dash() -> None:
    rep = report([], [], QUIET_DRIFT, "OK")
    rep.plants = [
        plant(
            "Plant_A",
            feedback_avg=None,
            feedback_n=0,
            feedback_avg_change=None,
            safety_rate_change_pp=None,
        )
    ]
    md = render_markdown(rep)
    assert "| **Plant_A** | 400 | 260 | 450 | 600 | — (0) | 1 (0.2%) | 1 | — | — |" in md


def test_latest_complete_week() -> None:
    assert latest_complete_week(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == "2026-W47"
    assert latest_complete_week(datetime(2026, 11, 20, 12, tzinfo=UTC)) == "2026-W46"
    assert latest_complete_week(datetime(2026, 11, 23, 0, 5, tzinfo=UTC)) == "2026-W47"


def quality(method: str, signal: str, p: float | None) -> dict[str, Any]:
    return {
        "scope": "Plant_B",
        "model_version": V12,
        "kind": "quality",
        "signal": signal,
        "method": method,
        "score": 0.1,
        "p_value": p,
        "threshold": None,
        "n_baseline": 300,
        "n_current": 60,
        "status": "ALERT",
    }


def test_each_quality_finding_names_the_test_behind_its_p_value() -> None:
    rows = [
        quality("feedback_score", "feedback", 2.48e-05),
        quality("safety_rate", "safety", 1.2e-05),
        quality("cusum", "feedback", None),
        quality("bernoulli_cusum", "safety", 0.0005),
    ]
    findings, _ = _findings([plant("Plant_B")], [], rows)
    assert findings == [
        "Quality drift at Plant_B / sop-assistant-v1.2: feedback scores fell "
        "(Mann-Whitney U test of the scores, p = 2.48e-05).",
        "Quality drift at Plant_B / sop-assistant-v1.2: the safety flag rate rose "
        "(Fisher's exact test of the flag rates, p = 1.2e-05).",
        "Quality drift at Plant_B / sop-assistant-v1.2: feedback scores fell "
        "(CUSUM on daily means).",
        # The Bernoulli CUSUM's p-value comes from its simulated runs, not a two-sample test.
        "Quality drift at Plant_B / sop-assistant-v1.2: the safety flag rate rose "
        "(Bernoulli CUSUM, p-value from simulated runs, p = 0.0005).",
    ]


def test_a_live_bad_canary_is_the_first_finding() -> None:
    findings = [
        "Prompt drift detected (all plants, Plant_C): users are asking about new things.",
        "Average feedback at Plant_A fell by 0.40 points against the previous week (now 3.90).",
        "sop-assistant-v1.3 at Plant_A (40 requests) underperforms sop-assistant-v1.1: x.",
        "Safety incident rate at Plant_D rose by 1.5 percentage points (3 incidents in 200).",
        "sop-assistant-v1.2 at Plant_B (56 requests) underperforms sop-assistant-v1.1: y.",
    ]
    ranked = rank_findings(findings, live_canaries={V12})
    assert ranked == [findings[4], findings[2], findings[3], findings[1], findings[0]]
    # Without a live rollout the two version findings keep their order.
    assert rank_findings(findings, set())[:2] == [findings[2], findings[4]]
