"""The SOP engine: each rule just below and just above its threshold, sustain, minimum samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from modelwarden.policy.engine import FIRE, NO_DATA, OK, PENDING, Engine, Observations
from modelwarden.policy.spec import Policy, default_policy

T = datetime(2026, 11, 20, 12, tzinfo=UTC)
NEW, OLD = "sop-assistant-v1.2", "sop-assistant-v1.1"


def rule_policy(rule_id: str) -> Policy:
    p = default_policy()
    return p.model_copy(update={"rules": [r for r in p.rules if r.id == rule_id]})


def requests(
    version: str,
    n: int,
    *,
    flagged: int = 0,
    scores: list[float] | None = None,
    latency: float | np.ndarray = 300.0,
    start: datetime = T - timedelta(hours=11),
    span: timedelta = timedelta(hours=10),
    plant: str = "Plant_B",
) -> list[dict]:
    lat = np.broadcast_to(np.asarray(latency, dtype=float), (n,))
    out = []
    for i in range(n):
        out.append(
            {
                "timestamp": start + span * (i / max(n - 1, 1)),
                "plant_id": plant,
                "model_version": version,
                "latency_ms": float(lat[i]),
                "contains_safety_keyword": i < flagged,
                "human_feedback_score": None if scores is None else scores[i % len(scores)],
            }
        )
    return out


def tick(policy: Policy, rows: list[dict], esc: list[dict] | None = None, t: datetime = T):
    eng = Engine(policy)
    return {
        (r.rule_id, r.scope): r for r in eng.tick(Observations.from_rows(rows, esc), t, NEW, OLD)
    }


@pytest.mark.parametrize(
    ("new_flagged", "old_flagged", "status"),
    [
        (2, 0, OK),  # exactly 1.0 point higher: not more than 1 point
        (3, 0, OK),  # 1.5 points higher but p = 0.12: could be chance
        (12, 2, FIRE),  # 5 points higher, p < 0.01
    ],
)
def test_safety_rate_rule(new_flagged: int, old_flagged: int, status: str) -> None:
    rows = requests(NEW, 200, flagged=new_flagged) + requests(OLD, 200, flagged=old_flagged)
    res = tick(rule_policy("safety_incident_rate"), rows)[("safety_incident_rate", "Plant_B")]
    assert res.status == status
    assert res.n == 200 and res.n_baseline == 200 and res.baseline == "stable_same_window"
    assert res.change == pytest.approx((new_flagged - old_flagged) / 200 * 100)


def test_safety_rate_rule_needs_minimum_samples() -> None:
    rows = requests(NEW, 29, flagged=20) + requests(OLD, 200)
    res = tick(rule_policy("safety_incident_rate"), rows)[("safety_incident_rate", "Plant_B")]
    assert res.status == NO_DATA and "30 needed" in res.message


def test_window_is_rolling_and_half_open() -> None:
    # Flagged requests from before the 12-hour window do not count.
    old_bad = requests(
        NEW, 100, flagged=100, start=T - timedelta(hours=30), span=timedelta(hours=17, minutes=59)
    )
    rows = old_bad + requests(NEW, 200) + requests(OLD, 200)
    res = tick(rule_policy("safety_incident_rate"), rows)[("safety_incident_rate", "Plant_B")]
    assert res.status == OK and res.n == 200 and res.value == 0.0


@pytest.mark.parametrize(
    ("new_scores", "status"),
    [
        ([4, 3], OK),  # mean 3.5 against 4.0: exactly 0.5 lower
        ([4, 3, 3, 3, 4], FIRE),  # mean 3.4: more than 0.5 lower, significant
    ],
)
def test_feedback_rule(new_scores: list[float], status: str) -> None:
    rows = requests(NEW, 100, scores=new_scores, start=T - timedelta(hours=20)) + requests(
        OLD, 100, scores=[4], start=T - timedelta(hours=20)
    )
    res = tick(rule_policy("feedback_drop"), rows)[("feedback_drop", "Plant_B")]
    assert res.status == status
    assert ("feedback_drop", "overall") not in tick(rule_policy("feedback_drop"), rows)


def test_p95_latency_rule_must_hold_for_an_hour_and_fires_once() -> None:
    rng = np.random.default_rng(0)
    start = T - timedelta(hours=3)
    old = requests(
        OLD,
        1200,
        latency=rng.lognormal(np.log(300), 0.2, 1200),
        start=start,
        span=timedelta(hours=3),
    )
    new = requests(
        NEW,
        1200,
        latency=rng.lognormal(np.log(300), 0.2, 1200) * 1.8,
        start=start,
        span=timedelta(hours=3),
    )
    eng = Engine(rule_policy("p95_latency"))
    obs = Observations.from_rows(old + new)
    seen = []
    for minutes in range(60, 181, 15):
        t = start + timedelta(minutes=minutes)
        res = {r.scope: r for r in eng.tick(obs, t, NEW, OLD)}["Plant_B"]
        seen.append((minutes, res.status, res.first_fire))
    # Holding from the first tick (its 15-minute window is already slow); fires once it has
    # held for an hour. 400 requests an hour per version keep a 15-minute P95 steady.
    assert [s for _, s, _ in seen[:4]] == [PENDING] * 4
    assert [s for _, s, _ in seen[4:]] == [FIRE] * 5
    assert [m for m, _, first in seen if first] == [120]


def test_p95_latency_below_threshold_does_not_hold() -> None:
    rng = np.random.default_rng(1)
    old = requests(
        OLD,
        300,
        latency=rng.lognormal(np.log(300), 0.2, 300),
        start=T - timedelta(minutes=59),
        span=timedelta(minutes=58),
    )
    new = requests(
        NEW,
        300,
        latency=rng.lognormal(np.log(300), 0.2, 300) * 1.3,
        start=T - timedelta(minutes=59),
        span=timedelta(minutes=58),
    )
    res = tick(rule_policy("p95_latency"), old + new)[("p95_latency", "Plant_B")]
    assert res.status == OK and 15 < res.change < 50


def esc(category: str, confirmed: bool, at: datetime, plant: str = "Plant_B") -> dict:
    return {
        "timestamp": at,
        "plant_id": plant,
        "model_version": NEW,
        "category": category,
        "confirmed": confirmed,
    }


def test_confirmed_violation_fires_on_one_confirmed_safety_escalation() -> None:
    rows = requests(NEW, 5) + requests(OLD, 5)
    pol = rule_policy("confirmed_violation")
    unconfirmed = tick(pol, rows, [esc("safety", False, T - timedelta(hours=1))])
    assert unconfirmed[("confirmed_violation", "Plant_B")].status == OK
    wrong_kind = tick(pol, rows, [esc("incorrect", True, T - timedelta(hours=1))])
    assert wrong_kind[("confirmed_violation", "Plant_B")].status == OK
    fired = tick(pol, rows, [esc("compliance", True, T - timedelta(hours=1))])
    assert fired[("confirmed_violation", "Plant_B")].status == FIRE
    assert fired[("confirmed_violation", "overall")].status == FIRE


@pytest.mark.parametrize(
    ("count", "spread_h", "status"),
    [
        (3, 3.5, OK),  # three is not more than three
        (4, 3.5, FIRE),  # four within four hours
        (4, 4.0, OK),  # the first is exactly four hours old: outside (t - 4h, t]
    ],
)
def test_incorrect_escalations_rule(count: int, spread_h: float, status: str) -> None:
    rows = requests(NEW, 5) + requests(OLD, 5)
    times = [
        T - timedelta(hours=spread_h) + timedelta(hours=spread_h) * i / (count - 1)
        for i in range(count)
    ]
    events = [esc("nonsensical" if i % 2 else "incorrect", True, at) for i, at in enumerate(times)]
    res = tick(rule_policy("confirmed_incorrect_escalations"), rows, events)
    assert res[("confirmed_incorrect_escalations", "overall")].status == status


def test_previous_window_when_the_stable_version_has_no_traffic() -> None:
    before = requests(NEW, 200, start=T - timedelta(hours=23), span=timedelta(hours=10))
    now = requests(NEW, 200, flagged=20)
    res = tick(rule_policy("safety_incident_rate"), before + now)[
        ("safety_incident_rate", "Plant_B")
    ]
    assert res.baseline == "previous_window" and res.n_baseline == 200
    assert res.status == FIRE


def test_policy_round_trips_through_yaml_and_names_bad_fields() -> None:
    p = default_policy()
    assert Policy.from_yaml(p.to_yaml()) == p
    assert [r.id for r in p.rules] == [
        "safety_incident_rate",
        "feedback_drop",
        "p95_latency",
        "confirmed_violation",
        "confirmed_incorrect_escalations",
    ]
    from modelwarden.errors import InputError

    bad = p.to_yaml().replace("window: 12h", "window: twelve hours")
    with pytest.raises(InputError) as err:
        Policy.from_yaml(bad)
    assert err.value.field == "rules.0.window"


# ---- P95 latency without a stable version: a baseline a slowdown cannot drag along ---------------
def _steady_then(slow_from: datetime, slow_for: timedelta, until: datetime) -> list[dict]:
    """Eight days of one version at Plant_B, 2 requests a minute, ~300 ms; twice as slow in
    ``[slow_from, slow_from + slow_for)``."""
    rng = np.random.default_rng(7)
    start = until - timedelta(days=8)
    n = int((until - start).total_seconds() // 30)
    ts = [start + timedelta(seconds=30 * i) for i in range(n)]
    lat = rng.lognormal(np.log(300), 0.15, n)
    slow = np.array([slow_from <= t < slow_from + slow_for for t in ts])
    lat[slow] *= 2.0
    return [
        {
            "timestamp": t,
            "plant_id": "Plant_B",
            "model_version": OLD,
            "latency_ms": float(x),
            "contains_safety_keyword": False,
        }
        for t, x in zip(ts, lat, strict=True)
    ]


def _p95_statuses(rows: list[dict], first: datetime, last: datetime) -> list[tuple[int, str]]:
    """(minutes after ``first``, status) of the overall p95 rule, ticking every 5 minutes."""
    eng = Engine(rule_policy("p95_latency"))
    obs = Observations.from_rows(rows)
    out, t = [], first
    while t <= last:
        res = {r.scope: r for r in eng.tick(obs, t, OLD, None)}["overall"]
        out.append((int((t - first).total_seconds() // 60), res.status))
        t += timedelta(minutes=5)
    return out


def test_p95_latency_fires_on_a_three_hour_slowdown_with_no_stable_version() -> None:
    onset = T - timedelta(hours=3)
    rows = _steady_then(onset, timedelta(hours=3), T + timedelta(minutes=1))
    seen = _p95_statuses(rows, onset, T)
    fired = [m for m, s in seen if s == FIRE]
    # Holding from the first tick after the onset; fires once it has held for an hour.
    assert fired and 60 <= fired[0] <= 70, seen
    assert all(s == FIRE for m, s in seen if m >= fired[0])
    res = {
        r.scope: r
        for r in Engine(rule_policy("p95_latency")).tick(Observations.from_rows(rows), T, OLD, None)
    }["overall"]
    assert res.baseline == "same_hours_previous_days"
    assert res.n_baseline == 7 * 30  # the same 15 minutes of each of 7 days, 2 a minute
    assert 250 < res.baseline_value < 450


def test_p95_latency_does_not_fire_on_a_thirty_minute_blip() -> None:
    onset = T - timedelta(hours=3)
    rows = _steady_then(onset, timedelta(minutes=30), T + timedelta(minutes=1))
    seen = _p95_statuses(rows, onset, T)
    assert any(s == PENDING for _, s in seen)  # it was noticed ...
    assert all(s != FIRE for _, s in seen), seen  # ... and did not last long enough


def test_the_sop_document_and_policy_yaml_state_the_latency_baseline() -> None:
    from modelwarden.policy.sop import render_sop

    p = default_policy()
    rule = next(r for r in p.rules if r.id == "p95_latency")
    assert "fallback: same_hours_previous_days" in p.to_yaml()
    assert "baseline_days: 7" in p.to_yaml()
    line = next(x for x in render_sop(p).splitlines() if "`p95_latency`" in x)
    assert "without a stable version: against the same 15m of each of the previous 7 days" in line
    assert "holding for 1h" in line and rule.window == "15m"


def test_replay_never_proposes_rolling_back_the_stable_version() -> None:
    from modelwarden.policy.replay import check, replay

    # Only the stable version serves, and it turns unsafe: check lists it, replay rolls nothing back.
    rows = requests(OLD, 200, start=T - timedelta(hours=23), span=timedelta(hours=10)) + requests(
        OLD, 200, flagged=20
    )
    obs = Observations.from_rows(rows)
    pol = rule_policy("safety_incident_rate")
    since = T - timedelta(hours=3)
    fired = check(obs, pol, since, T, timedelta(minutes=30))
    assert fired and {(e.candidate, e.stable) for e in fired} == {(OLD, None)}
    assert replay(obs, pol, since, T, timedelta(minutes=30)) == []
