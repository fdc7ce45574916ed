"""The rollback transaction of SOP-MLOPS-003: one call, persisted step by step, safe to repeat.

Steps, in this order (the first restores service, the rest can take their time):

1. ``routes``: route 100 % to the previous stable version (the canary removed, a shadow of the
   bad version removed). A gateway re-reads the route table within its cache time (0.5 s);
2. ``quarantine``: the bad version cannot be routed, shadowed or promoted until released;
3. ``rollout``: the rollout, if one was running, ends as ``rolled_back``;
4. ``rca``: the logs of the ``rca_lookback`` window before the trigger, as Parquet and JSONL;
5. ``notify``: one outbox row per configured channel, delivered in the background with retries
   (a channel that is down neither delays nor undoes anything above);
6. ``mitigated``: the incident is marked mitigated.

The incident is found again by its key (``rollout:<id>``, or the version and the stable version
when no rollout ran), so running the transaction again — after a crash, or from another process
that saw the same trigger — completes the missing steps and repeats none: a step is recorded in
the same database transaction as its effect where it can be, and otherwise (the route change, the
files) its effect is checked before it is made again.

Run under a lease (``fence=``, as the rollout controller does), each of those transactions first
checks that the lease is still this holder's at its generation, so a holder that another instance
has replaced (a paused process, a clock that jumped) stops at its next step instead of acting.
The route change is checked in its own transaction just before it is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from modelwarden.governance import audit, incidents, notify, registry
from modelwarden.governance.lease import Lease
from modelwarden.governance.routes import RouteSpec, Upstream, current_routes
from modelwarden.policy.spec import Policy, parse_duration
from modelwarden.rollout import store as rollout_store
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

STEPS = ("routes", "quarantine", "rollout", "rca", "notify", "mitigated")


@dataclass
class RollbackResult:
    incident: incidents.Incident
    created: bool
    done_now: list[str] = field(default_factory=list)
    route_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident.to_dict(),
            "created": self.created,
            "done_now": self.done_now,
            "route_version": self.route_version,
        }


def incident_key(version: str, stable_version: str, rollout_id: int | None) -> str:
    return (
        f"rollout:{rollout_id}"
        if rollout_id is not None
        else f"rollback:{version}->{stable_version}"
    )


def _target(live: Any, version: str, stable: Upstream) -> RouteSpec:
    keep_shadow = (
        live is not None
        and live.shadow is not None
        and live.shadow.version not in (version, stable.version)
    )
    return RouteSpec(
        stable=stable,
        shadow=live.shadow if keep_shadow else None,
        shadow_sample=live.shadow_sample if keep_shadow else 0.0,
        note=f"rollback of {version}",
    )


def _in_place(live: Any, target: RouteSpec) -> bool:
    return (
        live is not None
        and live.stable == target.stable
        and live.canary is None
        and live.shadow == target.shadow
    )


@contextmanager
def _fenced(state: StateStore, fence: Lease | None) -> Iterator[Connection]:
    """:func:`audit.transaction`, checking ``fence`` first when there is one."""
    with audit.transaction(state) as con:
        if fence is not None:
            fence.check_in(con)
        yield con


def rollback(
    settings: Settings,
    version: str,
    stable: Upstream,
    trigger: dict[str, Any],
    *,
    policy: Policy,
    actor: str = "controller",
    rollout_id: int | None = None,
    bad_url: str | None = None,
    state: StateStore | None = None,
    notifier: notify.Notifier | None = None,
    now: datetime | None = None,
    fence: Lease | None = None,
) -> RollbackResult:
    """Run (or finish) the rollback of ``version`` to ``stable``; see the module's docstring."""
    own = state is None
    st = state or StateStore.of(settings)
    try:
        return _run(
            settings,
            st,
            version,
            stable,
            trigger,
            policy,
            actor,
            rollout_id,
            bad_url,
            notifier,
            now or datetime.now(UTC),
            fence,
        )
    finally:
        if own:
            st.close()


def _run(
    settings: Settings,
    state: StateStore,
    version: str,
    stable: Upstream,
    trigger: dict[str, Any],
    policy: Policy,
    actor: str,
    rollout_id: int | None,
    bad_url: str | None,
    notifier: notify.Notifier | None,
    now: datetime,
    fence: Lease | None = None,
) -> RollbackResult:
    key = incident_key(version, stable.version, rollout_id)
    detected = trigger.get("evaluated_at") or now
    if isinstance(detected, str):
        detected = datetime.fromisoformat(detected.replace("Z", "+00:00"))
    clean_trigger = dict(audit.canonical_obj(trigger))
    with _fenced(state, fence) as con:
        inc, created = incidents.open_in(
            con,
            key,
            {
                "severity": "rollback",
                "version": version,
                "stable_version": stable.version,
                "rollout_id": rollout_id,
                "rule_id": str(trigger.get("rule_id", "manual")),
                "trigger": clean_trigger,
                "detected_at": detected,
                "actor": actor,
            },
        )
        if created:
            audit.append(
                con,
                actor,
                "incident.open",
                inc.id,
                f"{trigger.get('rule_id')} fired for {version}"
                if trigger.get("source") != "operator"
                else f"{actor} rolled back {version}: {trigger.get('reason')}",
                {
                    "key": key,
                    "version": version,
                    "stable": stable.version,
                    "trigger": clean_trigger,
                },
            )
    result = RollbackResult(inc, created)

    if "routes" not in inc.steps:
        live = current_routes(state)
        target = _target(live, version, stable)
        if fence is not None:
            with _fenced(state, fence):
                pass  # the route change below is its own transaction: check just before it
        if _in_place(live, target):
            result.route_version = live.version if live else None
            routes_detail: dict[str, Any] = {
                "route_version": result.route_version,
                "already": True,
                "summary": f"routes already send 100% to {stable.version}",
            }
        else:
            table = registry.set_live_routes(
                state, target, actor, f"{inc.id}: rollback of {version}"
            )
            result.route_version = table.version
            routes_detail = {
                "route_version": table.version,
                "stable": stable.version,
                "summary": f"100% of traffic to {stable.version} (route table v{table.version})",
            }
        with _fenced(state, fence) as con:
            incidents.mark_step(con, inc.id, "routes", routes_detail, actor)
        result.done_now.append("routes")

    if "quarantine" not in inc.steps:
        reason = f"{inc.id}: {trigger.get('rule_id')} ({trigger.get('scope', '—')})"
        if trigger.get("reason"):
            reason += f": {trigger['reason']}"
        with _fenced(state, fence) as con:
            changed = registry.quarantine_in(
                con, version, bad_url, reason, actor, {"incident_id": inc.id}
            )
            incidents.mark_step(
                con,
                inc.id,
                "quarantine",
                {"already": not changed, "summary": f"{version} quarantined"},
                actor,
            )
        result.done_now.append("quarantine")

    if "rollout" not in inc.steps:
        with _fenced(state, fence) as con:
            r = rollout_store.active_in(con)
            detail: dict[str, Any] = {"rollout_id": rollout_id, "summary": "no rollout to end"}
            if r is not None and rollout_id is not None and r.id == rollout_id:
                r.status, r.ended_at, r.incident_id = "rolled_back", datetime.now(UTC), inc.id
                r.end_reason = f"{inc.id}: {trigger.get('rule_id')}" + (
                    f" by {actor}: {trigger['reason']}" if trigger.get("reason") else ""
                )
                if result.route_version is not None:
                    r.route_version = result.route_version
                rollout_store.save(con, r)
                detail["summary"] = f"rollout {r.id} ended as rolled_back"
            incidents.mark_step(con, inc.id, "rollout", detail, actor)
        result.done_now.append("rollout")

    if "rca" not in inc.steps:
        manifest = incidents.write_rca(
            settings, inc.id, inc.detected_at, parse_duration(policy.rca_lookback)
        )
        path = str(incidents.rca_dir(settings, inc.id))
        rows = {k: v["rows"] for k, v in manifest["files"].items()}
        with _fenced(state, fence) as con:
            incidents.set_fields(con, inc.id, rca_dir=path)
            incidents.mark_step(
                con,
                inc.id,
                "rca",
                {
                    "dir": path,
                    "rows": rows,
                    "since": manifest["since"],
                    "until": manifest["until"],
                    "summary": f"RCA extract of the {policy.rca_lookback} before the trigger: "
                    + ", ".join(f"{v} {k}" for k, v in rows.items()),
                },
                actor,
            )
        result.done_now.append("rca")

    if "notify" not in inc.steps:
        with _fenced(state, fence) as con:
            fresh = incidents.load_in(con, inc.id)
            cfg = notify.targets(settings, policy)
            queued = notify.enqueue(con, inc.id, cfg, fresh.summary(policy.sop_id))
            channels = [c for c, _t, _p in notify.payloads(cfg, fresh.summary(policy.sop_id))]
            incidents.mark_step(
                con,
                inc.id,
                "notify",
                {
                    "queued": queued,
                    "channels": channels,
                    "summary": f"{len(channels)} notification(s) queued: "
                    f"{', '.join(channels) or 'no channel configured'}",
                },
                actor,
            )
        result.done_now.append("notify")
    if notifier is not None:
        notifier.kick()

    if "mitigated" not in inc.steps:
        with _fenced(state, fence) as con:
            incidents.set_fields(con, inc.id, status="mitigated")
            incidents.mark_step(
                con,
                inc.id,
                "mitigated",
                {"summary": f"{stable.version} serves 100%; {version} quarantined"},
                actor,
            )
        result.done_now.append("mitigated")

    result.incident = incidents.get(state, inc.id)
    return result


def raise_alert(
    settings: Settings,
    state: StateStore,
    version: str,
    stable_version: str | None,
    trigger: dict[str, Any],
    *,
    policy: Policy,
    rollout_id: int | None,
    actor: str = "controller",
    notifier: notify.Notifier | None = None,
) -> incidents.Incident:
    """An alert-severity rule fired: an incident and its notifications, no traffic moved."""
    key = f"alert:{rollout_id}:{version}:{trigger.get('rule_id')}:{trigger.get('scope')}"
    clean = dict(audit.canonical_obj(trigger))
    detected = trigger.get("evaluated_at") or datetime.now(UTC)
    with audit.transaction(state) as con:
        inc, created = incidents.open_in(
            con,
            key,
            {
                "severity": "alert",
                "version": version,
                "stable_version": stable_version,
                "rollout_id": rollout_id,
                "rule_id": str(trigger.get("rule_id")),
                "trigger": clean,
                "detected_at": detected,
                "actor": actor,
            },
        )
        if created:
            audit.append(
                con,
                actor,
                "incident.alert",
                inc.id,
                f"{trigger.get('rule_id')} fired for {version}",
                {"trigger": clean},
            )
        if "notify" not in inc.steps:
            fresh = incidents.load_in(con, inc.id)
            cfg = notify.targets(settings, policy)
            queued = notify.enqueue(con, inc.id, cfg, fresh.summary(policy.sop_id))
            incidents.mark_step(
                con,
                inc.id,
                "notify",
                {"queued": queued, "summary": f"{queued} alert notification(s) queued"},
                actor,
            )
    if notifier is not None:
        notifier.kick()
    return incidents.get(state, inc.id)


__all__ = ["STEPS", "RollbackResult", "incident_key", "raise_alert", "rollback"]
