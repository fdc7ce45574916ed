"""Rollout service: what the CLI, the HTTP API and the console call to move versions and traffic.

The registry knows versions; this layer knows rollouts too, so the rules that need both live here.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from modelwarden.errors import ConflictError, InputError, LeaseHeld
from modelwarden.governance import lease, notify, registry
from modelwarden.governance.registry import VersionInfo
from modelwarden.governance.routes import current_routes
from modelwarden.policy import service as policy_service
from modelwarden.policy.engine import FIRE
from modelwarden.policy.spec import Policy
from modelwarden.rollout import controller
from modelwarden.rollout import store as rollout_store
from modelwarden.rollout.plan import Plan
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
OPERATIONS = ("pause", "resume", "promote", "rollback")


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


def tick(
    settings: Settings,
    state: StateStore,
    now: datetime | None = None,
    *,
    policy: Policy | None = None,
    notifier: notify.Notifier | None = None,
    wait_s: float = TICK_WAIT_S,
    holder: str | None = None,
) -> controller.TickReport:
    """One controller tick on demand (``modelwarden rollout tick``), never beside another tick.

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
    settings: Settings, state: StateStore, version: str, plan_yaml: str | None, actor: str
) -> dict[str, Any]:
    """Start a canary rollout of ``version`` (plan YAML, or the default plan)."""
    plan = Plan.from_yaml(plan_yaml, "plan") if plan_yaml else Plan.load(None)
    controller.start(settings, version, plan, actor, state=state)
    return rollout_view(settings, state)


def operate(
    settings: Settings,
    state: StateStore,
    operation: str,
    actor: str,
    reason: str,
    notifier: notify.Notifier | None = None,
) -> dict[str, Any]:
    """An operator's pause, resume, promote or rollback of the rollout under way.

    ``rollback`` runs the SOP's rollback transaction, as a rule that fires does (100 % of traffic
    to the stable version, the canary quarantined, an incident with the RCA log extract, the
    notifications), with the operator's identity and reason as its trigger.
    """
    if operation not in OPERATIONS:
        raise InputError(f"operation must be one of {', '.join(OPERATIONS)}", field="operation")
    if not reason.strip():
        raise InputError("say why (a reason goes into the audit log)", field="reason")
    if operation == "rollback":
        controller.operator_rollback(settings, actor, reason, state=state, notifier=notifier)
    else:
        getattr(controller, operation)(settings, actor, reason, state=state)
    return rollout_view(settings, state)
