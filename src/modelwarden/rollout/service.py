"""Rollout service: what the CLI, the HTTP API and the console call to move versions and traffic.

The registry knows versions; this layer knows rollouts too, so the rules that need both live here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modelwarden.errors import ConflictError, InputError, LeaseHeld
from modelwarden.governance import lease, notify, registry
from modelwarden.governance.registry import VersionInfo
from modelwarden.governance.routes import RouteTable, current_routes
from modelwarden.policy import service as policy_service
from modelwarden.policy.engine import FIRE
from modelwarden.policy.spec import Policy
from modelwarden.rollout import controller, shadow
from modelwarden.rollout import store as rollout_store
from modelwarden.rollout.plan import Plan, default_plan
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

# How long a manual tick waits for a tick under way on another instance.
TICK_WAIT_S = 30.0


def promote_version(
    state: StateStore, version: str, to: str, actor: str, reason: str = ""
) -> VersionInfo:
    """``registry promote``: refused while a rollout of the version is under way, since the
    rollout controller owns that version's traffic until it finishes."""
    active = rollout_store.active(state)
    if active is not None and active.version == version:
        raise ConflictError(
            f"a rollout of {version} is under way (step {active.step + 1}); advance it with "
            "modelwarden rollout promote",
            field="version",
        )
    return registry.promote(state, version, to, actor, reason)


# ---- rollouts as the HTTP API and the console see them ------------------------------------------
OPERATIONS = ("pause", "resume", "promote", "rollback", "abort")


def list_rollouts(state: StateStore, limit: int = 50) -> list[dict[str, Any]]:
    """Every rollout, newest first."""
    return [r.to_dict() for r in rollout_store.list_rollouts(state, limit)]


def rule_states(policy: Policy, rollout: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each SOP rule of ``policy`` with its last evaluation per scope in ``rollout``'s last tick:
    value against threshold, how long it has held, and its sustain time."""
    evaluated: dict[str, list[dict[str, Any]]] = {}
    for res in ((rollout or {}).get("engine_state") or {}).get("rules", []):
        evaluated.setdefault(res["rule_id"], []).append(res)
    out = []
    for rule in policy.rules:
        base = {
            "rule_id": rule.id,
            "title": rule.title,
            "metric": rule.metric,
            "comparator": rule.comparator,
            "threshold": rule.threshold,
            "window": rule.window,
            "sustain": rule.sustain,
            "severity": rule.severity,
        }
        results = evaluated.get(rule.id) or [{}]
        for res in results:
            out.append(
                {
                    **base,
                    "scope": res.get("scope"),
                    "status": res.get("status", "not evaluated"),
                    "value": res.get("value"),
                    "baseline_value": res.get("baseline_value"),
                    "n": res.get("n"),
                    "p_value": res.get("p_value"),
                    "holding_since": res.get("holding_since"),
                    "message": res.get("message", ""),
                }
            )
    return out


def rollout_view(
    settings: Settings, state: StateStore, policy: Policy | None = None
) -> dict[str, Any]:
    """The rollout under way (else the latest), its traffic split, the judge's last verdict and
    every SOP rule's state: what ``GET /v1/rollouts/current`` answers and the console shows."""
    pol = policy or policy_service.load_policy(settings, state=state)
    current = controller.status(settings, state)
    routes = (current or {}).get("routes")
    if current is None:
        live = current_routes(state)
        routes = live.to_dict() if live is not None else None
    return {
        "rollout": current,
        "active": bool(current and current["status"] in rollout_store.ACTIVE),
        "routes": routes,
        "verdict": (current or {}).get("last_verdict"),
        "rules": rule_states(pol, current),
        "sop_id": pol.sop_id,
    }


def locked_tick(
    settings: Settings,
    state: StateStore,
    now: datetime | None = None,
    *,
    policy: Policy | None = None,
    notifier: notify.Notifier | None = None,
    wait_s: float = TICK_WAIT_S,
    holder: str | None = None,
) -> controller.TickReport:
    """One controller tick on demand, never beside another tick (what :func:`tick` runs).

    It takes the ``tick`` lock that the leading ``serve`` instance's controller takes around each
    of its ticks (:mod:`modelwarden.governance.lease`), its writes fenced by the lock's
    generation, and releases it after. A tick under way elsewhere is waited for, up to
    ``wait_s``; one still running after that is reported by :class:`LeaseHeld` (exit 1).
    """
    lock = lease.Lease(
        state,
        lease.TICK,
        holder or f"tick@{lease.instance_name()}",
        lease.TICK_TTL_S,
        audit_takes=False,
    )
    before = rollout_store.active(state)
    deadline = time.monotonic() + wait_s
    while not lock.acquire():
        info = lease.holder_of(state, lease.TICK)
        if time.monotonic() >= deadline:
            until = f"{info.expires_at:%Y-%m-%d %H:%M:%S} UTC" if info else "now"
            raise LeaseHeld(
                "another instance holds the controller's tick lock "
                f"({info.holder if info else 'just released'}, until {until}): a tick is under "
                "way there; try again when it has finished",
                field="lease",
                holder=info.holder if info else None,
                expires_at=info.expires_at.isoformat() if info else None,
            )
        time.sleep(0.1)
    try:
        rep = controller.tick(
            settings, now, state=state, policy=policy, notifier=notifier, fence=lock
        )
    finally:
        lock.release()
    if rep.action == "none" and before is not None:
        return _ended_meanwhile(state, before.id, rep)
    return rep


def _ended_meanwhile(
    state: StateStore, rollout_id: int, rep: controller.TickReport
) -> controller.TickReport:
    """The report of a tick that found no rollout because another instance's tick, which this
    one waited for, rolled it back: that rollback, with the rules it saw (the same exit code)."""
    r = rollout_store.get(state, rollout_id)
    if r.status != "rolled_back" or r.incident_id is None:
        return rep
    rules = list((r.engine_state or {}).get("rules", []))
    rep.action, rep.status, rep.rollout_id, rep.version, rep.step = (
        "rollback",
        r.status,
        r.id,
        r.version,
        r.step,
    )
    rep.incident_id, rep.route_version = r.incident_id, r.route_version
    rep.rules, rep.fired = rules, [x for x in rules if x.get("status") == FIRE]
    rep.verdict = r.last_verdict or None
    rep.message = f"{r.end_reason} (by the tick this one waited for); incident {r.incident_id}"
    return rep


def start_rollout(
    settings: Settings,
    state: StateStore,
    version: str,
    actor: str,
    plan_yaml: str | None = None,
    plan_path: Path | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Start a canary rollout of ``version`` with a plan given as YAML text or a file (default:
    the built-in plan), at ``now`` (default: the wall clock)."""
    plan = Plan.from_yaml(plan_yaml, "plan") if plan_yaml else Plan.load(plan_path)
    controller.start(settings, version, plan, actor, now=now, state=state)
    return rollout_view(settings, state)


def _deliver_now(state: StateStore, notifier: notify.Notifier, wait_s: float) -> None:
    """Deliver what is due with ``notifier`` for up to ``wait_s`` seconds, then stop it."""
    if notify.next_due(state) is None:
        return
    notifier.start()
    notifier.drain(wait_s)
    notifier.stop()


def operate(
    settings: Settings,
    state: StateStore,
    operation: str,
    actor: str,
    reason: str,
    notifier: notify.Notifier | None = None,
    *,
    now: datetime | None = None,
    policy_path: Path | None = None,
    notify_wait: float = 0.0,
    reason_required: bool = True,
) -> dict[str, Any]:
    """An operator's pause, resume, promote, abort or rollback of the rollout under way.

    ``rollback`` runs the SOP's rollback transaction, as a rule that fires does (100 % of traffic
    to the stable version, the canary quarantined, an incident with the RCA log extract, the
    notifications), with the operator's identity and reason as its trigger. Without a running
    ``notifier`` (a server's), one is made here and given ``notify_wait`` seconds to deliver.
    ``now`` applies to ``promote``; ``policy_path`` to ``rollback``.
    """
    if operation not in OPERATIONS:
        raise InputError(f"operation must be one of {', '.join(OPERATIONS)}", field="operation")
    if reason_required and not reason.strip():
        raise InputError("say why (a reason goes into the audit log)", field="reason")
    pol = policy_service.load_policy(settings, policy_path, state=state)
    if operation == "rollback":
        own = notify.Notifier(state) if notifier is None and notify_wait > 0 else None
        r = controller.operator_rollback(
            settings, actor, reason, state=state, policy=pol, notifier=notifier or own
        )
        if own is not None and r.incident_id:
            _deliver_now(state, own, notify_wait)
    elif operation == "promote":
        controller.promote(settings, actor, reason, now=now, state=state)
    else:
        getattr(controller, operation)(settings, actor, reason, state=state)
    return rollout_view(settings, state, pol)


@dataclass
class Tick:
    """A controller tick's report, and the notifications of its incident not delivered yet."""

    report: controller.TickReport
    undelivered: list[dict[str, Any]] = field(default_factory=list)


def tick(
    settings: Settings,
    state: StateStore,
    now: datetime | None = None,
    policy_path: Path | None = None,
    notify_wait: float = 10.0,
) -> Tick:
    """One controller tick (the SOP policy, the judge at the end of a hold, the next step); after
    a rollback its notifications get up to ``notify_wait`` seconds to be delivered."""
    pol = policy_service.load_policy(settings, policy_path, state=state)
    notifier = notify.Notifier(state)
    rep = locked_tick(settings, state, now, policy=pol, notifier=notifier)
    undelivered: list[dict[str, Any]] = []
    if rep.incident_id and notify.next_due(state) is not None:
        _deliver_now(state, notifier, notify_wait)
        undelivered = [
            n for n in notify.of_incident(state, rep.incident_id) if n["status"] == "pending"
        ]
    return Tick(rep, undelivered)


def write_default_plan(out: Path | None = None, force: bool = False) -> str:
    """The default rollout plan as YAML; written to ``out`` too when given (``force`` to
    overwrite a file that exists)."""
    text = default_plan().to_yaml()
    if out is None:
        return text
    if out.exists() and not force:
        raise InputError(f"{out} exists; add --force to overwrite it", field="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


# ---- shadow testing ----------------------------------------------------------------------------
def start_shadow(
    settings: Settings, state: StateStore, version: str, sample: float, actor: str
) -> RouteTable:
    """Copy a share of live requests to ``version``; its answers are logged, never returned."""
    return shadow.start(settings, version, sample, actor, state=state)


def stop_shadow(settings: Settings, state: StateStore, actor: str) -> RouteTable:
    """Stop sending shadow copies."""
    return shadow.stop(settings, actor, state=state)


def shadow_report(
    settings: Settings,
    state: StateStore,
    version: str | None,
    since: datetime | None,
    until: datetime | None,
    top: int,
    actor: str,
) -> shadow.ShadowReport:
    """Shadow answers paired with live answers and ranked; the summary kept as evidence."""
    return shadow.report(settings, version, since, until, top, state=state, actor=actor)


__all__ = [
    "OPERATIONS",
    "Tick",
    "list_rollouts",
    "operate",
    "promote_version",
    "rollout_view",
    "rule_states",
    "shadow_report",
    "start_rollout",
    "start_shadow",
    "stop_shadow",
    "tick",
    "write_default_plan",
]
