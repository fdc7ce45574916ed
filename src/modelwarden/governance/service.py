"""Governance service: what the CLI, the HTTP API and the console call for versions, releases,
incidents, notifications, routes, keys and the audit log, most answers as JSON-able data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelwarden.errors import InputError, NotFoundError
from modelwarden.governance import audit, incidents, keys, notify, registry
from modelwarden.governance.keys import ApiKey, ForbiddenError, create_key
from modelwarden.governance.registry import approve_release
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes, route_history
from modelwarden.policy import store as policy_service
from modelwarden.policy.spec import Policy
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

RCA_FORMATS = {"parquet": "application/vnd.apache.parquet", "jsonl": "application/x-ndjson"}


# ---- who acts ---------------------------------------------------------------------------------
def actor_of_key(state: StateStore, secret: str | None) -> str:
    """The audit log's name for whoever runs a command: the key's, else the local user's."""
    return registry.key_actor(registry.identify(state, secret)) if secret else registry.cli_actor()


def authorized_actor(state: StateStore, secret: str | None, action: str, subject: str) -> str:
    """The actor behind ``secret`` if its role may ``action``; otherwise an audited refusal."""
    return keys.require(state, secret, action, subject).actor


# ---- versions and releases ----------------------------------------------------------------------
def list_versions(state: StateStore, status: str | None = None) -> list[dict[str, Any]]:
    """Every registered version (``registry list``, ``GET /v1/registry/versions``)."""
    return [v.to_dict() for v in registry.list_versions(state, status)]


def add_version(
    state: StateStore,
    version: str,
    endpoint: str,
    actor: str,
    notes: str | None = None,
    stable: bool = False,
) -> dict[str, Any]:
    """Register a version in staging, or as stable (and routed) while no version is."""
    info = registry.add(
        state, version, endpoint, actor, notes=notes, status="stable" if stable else "staging"
    )
    return info.to_dict()


def quarantine_version(state: StateStore, version: str, reason: str, actor: str) -> dict[str, Any]:
    """Quarantine a version and take it out of the routes; ``changed`` is false if it was."""
    changed = registry.quarantine(state, version, reason, actor)
    return {**registry.get(state, version).to_dict(), "changed": changed}


def request_release(state: StateStore, version: str, key: ApiKey, reason: str) -> dict[str, Any]:
    """Ask for a quarantined version's release (a different approver key approves)."""
    return registry.request_release(state, version, key, reason).to_dict()


# approve_release (registry's, imported above): release a quarantined version back to staging if
# its re-validation passes the gate.


def retire_version(state: StateStore, version: str, actor: str, reason: str = "") -> dict[str, Any]:
    """Retire a version that no route uses."""
    return registry.retire(state, version, actor, reason).to_dict()


def set_version_endpoint(
    state: StateStore, version: str, endpoint: str, actor: str, reason: str = ""
) -> dict[str, Any]:
    """Point a version that serves no traffic at another server."""
    return registry.set_endpoint(state, version, endpoint, actor, reason).to_dict()


def version_evidence(
    state: StateStore, version: str, kind: str | None = None
) -> list[dict[str, Any]]:
    """A registered version's evidence (404 for a version that is not registered)."""
    registry.get(state, version)
    return registry.evidence(state, version, kind)


def version_scorecard(settings: Settings, state: StateStore, version: str) -> dict[str, Any]:
    """A registered version's scorecard: metrics with intervals, gate results, human review."""
    # lazy: the scorecard pulls in scipy and numpy; keeps the registry commands' start-up fast
    from modelwarden.governance.scorecard import scorecard

    registry.get(state, version)
    return scorecard(settings, version, state=state)


def version_detail(state: StateStore, version: str) -> dict[str, Any]:
    """A version: status, release requests, evidence and its audit trail (``registry show``)."""
    info = registry.get(state, version)
    return {
        "version": info.to_dict(),
        "release_requests": [r.to_dict() for r in registry.release_requests_of(state, version)],
        "evidence": registry.evidence(state, version),
        "audit": [e.to_dict() for e in audit.entries(state, subject=version)],
    }


def list_incidents(state: StateStore, status: str | None = None) -> list[dict[str, Any]]:
    """Incidents, newest first (``incidents list``, ``GET /v1/incidents``)."""
    return [i.to_dict() for i in incidents.list_incidents(state, status)]


def close_incident(state: StateStore, incident_id: str, actor: str, note: str) -> dict[str, Any]:
    """Close an incident with its root cause and resolution."""
    return incidents.close(state, incident_id, actor, note).to_dict()


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


def rca_file(
    settings: Settings, incident_id: str, table: str, fmt: str, state: StateStore | None = None
) -> Path:
    """The path of one table of an incident's RCA log extract, in ``fmt`` (parquet or jsonl).

    With ``state``, an incident that does not exist is named as such first.
    """
    if state is not None:
        incidents.get(state, incident_id)
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


def verify_audit(state: StateStore, checkpoints: Path | None = None) -> audit.Verification:
    """Recompute the hash chain and its MACs; compare the log with the last signed checkpoint."""
    return audit.verify(state, checkpoints=checkpoints)


def audit_checkpoint(
    settings: Settings,
    state: StateStore,
    file: Path | None = None,
    policy_path: Path | None = None,
) -> dict[str, Any]:
    """Sign the audit log's head, append it to the checkpoint file and send it to the policy's
    notification channels; ``notifications`` says how many deliveries were queued."""
    cp = audit.checkpoint(state, file)
    cfg = policy_service.load_policy(settings, policy_path, state=state).notify
    with state.engine.begin() as con:
        queued = notify.enqueue_event(
            con,
            f"audit-checkpoint-{cp['seq']}-{cp['at']}",
            cfg,
            "modelwarden.audit_checkpoint",
            cp,
            f"ModelWarden audit checkpoint: seq {cp['seq']} hash {cp['hash']} "
            f"mac {cp['mac']} at {cp['at']} signature {cp['signature']}",
        )
    if queued:
        notify.deliver_due(state)
    return {**cp, "file": str(audit.checkpoint_path(state, file)), "notifications": queued}


# ---- notifications ------------------------------------------------------------------------------
def deliver_notifications(state: StateStore) -> dict[str, Any]:
    """Deliver every notification due now; ``all_sent`` is false if any attempt failed."""
    done = notify.deliver_due(state)
    return {
        "deliveries": [dict(d.__dict__) for d in done],
        "all_sent": all(d.status == "sent" for d in done),
    }


def _targets_view(settings: Settings, policy: Policy) -> dict[str, Any]:
    cfg = notify.targets(settings, policy)
    return {
        "targets": {**cfg.model_dump(mode="json"), "channels": cfg.channels()},
        "overridden": sorted(notify.env_overrides(settings)),
    }


def notification_targets(settings: Settings, policy_path: Path | None = None) -> dict[str, Any]:
    """The notification targets in force: the policy's with ``MODELWARDEN_NOTIFY_*`` over them.

    ``targets`` are the values and channels; ``overridden`` names the fields the environment set.
    """
    return _targets_view(settings, policy_service.load_policy(settings, policy_path))


def set_notification_targets(
    settings: Settings,
    state: StateStore,
    changes: dict[str, Any],
    actor: str,
    clear: list[str] | None = None,
    policy_path: Path | None = None,
) -> dict[str, Any]:
    """Set notification targets in the policy file (audited); ``saved`` is what the file now
    holds, ``targets`` and ``overridden`` what is in force (environment over the file)."""
    if not any(v is not None for v in changes.values()) and not clear:
        raise InputError("nothing to set: give --webhook, --slack, --email, --smtp-host or --clear")
    pol = notify.configure(settings, state, changes, actor, clear or None, policy_path)
    saved = {**pol.notify.model_dump(mode="json"), "channels": pol.notify.channels()}
    return {"saved": saved, **_targets_view(settings, pol)}


# ---- routes -------------------------------------------------------------------------------------
def routes_now(state: StateStore) -> dict[str, Any] | None:
    """The live route table, or None while no routes are set."""
    table = current_routes(state)
    return table.to_dict() if table is not None else None


def routes_history(state: StateStore, limit: int = 50) -> list[dict[str, Any]]:
    """Every route table, newest first."""
    return [t.to_dict() for t in route_history(state, limit)]


def set_routes(
    state: StateStore,
    spec: RouteSpec,
    actor: str,
    note: str = "",
    if_version: int | None = None,
) -> dict[str, Any]:
    """Replace the route table (a new version; what is left out is off). A table that names a
    quarantined version is refused, and every change and refusal is audited."""
    return registry.set_live_routes(state, spec, actor, note, if_version).to_dict()


@dataclass(frozen=True)
class RouteOptions:
    """A route table as the command line states it: ``VERSION=URL`` texts and plain values."""

    stable: str | None = None
    canary: str | None = None
    weight: float | None = None
    plants: str | None = None
    shadow: str | None = None
    shadow_sample: float | None = None
    note: str | None = None


def route_spec(state: StateStore, opts: RouteOptions) -> RouteSpec:
    """The :class:`RouteSpec` of ``opts``; without ``stable`` the live stable version is kept."""
    if opts.stable is None:
        live = current_routes(state)
        if live is None:
            raise InputError("no routes are set yet; give --stable VERSION=URL", field="stable")
        stable_up = live.stable
    else:
        stable_up = Upstream.parse(opts.stable, "stable")
    if opts.canary is not None and opts.weight is None:
        raise InputError("a canary needs --weight (percent of users, 0-100)", field="weight")
    plants = [p.strip() for p in opts.plants.split(",") if p.strip()] if opts.plants else []
    sample = opts.shadow_sample
    try:
        return RouteSpec(
            stable=stable_up,
            canary=Upstream.parse(opts.canary, "canary") if opts.canary else None,
            canary_weight=opts.weight or 0.0,
            canary_plants=plants,
            shadow=Upstream.parse(opts.shadow, "shadow") if opts.shadow else None,
            shadow_sample=(sample if sample is not None else 1.0)
            if opts.shadow
            else (sample or 0.0),
            note=opts.note,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or None
        raise InputError(str(err["msg"]).removeprefix("Value error, "), field=field) from None


def set_routes_with_key(
    state: StateStore, secret: str | None, opts: RouteOptions
) -> dict[str, Any]:
    """``routes set``: under the key's name when one is given (its role must allow routes; a
    refusal is audited), else the local user's; then :func:`set_routes`."""
    actor = registry.cli_actor()
    if secret:
        who = registry.identify(state, secret)
        actor = registry.key_actor(who)
        with registry.refusals_audited(state, actor, "routes.refused", "routes"):
            if not keys.may(who.role, "routes"):
                raise ForbiddenError(
                    f"a key with role {who.role!r} may not change routes; it needs operator "
                    "or admin",
                    field="key",
                )
    return set_routes(state, route_spec(state, opts), actor, opts.note or "")


# ---- keys ---------------------------------------------------------------------------------------
# create_key (keys', imported above): a new API key, its secret shown once and its record.


def list_keys(state: StateStore) -> list[dict[str, Any]]:
    """Every key, never a secret."""
    return [k.to_dict() for k in keys.list_keys(state)]


def revoke_key(state: StateStore, key_id: int, by: str | None = None) -> dict[str, Any]:
    """Revoke a key; a running server stops accepting it within a second."""
    return keys.revoke_key(state, key_id, by=by).to_dict()


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
    "RouteOptions",
    "actor_of_key",
    "add_version",
    "approve_release",
    "audit_checkpoint",
    "audit_entries",
    "authorized_actor",
    "close_incident",
    "create_key",
    "deliver_notifications",
    "incident_detail",
    "list_incidents",
    "list_keys",
    "list_versions",
    "notification_status",
    "notification_targets",
    "quarantine_version",
    "rca_file",
    "request_release",
    "retire_version",
    "revoke_key",
    "route_spec",
    "routes_history",
    "routes_now",
    "scorecard_text",
    "set_notification_targets",
    "set_routes",
    "set_routes_with_key",
    "set_version_endpoint",
    "verify_audit",
    "version_detail",
    "version_evidence",
    "version_scorecard",
]
