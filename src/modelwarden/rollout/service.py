"""Rollout service: what the CLI, the HTTP API and the console call to move versions and traffic.

The registry knows versions; this layer knows rollouts too, so the rules that need both live here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from modelwarden.errors import ConflictError, InputError, LeaseHeld
from modelwarden.governance import lease, notify, registry
from modelwarden.governance.registry import VersionInfo
from modelwarden.governance.routes import current_routes
from modelwarden.policy import service as policy_service
from modelwarden.policy.spec import Policy
from modelwarden.rollout import controller
from modelwarden.rollout import store as rollout_store
from modelwarden.rollout.plan import Plan
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore


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
    wait_s: float = lease.TTL_S,
    holder: str | None = None,
) -> controller.TickReport:
    """One controller tick on demand (``modelwarden rollout tick``), under the controller lease.

    The lease is the one every ``serve`` instance's controller takes, so a manual tick never acts
    at the same moment as a serving instance's controller: it takes the lease for the duration of
    the tick (its writes fenced by the lease's generation) and releases it after. A lease held by
    another instance is waited for up to ``wait_s`` (long enough for a killed holder's lease to
    expire); a holder still renewing it after that is reported by :class:`LeaseHeld`.
    """
    hold = lease.Lease(state, lease.CONTROLLER, holder or f"tick@{lease.instance_name()}")
    deadline = time.monotonic() + wait_s
    while not hold.acquire():
        info = lease.holder_of(state)
        left = deadline - time.monotonic()
        if left <= 0:
            until = f"{info.expires_at:%Y-%m-%d %H:%M:%S} UTC" if info else "now"
            raise LeaseHeld(
                "another instance holds the controller lease "
                f"({info.holder if info else 'just released'}, until {until}) and runs the "
                "rollout controller; it ticks by itself, or stop it to tick by hand",
                field="lease",
                holder=info.holder if info else None,
                expires_at=info.expires_at.isoformat() if info else None,
            )
        expires_in = (info.expires_at - datetime.now(UTC)).total_seconds() if info else 0.0
        time.sleep(min(max(expires_in, 0.05), left, 0.5))
    try:
        return controller.tick(
            settings, now, state=state, policy=policy, notifier=notifier, fence=hold
        )
    finally:
        hold.release()


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
