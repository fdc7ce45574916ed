"""Governance service: what the CLI, the HTTP API and the console call for versions, releases,
incidents and the audit log, each answer as JSON-able data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError, NotFoundError
from modelwarden.governance import audit, incidents, notify, registry
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

RCA_FORMATS = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}


def version_detail(state: StateStore, version: str) -> dict[str, Any]:
    """A version: status, release requests, evidence and its audit trail (``registry show``)."""
    info = registry.get(state, version)
    return {
        "version": info.to_dict(),
        "release_requests": [r.to_dict() for r in registry.release_requests_of(state, version)],
        "evidence": registry.evidence(state, version),
        "audit": [e.to_dict() for e in audit.entries(state, subject=version)],
    }


def incident_detail(state: StateStore, incident_id: str) -> dict[str, Any]:
    """An incident with its timeline and notifications (``incidents show``)."""
    inc = incidents.get(state, incident_id)
    return {
        **inc.to_dict(),
        "timeline": incidents.timeline(state, inc),
        "notifications": [
            {**n, "target": notify.redact_target(n["target"])}
            for n in notify.of_incident(state, inc.id)
        ],
    }


def notification_status(
    state: StateStore, status: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """The notification outbox: counts and the newest rows (``notify status``).

    ``healthy`` is false while any delivery is being retried or has failed for good.
    """
    if status is not None and status not in notify.STATUSES:
        raise InputError(f"status must be one of {', '.join(notify.STATUSES)}", field="status")
    if limit < 1:
        raise InputError("limit must be at least 1", field="limit")
    counts = notify.outbox_counts(state)
    return {
        "healthy": counts["retrying"] == 0 and counts["failed"] == 0,
        "counts": counts,
        "notifications": notify.outbox(state, status, limit),
    }


def rca_file(settings: Settings, incident_id: str, table: str, fmt: str) -> Path:
    """The path of one table of an incident's RCA log extract, in ``fmt`` (parquet or jsonl)."""
    if fmt not in RCA_FORMATS:
        raise InputError(f"format must be one of {', '.join(RCA_FORMATS)}", field="format")
    if table not in incidents.RCA_TABLES:
        raise InputError(f"table must be one of {', '.join(incidents.RCA_TABLES)}", field="table")
    path = incidents.rca_dir(settings, incident_id) / f"{table}.{fmt}"
    if not path.is_file():
        raise NotFoundError(
            f"incident {incident_id} has no RCA extract of {table} (yet)", field="incident_id"
        )
    return path


def audit_entries(
    state: StateStore,
    subject: str | None = None,
    action: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Audit entries, newest first (``audit list``)."""
    rows = audit.entries(state, subject=subject, action=action, newest_first=True, limit=limit)
    return [e.to_dict() for e in rows]


def scorecard_text(settings: Settings, version: str, fmt: str = "md") -> str:
    """A version's scorecard as a Markdown page (``md``) or indented JSON (``json``)."""
    if fmt not in ("md", "json"):
        raise InputError("format must be md or json", field="format")
    # lazy: the scorecard's statistics load SciPy, which the other reads here do not need
    from modelwarden.governance import scorecard

    card = scorecard.scorecard(settings, version)
    if fmt == "md":
        return scorecard.render_markdown(card)
    return json.dumps(card, indent=2, default=str, ensure_ascii=False)


__all__ = [
    "RCA_FORMATS",
    "audit_entries",
    "incident_detail",
    "rca_file",
    "scorecard_text",
    "version_detail",
]
