"""The report's "Rollouts and incidents" section: what the SOP did this week, from the state store.

Rollouts (plan, steps taken, the judge's verdicts, how they ended), rollbacks with the rule that
fired and its evidence, incidents and their state, and quarantined versions with their
re-validation (release requests, the evaluation run and gate, who asked and who approved).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwarden.governance import audit, incidents, registry
from modelwarden.rollout import store as rollouts
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

EVIDENCE_KEYS = (
    "metric",
    "scope",
    "value",
    "baseline_value",
    "baseline",
    "n",
    "n_baseline",
    "threshold",
    "comparator",
    "p_value",
    "alpha",
)


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _overlaps(a: datetime | None, b: datetime | None, start: datetime, end: datetime) -> bool:
    a, b = _utc(a), _utc(b)
    return (a is None or a < end) and (b is None or b >= start)


def sop_section(settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """Rollouts, incidents and quarantined versions that touch ``[start, end)`` (and any still
    open or active at the end)."""
    if not settings.has_state():
        return {"rollouts": [], "incidents": [], "quarantined": [], "releases": []}
    state = StateStore.of(settings)
    try:
        out_rollouts = []
        for r in reversed(rollouts.list_rollouts(state, limit=200)):
            if not (r.status in rollouts.ACTIVE or _overlaps(r.created_at, r.ended_at, start, end)):
                continue
            trail = [
                {
                    "at": e.at.isoformat() if hasattr(e.at, "isoformat") else str(e.at),
                    "action": e.action,
                    "actor": e.actor,
                    "reason": e.reason,
                    "step": (e.evidence or {}).get("step"),
                    "verdict": ((e.evidence or {}).get("verdict") or {}).get("verdict"),
                }
                for e in audit.entries(state, action="rollout.*", subject=r.version)
                if (e.evidence or {}).get("rollout_id") == r.id
            ]
            steps = r.plan.get("steps", [])
            out_rollouts.append(
                {
                    "id": r.id,
                    "version": r.version,
                    "stable_version": r.stable_version,
                    "status": r.status,
                    "step": r.step + 1,
                    "steps": len(steps),
                    "plan": r.plan.get("name"),
                    "started": _utc(r.created_at),
                    "ended": _utc(r.ended_at),
                    "end_reason": r.end_reason,
                    "last_verdict": (r.last_verdict or {}).get("verdict"),
                    "incident_id": r.incident_id,
                    "trail": trail,
                }
            )
        out_incidents = []
        for inc in incidents.list_incidents(state):
            if not (
                inc.status != "closed" or _overlaps(inc.detected_at, inc.updated_at, start, end)
            ):
                continue
            t = inc.trigger or {}
            out_incidents.append(
                {
                    "id": inc.id,
                    "status": inc.status,
                    "severity": inc.severity,
                    "version": inc.version,
                    "stable_version": inc.stable_version,
                    "rule_id": inc.rule_id,
                    "rule": t.get("title"),
                    "detected_at": _utc(inc.detected_at),
                    "evidence": {k: t.get(k) for k in EVIDENCE_KEYS if k in t},
                    "steps": list(inc.steps),
                    "rca_dir": inc.rca_dir,
                }
            )
        versions = registry.list_versions(state)
        touched: set[str] = {str(i["version"]) for i in out_incidents} | {
            v.version for v in versions if v.status == "quarantined"
        }
        releases = []
        for version in sorted(touched):
            for req in registry.release_requests_of(state, version):
                ev = req.evidence or {}
                releases.append(
                    {
                        "version": version,
                        "status": req.status,
                        "requested_by": req.requested_by,
                        "requested_at": _utc(req.requested_at),
                        "decided_by": req.decided_by,
                        "decided_at": _utc(req.decided_at),
                        "eval_run": ev.get("eval_run_name"),
                        "baseline_run": ev.get("baseline_run_name"),
                        "gate": ev.get("gate"),
                        "gate_passed": ev.get("passed"),
                    }
                )
        quarantined = [
            {
                "version": v.version,
                "status": v.status,
                "quarantined_at": _utc(v.quarantined_at),
                "reason": v.quarantine_reason,
            }
            for v in versions
            if v.version in touched
        ]
        return {
            "rollouts": out_rollouts,
            "incidents": out_incidents,
            "quarantined": quarantined,
            "releases": releases,
        }
    finally:
        state.close()


def _t(v: Any) -> str:
    if isinstance(v, datetime):
        return f"{v:%Y-%m-%d %H:%M}"
    return "—" if v is None else str(v)


def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def evidence_text(ev: dict[str, Any]) -> str:
    if not ev:
        return "—"
    return (
        f"{ev.get('metric', '')} {_num(ev.get('value'))} vs {_num(ev.get('baseline_value'))} "
        f"({ev.get('baseline') or '—'}), n {_num(ev.get('n'))} / {_num(ev.get('n_baseline'))}, "
        f"threshold {_num(ev.get('threshold'))} {ev.get('comparator') or ''}, "
        f"p = {_num(ev.get('p_value'))}"
    ).strip()


def markdown_lines(sop: dict[str, Any]) -> list[str]:
    """The section as Markdown: one table each for rollouts, incidents and re-validation."""
    lines = ["## 3. Rollouts and incidents", ""]
    if not (sop.get("rollouts") or sop.get("incidents") or sop.get("quarantined")):
        return [*lines, "No rollout, rollback or incident this week.", ""]
    lines += [
        "### Rollouts",
        "",
        "| Rollout | Version | Against | Plan | Step | Status | Judge | Started | Ended |",
        "|---:|:---|:---|:---|---:|:---|:---|:---|:---|",
    ]
    for r in sop.get("rollouts", []):
        lines.append(
            f"| {r['id']} | {r['version']} | {r['stable_version']} | {r['plan'] or '—'} "
            f"| {r['step']}/{r['steps']} | **{r['status']}** | {r['last_verdict'] or '—'} "
            f"| {_t(r['started'])} | {_t(r['ended'])} |"
        )
    steps = [(r["id"], s) for r in sop.get("rollouts", []) for s in r["trail"]]
    if steps:
        lines += ["", "**Rollout steps:**", ""]
        for rid, s in steps:
            extra = f" (verdict {s['verdict']})" if s.get("verdict") else ""
            lines.append(
                f"- rollout {rid}: {s['action']} by {s['actor']}{extra} — {s['reason'] or ''}"
            )
    lines += [
        "",
        "### Rollbacks and incidents",
        "",
        "| Incident | Status | Version | Back to | Rule | Evidence | Detected |",
        "|:---|:---|:---|:---|:---|:---|:---|",
    ]
    for i in sop.get("incidents", []):
        lines.append(
            f"| {i['id']} | **{i['status']}** | {i['version']} | {i['stable_version'] or '—'} "
            f"| {i['rule_id']} | {evidence_text(i['evidence'])} | {_t(i['detected_at'])} |"
        )
    if sop.get("quarantined") or sop.get("releases"):
        lines += [
            "",
            "### Quarantine and re-validation",
            "",
            "| Version | Status now | Quarantined | Reason |",
            "|:---|:---|:---|:---|",
        ]
        for q in sop.get("quarantined", []):
            lines.append(
                f"| {q['version']} | **{q['status']}** | {_t(q['quarantined_at'])} "
                f"| {q['reason'] or '—'} |"
            )
        if sop.get("releases"):
            lines += [
                "",
                "| Version | Release | Asked by | Decided by | Eval run | Gate |",
                "|:---|:---|:---|:---|:---|:---|",
            ]
            for rel in sop["releases"]:
                gate = (
                    "—"
                    if rel["gate"] is None
                    else f"{rel['gate']}: {'passed' if rel['gate_passed'] else 'failed'}"
                )
                lines.append(
                    f"| {rel['version']} | {rel['status']} | {rel['requested_by']} "
                    f"| {rel['decided_by'] or '—'} | {rel['eval_run'] or '—'} | {gate} |"
                )
    lines.append("")
    return lines
