"""The rollout controller: each tick protects, judges and moves one canary rollout forward.

A tick, at time ``now`` (the wall clock, or a given time for replays and tests):

1. reads the active rollout from the state store (nothing persists in the process);
2. checks that the route table is still the one the rollout set; if someone changed it by hand,
   the rollout pauses rather than fight them (``resume`` re-applies the plan's routes);
3. evaluates the SOP policy for the canary against the stable version — every tick, whatever the
   rollout's status, paused included. A rollback-severity rule that fires runs the rollback
   transaction in this same tick; an alert-severity rule notifies;
4. once the step's hold has ended, the judge compares canary and stable over the step's window
   and scope: ``Pass`` advances to the next step, ``Fail`` rolls back, ``NoData`` and
   ``Inconclusive`` extend the hold by ``judge.extend``, up to ``judge.max_looks`` looks (alpha is
   split among them); after that the step waits for an operator. The last step (100 %) is the
   guard phase: no judge, the policy stays live, and when it ends the canary becomes the stable
   version and the old stable version retires.

Every decision is written to the rollout row and the audit log in one transaction that first
re-reads the row: two controllers ticking at once (a server and a CLI) cannot both advance a
step. The route table a step needs is written after the step is recorded; a crash in between
leaves ``route_version`` empty and the next tick writes it.

A tick run under the ``controller`` lease (``fence=``, :mod:`modelwarden.governance.lease`)
checks the lease's generation inside those transactions and inside the rollback's: a holder whose
lease another instance has taken over meanwhile writes nothing (:class:`~modelwarden.governance.
lease.LeaseLost`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelwarden.errors import ConflictError, InputError
from modelwarden.governance import audit, lease, notify, registry
from modelwarden.governance.routes import RouteSpec, RouteTable, Upstream, current_routes
from modelwarden.policy import service as policy_service
from modelwarden.policy.engine import FIRE, Engine, Observations, RuleResult, _us
from modelwarden.policy.observe import load_observations
from modelwarden.policy.replay import lookback
from modelwarden.policy.spec import Policy, parse_duration
from modelwarden.rollout import store
from modelwarden.rollout.judge import FAIL, NO_DATA, PASS, Sample, Verdict, judge
from modelwarden.rollout.plan import Plan
from modelwarden.rollout.rollback import raise_alert, rollback
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.store.tables import as_utc

log = logging.getLogger("modelwarden.rollout")

CONTROLLER = "controller"


def _at_or_now(t: datetime | None) -> datetime:
    return as_utc(t) or datetime.now(UTC)


@dataclass
class TickReport:
    at: datetime
    action: str  # none, hold, advance, extend, guard, complete, rollback, alert, paused
    rollout_id: int | None = None
    version: str | None = None
    status: str | None = None
    step: int | None = None
    message: str = ""
    verdict: dict[str, Any] | None = None
    fired: list[dict[str, Any]] = field(default_factory=list)
    # Every SOP rule's evaluation at this tick (value, threshold, holding since), fired or not.
    rules: list[dict[str, Any]] = field(default_factory=list)
    incident_id: str | None = None
    route_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---- routes ------------------------------------------------------------------------------------
def desired_routes(r: store.Rollout, plan: Plan, live: RouteTable | None) -> RouteSpec:
    step = plan.steps[r.step]
    keep_shadow = (
        live is not None
        and live.shadow is not None
        and live.shadow.version not in (r.version, r.stable_version)
    )
    return RouteSpec(
        stable=Upstream(version=r.stable_version, url=r.stable_url),
        canary=Upstream(version=r.version, url=r.canary_url),
        canary_weight=step.weight,
        canary_plants=list(step.plants),
        shadow=live.shadow if keep_shadow and live else None,
        shadow_sample=live.shadow_sample if keep_shadow and live else 0.0,
        note=f"rollout {r.id}: step {r.step + 1}/{len(plan.steps)} {step.label()}",
    )


def _same_traffic(live: RouteTable, spec: RouteSpec) -> bool:
    return (
        live.stable == spec.stable
        and live.canary == spec.canary
        and live.canary_weight == spec.canary_weight
        and sorted(live.canary_plants) == sorted(spec.canary_plants)
    )


def _apply_routes(state: StateStore, r: store.Rollout, plan: Plan, actor: str) -> int:
    spec = desired_routes(r, plan, current_routes(state))
    table = registry.set_live_routes(state, spec, actor, spec.note or "")
    with audit.transaction(state) as con:
        fresh = store.active_in(con)
        if fresh is not None and fresh.id == r.id and fresh.step == r.step:
            fresh.route_version = table.version
            store.save(con, fresh)
    r.route_version = table.version
    return table.version


# ---- engine memory -----------------------------------------------------------------------------
def _engine(policy: Policy, r: store.Rollout) -> Engine:
    eng = Engine(policy)
    es = r.engine_state or {}
    eng.holding = {(a, b, c): datetime.fromisoformat(t) for a, b, c, t in es.get("holding", [])}
    eng.fired = {(a, b, c) for a, b, c in es.get("fired", [])}
    eng.looks = {(a, b, c): list(v) for a, b, c, v in es.get("looks", [])}
    eng.first_look = {(a, b): int(v) for a, b, v in es.get("first_look", [])}
    return eng


def _engine_state(eng: Engine) -> dict[str, Any]:
    return {
        "holding": [[*k, v.isoformat()] for k, v in sorted(eng.holding.items())],
        "fired": [list(k) for k in sorted(eng.fired)],
        "looks": [[*k, [int(x) for x in v]] for k, v in sorted(eng.looks.items())],
        "first_look": [[*k, int(v)] for k, v in sorted(eng.first_look.items())],
    }


def trigger_of(policy: Policy, res: RuleResult) -> dict[str, Any]:
    rule = next(x for x in policy.rules if x.id == res.rule_id)
    return {**res.to_dict(), "title": rule.title, "window": rule.window, "source": "policy"}


def trigger_of_verdict(
    v: Verdict, r: store.Rollout, now: datetime, plants: list[str]
) -> dict[str, Any]:
    g = v.failing()
    assert g is not None
    return {
        "rule_id": f"judge:{g.metric}",
        "title": f"Canary judge: {g.metric} worse than the "
        f"stable version beyond {g.margin:g} ({g.comparator})",
        "scope": ",".join(plants) or "overall",
        "metric": g.metric,
        "comparator": g.comparator,
        "threshold": g.margin,
        "value": g.canary_value,
        "baseline_value": g.stable_value,
        "baseline": "stable_same_window",
        "change": g.worsening,
        "n": g.n_canary,
        "n_baseline": g.n_stable,
        "p_value": g.p_value,
        "evaluated_at": now,
        "window_start": r.step_started_at,
        "message": g.message,
        "source": "judge",
        "verdict": v.to_dict(),
    }


def _canary_requests(obs: Observations, r: store.Rollout, now: datetime, plants: list[str]) -> int:
    sl = obs.window(_us(r.step_started_at), _us(now))
    m = obs.is_version(r.version)[sl]
    if plants:
        m &= np.isin(obs.plant[sl], plants)
    return int(m.sum())


def _from_rollout_start(obs: Observations, r: store.Rollout) -> Observations:
    """The candidate's requests and escalations from the rollout's start on only.

    A version that comes back under the same name (fixed, re-validated, released again) is judged
    on what it serves now, not on what the quarantined build served before the rollback.
    """
    since = _us(r.created_at)
    keep = ~(obs.is_version(r.version) & (obs.ts < since))
    ekeep = ~((obs.esc_version == r.version) & (obs.esc_ts < since))
    if keep.all() and ekeep.all():
        return obs
    assert obs.score_at is not None
    return Observations(
        ts=obs.ts[keep],
        plant=obs.plant[keep],
        version=obs.version[keep],
        latency=obs.latency[keep],
        safety=obs.safety[keep],
        score=obs.score[keep],
        error=obs.error[keep],
        score_at=obs.score_at[keep],
        esc_ts=obs.esc_ts[ekeep],
        esc_plant=obs.esc_plant[ekeep],
        esc_version=obs.esc_version[ekeep],
        esc_category=obs.esc_category[ekeep],
        esc_confirmed=obs.esc_confirmed[ekeep],
    )


# ---- tick --------------------------------------------------------------------------------------
def tick(
    settings: Settings,
    now: datetime | None = None,
    *,
    state: StateStore | None = None,
    policy: Policy | None = None,
    notifier: notify.Notifier | None = None,
    fence: lease.Lease | None = None,
) -> TickReport:
    """One controller tick at ``now`` (default: the wall clock). See the module's docstring.

    ``fence``: the lease this tick runs under, checked by every write that decides (see the
    module's docstring); without it the caller answers for running one tick at a time."""
    own = state is None
    st = state or StateStore.of(settings)
    try:
        return _tick(settings, st, _at_or_now(now), policy, notifier, fence)
    finally:
        if own:
            st.close()


def _tick(
    settings: Settings,
    st: StateStore,
    now: datetime,
    policy: Policy | None,
    notifier: notify.Notifier | None,
    fence: lease.Lease | None = None,
) -> TickReport:
    r = store.active(st)
    if r is None:
        return TickReport(now, "none", message="no rollout under way")
    plan = Plan.model_validate(r.plan)
    pol = policy or policy_service.load_policy(settings, state=st)
    report = TickReport(now, "hold", r.id, r.version, r.status, r.step)

    live = current_routes(st)
    if r.route_version is None and r.status != "paused":
        report.route_version = _apply_routes(st, r, plan, CONTROLLER)
    elif r.status != "paused" and (live is None or live.version != r.route_version):
        spec = desired_routes(r, plan, live)
        if live is None or not _same_traffic(live, spec):
            _pause(
                st,
                r,
                CONTROLLER,
                "the route table was changed outside the rollout "
                f"(now version {live.version if live else 'none'}); resume re-applies the "
                "plan's routes, abort ends the rollout",
                now,
            )
            report.action, report.status = "paused", "paused"
            report.message = "routes changed outside the rollout: paused"

    obs = _from_rollout_start(
        load_observations(settings, min(now - lookback(pol), r.step_started_at), now), r
    )
    eng = _engine(pol, r)
    results = eng.tick(obs, now, r.version, r.stable_version)
    fires = [x for x in results if x.status == FIRE]
    report.fired = [x.to_dict() for x in fires]
    report.rules = [x.to_dict() for x in results]
    roll = [x for x in fires if x.severity == "rollback"]
    if roll:
        first = next((x for x in roll if x.first_fire), roll[0])
        trigger = {
            **trigger_of(pol, first),
            "also": [f"{x.rule_id}@{x.scope}" for x in roll if x is not first],
        }
        return _rollback(settings, st, r, trigger, pol, notifier, now, report, eng, fence=fence)
    for a in fires:
        if a.severity == "alert" and a.first_fire:
            inc = raise_alert(
                settings,
                st,
                r.version,
                r.stable_version,
                trigger_of(pol, a),
                policy=pol,
                rollout_id=r.id,
                notifier=notifier,
            )
            report.incident_id, report.action = inc.id, "alert"

    status = report.status
    decision: dict[str, Any] = {}
    if status in ("running", "guard") and now >= r.hold_until:
        decision = decide(r, plan, obs, now)
        if decision["action"] == "rollback":
            trigger = decision["trigger"]
            return _rollback(settings, st, r, trigger, pol, notifier, now, report, eng, fence=fence)
    return _commit(st, r, plan, eng, now, decision, report, fence)


def decide(r: store.Rollout, plan: Plan, obs: Observations, now: datetime) -> dict[str, Any]:
    """What to do at the end of a hold (pure: no store is touched): ``extend``, ``advance``,
    ``complete`` or ``rollback`` (with the judge's trigger)."""
    step = plan.steps[r.step]
    plants = list(step.plants)
    n = _canary_requests(obs, r, now, plants)
    if r.status == "guard":
        if n < step.hold.min_requests:
            return {
                "action": "extend",
                "verdict": {"verdict": NO_DATA, "n_canary": n},
                "message": f"guard phase: {n} of {step.hold.min_requests} requests",
            }
        return {
            "action": "complete",
            "verdict": {"verdict": PASS, "n_canary": n},
            "message": f"guard phase over after {n} requests with no rule fired",
        }
    if r.looks >= plan.judge.max_looks:
        return {
            "action": "extend",
            "judged": False,
            "verdict": r.last_verdict,
            "message": f"undecided after {r.looks} looks: an operator decides (rollout "
            "promote or abort); the SOP policy keeps protecting the canary",
        }
    alpha = plan.judge.alpha_at(r.looks)
    v = judge(
        Sample.of(obs, r.version, r.step_started_at, now, plants),
        Sample.of(obs, r.stable_version, r.step_started_at, now, plants),
        plan.gates,
        alpha,
        plan.judge.pass_rule,
    )
    if v.verdict == FAIL:
        return {
            "action": "rollback",
            "verdict": v.to_dict(),
            "trigger": trigger_of_verdict(v, r, now, plants),
        }
    if n < step.hold.min_requests:
        return {
            "action": "extend",
            "verdict": {**v.to_dict(), "verdict": NO_DATA},
            "message": f"{n} of {step.hold.min_requests} canary requests in scope",
        }
    if v.verdict == PASS:
        return {"action": "advance", "verdict": v.to_dict(), "message": "every gate passed"}
    undecided = [f"{g.metric}: {g.verdict}" for g in v.gates if g.verdict != PASS]
    return {
        "action": "extend",
        "verdict": v.to_dict(),
        "message": f"{v.verdict}: " + "; ".join(undecided),
    }


def _rollback(
    settings: Settings,
    st: StateStore,
    r: store.Rollout,
    trigger: dict[str, Any],
    pol: Policy,
    notifier: notify.Notifier | None,
    now: datetime,
    report: TickReport,
    eng: Engine | None = None,
    actor: str = CONTROLLER,
    fence: lease.Lease | None = None,
) -> TickReport:
    res = rollback(
        settings,
        r.version,
        Upstream(version=r.stable_version, url=r.stable_url),
        trigger,
        policy=pol,
        actor=actor,
        rollout_id=r.id,
        bad_url=r.canary_url,
        state=st,
        notifier=notifier,
        now=now,
        fence=fence,
    )
    report.action, report.status = "rollback", "rolled_back"
    report.incident_id, report.route_version = res.incident.id, res.route_version
    report.message = (
        f"{trigger['rule_id']} ({trigger.get('scope')}) → rolled back to "
        f"{r.stable_version}; incident {res.incident.id}"
    )
    if trigger.get("source") == "judge":
        report.verdict = trigger.get("verdict")
    if eng is not None:
        # The tick that rolled back is the rollout's last: keep its time and evaluations.
        with audit.transaction(st) as con:
            store.record_tick(
                con,
                r.id,
                now,
                {**_engine_state(eng), "rules": audit.canonical_obj(report.rules)},
                audit.canonical_obj(report.verdict) if report.verdict else None,
            )
    return report


def _commit(
    st: StateStore,
    r: store.Rollout,
    plan: Plan,
    eng: Engine,
    now: datetime,
    decision: dict[str, Any],
    report: TickReport,
    fence: lease.Lease | None = None,
) -> TickReport:
    action = decision.get("action")
    with audit.transaction(st) as con:
        if fence is not None:
            fence.check_in(con)
        fresh = store.active_in(con)
        if fresh is None or fresh.id != r.id or fresh.step != r.step:
            report.action, report.message = "none", "another controller moved the rollout first"
            return report
        fresh.engine_state = {
            **_engine_state(eng),
            "rules": audit.canonical_obj(report.rules),
        }
        fresh.last_tick_at = now
        if fresh.status == "paused" or fresh.status != r.status:
            store.save(con, fresh)
            report.status = fresh.status
            if report.action == "hold":
                report.action = "paused" if fresh.status == "paused" else "hold"
            return report
        if decision:
            fresh.last_verdict = audit.canonical_obj(decision.get("verdict") or {})
            report.verdict = decision.get("verdict")
            report.message = decision.get("message", "")
        step = plan.steps[fresh.step]
        if action == "extend":
            extend = parse_duration(plan.judge.extend)
            fresh.hold_until = now + extend
            fresh.looks += 1 if decision.get("judged", True) else 0
            audit.append(
                con,
                CONTROLLER,
                "rollout.extend",
                r.version,
                decision["message"],
                {
                    "rollout_id": r.id,
                    "step": fresh.step + 1,
                    "hold_until": fresh.hold_until,
                    "look": fresh.looks,
                    "verdict": decision.get("verdict"),
                },
            )
            report.action = "extend"
        elif action == "advance":
            _advance_in(
                con, fresh, plan, now, CONTROLLER, decision["message"], decision.get("verdict")
            )
            report.action = "guard" if fresh.status == "guard" else "advance"
        elif action == "complete":
            _complete_in(con, fresh, CONTROLLER, decision["message"], now)
            report.action = "complete"
        else:
            report.message = report.message or (
                f"step {fresh.step + 1} ({step.label()}) holds until "
                f"{fresh.hold_until:%Y-%m-%d %H:%M} UTC"
            )
        store.save(con, fresh)
    report.status, report.step = fresh.status, fresh.step
    if action == "advance":
        report.route_version = _apply_routes(st, fresh, plan, CONTROLLER)
    elif action == "complete":
        report.route_version = _finish_routes(st, fresh, CONTROLLER)
    return report


def _advance_in(
    con: Any, r: store.Rollout, plan: Plan, now: datetime, actor: str, why: str, verdict: Any
) -> None:
    r.step += 1
    step = plan.steps[r.step]
    r.step_started_at = now
    r.hold_until = now + parse_duration(step.hold.duration)
    r.looks = 0
    r.route_version = None
    r.status = "guard" if step.weight >= 100 else "running"
    audit.append(
        con,
        actor,
        "rollout.advance",
        r.version,
        why,
        {
            "rollout_id": r.id,
            "step": r.step + 1,
            "to": step.label(),
            "hold_until": r.hold_until,
            "verdict": verdict,
        },
    )


def _complete_in(con: Any, r: store.Rollout, actor: str, why: str, now: datetime) -> None:
    r.status, r.ended_at, r.end_reason = "completed", now, why
    info = registry.get_in(con, r.version)
    if info.status == "canary":
        registry.transition_in(con, r.version, "stable", actor, f"rollout {r.id} completed")
    old = registry.find_in(con, r.stable_version)
    if old is not None and old.status == "stable":
        registry.transition_in(
            con, r.stable_version, "retired", actor, f"replaced by {r.version} (rollout {r.id})"
        )
    audit.append(con, actor, "rollout.complete", r.version, why, {"rollout_id": r.id})


def _finish_routes(st: StateStore, r: store.Rollout, actor: str) -> int:
    live = current_routes(st)
    keep_shadow = (
        live is not None
        and live.shadow is not None
        and live.shadow.version not in (r.version, r.stable_version)
    )
    spec = RouteSpec(
        stable=Upstream(version=r.version, url=r.canary_url),
        shadow=live.shadow if keep_shadow and live else None,
        shadow_sample=live.shadow_sample if keep_shadow and live else 0.0,
        note=f"rollout {r.id} completed: {r.version} is stable",
    )
    return registry.set_live_routes(st, spec, actor, spec.note or "").version


# ---- operator commands -----------------------------------------------------------------------------
def start(
    settings: Settings,
    version: str,
    plan: Plan,
    actor: str,
    *,
    now: datetime | None = None,
    state: StateStore | None = None,
) -> store.Rollout:
    """Start a canary rollout of a registered version against the live stable version."""
    now = _at_or_now(now)
    own = state is None
    st = state or StateStore.of(settings)
    try:
        live = current_routes(st)
        if live is None:
            raise InputError(
                "no routes are set: route the stable version first (modelwarden "
                "registry add VERSION --endpoint URL --stable)",
                field="routes",
            )
        if live.stable.version == version:
            raise ConflictError(f"{version} is the stable version already", field="version")
        with audit.transaction(st) as con:
            running = store.active_in(con)
            if running is not None:
                raise ConflictError(
                    f"rollout {running.id} of {running.version} is under way ({running.status}); "
                    "finish or abort it first",
                    field="version",
                )
            info = registry.get_in(con, version)
            if info.status != "canary":
                registry.transition_in(
                    con, version, "canary", actor, f"rollout started: {plan.describe()}"
                )
            first = plan.steps[0]
            r = store.insert_rollout(
                con,
                {
                    "version": version,
                    "canary_url": info.endpoint,
                    "stable_version": live.stable.version,
                    "stable_url": live.stable.url,
                    "plan": plan.model_dump(mode="json"),
                    "status": "running",
                    "step": 0,
                    "step_started_at": now,
                    "hold_until": now + parse_duration(first.hold.duration),
                    "looks": 0,
                    "engine_state": {},
                    "created_at": now,
                    "created_by": actor,
                    "updated_at": datetime.now(UTC),
                },
            )
            audit.append(
                con,
                actor,
                "rollout.start",
                version,
                plan.describe(),
                {
                    "rollout_id": r.id,
                    "stable": live.stable.version,
                    "plan": plan.model_dump(mode="json"),
                },
            )
        _apply_routes(st, r, plan, actor)
        return store.get(st, r.id)
    finally:
        if own:
            st.close()


def _require_active(st: StateStore) -> store.Rollout:
    r = store.active(st)
    if r is None:
        raise ConflictError("no rollout is under way", field="rollout")
    return r


def _pause(
    st: StateStore, r: store.Rollout, actor: str, reason: str, now: datetime | None = None
) -> None:
    with audit.transaction(st) as con:
        fresh = store.active_in(con)
        if fresh is None or fresh.id != r.id or fresh.status == "paused":
            return
        fresh.paused_from, fresh.status = fresh.status, "paused"
        store.save(con, fresh)
        audit.append(
            con,
            actor,
            "rollout.pause",
            r.version,
            reason,
            {"rollout_id": r.id, "step": fresh.step + 1},
            at=now,
        )


def pause(
    settings: Settings, actor: str, reason: str = "", state: StateStore | None = None
) -> store.Rollout:
    """Hold the current step; the SOP policy keeps protecting the canary while paused."""
    st = state or StateStore.of(settings)
    r = _require_active(st)
    if r.status == "paused":
        raise ConflictError("the rollout is paused already", field="rollout")
    _pause(st, r, actor, reason or "paused by an operator")
    return store.get(st, r.id)


def resume(
    settings: Settings, actor: str, reason: str = "", state: StateStore | None = None
) -> store.Rollout:
    """Continue a paused rollout; its routes are re-applied if they were changed meanwhile."""
    st = state or StateStore.of(settings)
    r = _require_active(st)
    if r.status != "paused":
        raise ConflictError(f"the rollout is {r.status}, not paused", field="rollout")
    plan = Plan.model_validate(r.plan)
    with audit.transaction(st) as con:
        fresh = store.active_in(con)
        assert fresh is not None
        fresh.status, fresh.paused_from = fresh.paused_from or "running", None
        store.save(con, fresh)
        audit.append(
            con,
            actor,
            "rollout.resume",
            r.version,
            reason,
            {"rollout_id": r.id, "step": fresh.step + 1},
        )
    live = current_routes(st)
    if live is None or not _same_traffic(live, desired_routes(fresh, plan, live)):
        _apply_routes(st, fresh, plan, actor)
    return store.get(st, r.id)


def abort(
    settings: Settings, actor: str, reason: str = "", state: StateStore | None = None
) -> store.Rollout:
    """End the rollout by hand: all traffic back to the stable version, the canary to staging.

    Nothing is quarantined and no incident is opened: an operator decided, no rule fired.
    """
    st = state or StateStore.of(settings)
    r = _require_active(st)
    live = current_routes(st)
    keep_shadow = (
        live is not None
        and live.shadow is not None
        and live.shadow.version not in (r.version, r.stable_version)
    )
    spec = RouteSpec(
        stable=Upstream(version=r.stable_version, url=r.stable_url),
        shadow=live.shadow if keep_shadow and live else None,
        shadow_sample=live.shadow_sample if keep_shadow and live else 0.0,
        note=f"rollout {r.id} aborted",
    )
    registry.set_live_routes(st, spec, actor, f"rollout {r.id} aborted: {reason}")
    with audit.transaction(st) as con:
        fresh = store.active_in(con)
        assert fresh is not None
        fresh.status, fresh.ended_at = "aborted", datetime.now(UTC)
        fresh.end_reason = reason or "aborted by an operator"
        store.save(con, fresh)
        info = registry.find_in(con, r.version)
        if info is not None and info.status == "canary":
            registry.transition_in(con, r.version, "staging", actor, f"rollout {r.id} aborted")
        audit.append(con, actor, "rollout.abort", r.version, reason, {"rollout_id": r.id})
    return store.get(st, r.id)


def operator_rollback(
    settings: Settings,
    actor: str,
    reason: str,
    *,
    now: datetime | None = None,
    state: StateStore | None = None,
    policy: Policy | None = None,
    notifier: notify.Notifier | None = None,
) -> store.Rollout:
    """An operator's rollback: the same SOP transaction as a rule's (100 % to the stable version,
    the canary quarantined, an incident with the RCA log extract, the notifications), with the
    operator's identity and reason as its trigger."""
    if not reason.strip():
        raise InputError(
            "say why (the reason goes into the incident and the audit log)", field="reason"
        )
    now = _at_or_now(now)
    st = state or StateStore.of(settings)
    r = _require_active(st)
    pol = policy or policy_service.load_policy(settings, state=st)
    plan = Plan.model_validate(r.plan)
    plants = list(plan.steps[r.step].plants)
    trigger = {
        "rule_id": "manual",
        "source": "operator",
        "title": f"Rolled back by {actor}: {reason}",
        "scope": ",".join(plants) if plants else "overall",
        "actor": actor,
        "reason": reason,
        "step": r.step + 1,
        "evaluated_at": now,
        "message": reason,
    }
    report = TickReport(now, "rollback", r.id, r.version, r.status, r.step)
    _rollback(settings, st, r, trigger, pol, notifier, now, report, actor=actor)
    return store.get(st, r.id)


def promote(
    settings: Settings,
    actor: str,
    reason: str = "",
    *,
    now: datetime | None = None,
    state: StateStore | None = None,
) -> store.Rollout:
    """Advance to the next step now, without waiting for the hold or the judge (an override)."""
    now = _at_or_now(now)
    st = state or StateStore.of(settings)
    r = _require_active(st)
    if r.status == "paused":
        raise ConflictError("the rollout is paused; resume it first", field="rollout")
    plan = Plan.model_validate(r.plan)
    why = reason or "promoted by an operator"
    with audit.transaction(st) as con:
        fresh = store.active_in(con)
        assert fresh is not None and fresh.id == r.id
        if fresh.status == "guard":
            _complete_in(con, fresh, actor, why, now)
        else:
            _advance_in(con, fresh, plan, now, actor, why, {"verdict": "manual"})
        store.save(con, fresh)
    if fresh.status == "completed":
        _finish_routes(st, fresh, actor)
    else:
        _apply_routes(st, fresh, plan, actor)
    return store.get(st, r.id)


def status(settings: Settings, state: StateStore | None = None) -> dict[str, Any] | None:
    """The active rollout (else the latest one) with its plan position, as a dict."""
    st = state or StateStore.of(settings)
    r = store.active(st) or store.latest(st)
    if r is None:
        return None
    plan = Plan.model_validate(r.plan)
    step = plan.steps[r.step]
    live = current_routes(st)
    return {
        **r.to_dict(),
        "step_label": step.label(),
        "steps": len(plan.steps),
        "plan_name": plan.name,
        "plan_description": plan.describe(),
        "routes": live.to_dict() if live is not None else None,
    }


# ---- running inside a server ---------------------------------------------------------------------
class ControllerLoop:
    """Ticks every ``interval_s`` in a daemon thread and delivers notifications as they fall due.

    For ``modelwarden serve``: ``loop = ControllerLoop(settings).start()`` when the app starts,
    ``loop.stop()`` when it stops. A tick that fails is logged and retried at the next interval.

    Several instances on one state store each run a loop, but only the holder of the
    ``controller`` lease (:mod:`modelwarden.governance.lease`) ticks: the loop tries to take or
    renew the lease every third of its time to live, so that when the holder dies another
    instance takes over within ``lease_ttl_s`` plus that period. Each tick runs under the
    ``tick`` lock, which a manual ``rollout tick`` takes too, so ticks never overlap. Notifications are claimed one
    by one (:func:`notify.deliver_due`), so every instance may deliver them.
    """

    def __init__(
        self,
        settings: Settings,
        interval_s: float = 15.0,
        lease_ttl_s: float = lease.TTL_S,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.lease_ttl_s = lease_ttl_s
        self.holder = holder
        self.last: TickReport | None = None
        self.last_error: str | None = None
        self.lease: lease.Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: StateStore | None = None
        self._notifier: notify.Notifier | None = None

    @property
    def leader(self) -> bool:
        """True while this instance holds the controller lease."""
        return self.lease is not None and self.lease.held

    def start(self) -> ControllerLoop:
        self._state = StateStore.of(self.settings)
        self.lease = lease.Lease(self._state, lease.CONTROLLER, self.holder, self.lease_ttl_s)
        self._notifier = notify.Notifier(self._state).start()
        self._thread = threading.Thread(
            target=self._run, name="modelwarden-controller", daemon=True
        )
        self._thread.start()
        return self

    @property
    def notifier(self) -> notify.Notifier | None:
        """The loop's outbox sender, for rollbacks started outside a tick (an operator's)."""
        return self._notifier

    def _renew(self) -> bool:
        assert self.lease is not None
        was = self.lease.held
        try:
            held = self.lease.acquire()
        except Exception as exc:  # no state store, no lease: act again once it is back
            self.last_error = f"{type(exc).__name__}: {exc}"
            if was:
                log.warning("controller lease lost: %s", self.last_error)
            return False
        if held and not was:
            log.info("this instance now runs the rollout controller (%s)", self.lease.holder)
        elif was and not held:
            log.warning("controller lease taken by another instance")
        return held

    def _run(self) -> None:
        assert self._state is not None
        renew_s = self.lease_ttl_s / 3
        next_tick = 0.0
        while not self._stop.is_set():
            was = self.leader
            held = self._renew()
            now = time.monotonic()
            if held and not was:
                next_tick = now  # a new holder ticks at once
            if held and now >= next_tick:
                self._tick()
                next_tick = time.monotonic() + self.interval_s
            wait = renew_s if not held else min(renew_s, max(0.0, next_tick - time.monotonic()))
            self._stop.wait(wait)

    def _tick(self) -> None:
        assert self._state is not None and self.lease is not None
        lock = lease.Lease(
            self._state, lease.TICK, self.lease.holder, lease.TICK_TTL_S, audit_takes=False
        )
        try:
            if not lock.acquire():
                log.info("a tick is running elsewhere (a manual rollout tick): this one waits")
                return
            self.last = tick(self.settings, state=self._state, notifier=self._notifier, fence=lock)
            self.last_error = None
            if self.last.action not in ("none", "hold"):
                log.info(
                    "rollout %s: %s %s",
                    self.last.rollout_id,
                    self.last.action,
                    self.last.message,
                )
        except Exception as exc:  # the loop outlives one bad tick
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("controller tick failed")
        finally:
            try:
                lock.release()
            except Exception:  # it then expires by itself
                log.warning("could not release the tick lock", exc_info=True)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.lease is not None:
            try:
                self.lease.release()
            except Exception:  # the lease then expires by itself
                log.warning("could not release the controller lease", exc_info=True)
        if self._notifier is not None:
            self._notifier.stop()
        if self._state is not None:
            self._state.close()


__all__ = [
    "ControllerLoop",
    "TickReport",
    "abort",
    "decide",
    "desired_routes",
    "operator_rollback",
    "pause",
    "promote",
    "resume",
    "start",
    "status",
    "tick",
    "trigger_of",
    "trigger_of_verdict",
]
