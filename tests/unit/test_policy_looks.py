"""Repeated looks share alpha; check and replay find what the policy would have done, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from modelwarden.policy.engine import FIRE, OK, Engine, Observations
from modelwarden.policy.replay import check, replay, watches
from modelwarden.policy.spec import Policy, default_policy

T = datetime(2026, 11, 20, 12, tzinfo=UTC)
NEW, OLD = "sop-assistant-v1.2", "sop-assistant-v1.1"


def only(rule_id: str) -> Policy:
    p = default_policy()
    return p.model_copy(update={"rules": [r for r in p.rules if r.id == rule_id]})


def rows(
    version: str, n: int, flagged: int, start: datetime, span: timedelta, plant: str = "Plant_B"
) -> list[dict]:
    return [
        {
            "timestamp": start + span * (i / max(n - 1, 1)),
            "plant_id": plant,
            "model_version": version,
            "latency_ms": 300.0,
            "contains_safety_keyword": i < flagged,
        }
        for i in range(n)
    ]


def safety_at(eng: Engine, obs: Observations, t: datetime):
    return {r.scope: r for r in eng.tick(obs, t, NEW, OLD)}["Plant_B"]


def test_a_first_look_has_alpha_divided_among_the_scopes_only() -> None:
    # 12 of 200 flagged against 2 of 200: p = 0.0057.
    obs = Observations.from_rows(
        rows(NEW, 200, 12, T - timedelta(hours=11), timedelta(hours=10))
        + rows(OLD, 200, 2, T - timedelta(hours=11), timedelta(hours=10))
    )
    res = safety_at(Engine(only("safety_incident_rate")), obs, T)
    assert res.status == FIRE and res.alpha == pytest.approx(0.05 / 2)


def test_looking_again_and_again_at_the_same_data_shares_alpha() -> None:
    obs = Observations.from_rows(
        rows(NEW, 200, 12, T - timedelta(hours=11), timedelta(hours=10))
        + rows(OLD, 200, 2, T - timedelta(hours=11), timedelta(hours=10))
    )
    eng = Engine(only("safety_incident_rate"))
    seen = [safety_at(eng, obs, T - timedelta(minutes=15 * k)) for k in range(4, -1, -1)]
    # Five looks inside one window: the fifth is tested at alpha / (2 scopes × 5 looks).
    assert [r.alpha for r in seen] == pytest.approx([0.025, 0.0125, 0.05 / 6, 0.00625, 0.005])
    assert [r.status for r in seen] == [FIRE, FIRE, FIRE, FIRE, OK]  # p = 0.0057


def test_later_windows_of_a_long_watch_get_less() -> None:
    start = T - timedelta(days=3)
    data = rows(NEW, 2000, 0, start, timedelta(days=3)) + rows(
        OLD, 2000, 0, start, timedelta(days=3)
    )
    obs = Observations.from_rows(data)
    eng = Engine(only("safety_incident_rate"))
    first = safety_at(eng, obs, start + timedelta(hours=12))
    later = safety_at(eng, obs, start + timedelta(hours=36, minutes=1))
    assert first.alpha == pytest.approx(0.025)
    assert later.alpha == pytest.approx(0.025 / 3**2)  # the third window: k = 3


def test_an_identical_candidate_watched_for_a_week_never_fires() -> None:
    rng = np.random.default_rng(11)
    start = T - timedelta(days=7)
    data = []
    for version in (NEW, OLD):
        for plant in ("Plant_A", "Plant_B"):
            n = 7 * 24 * 10
            ts = np.sort(rng.uniform(0, 7 * 86400, n))
            flags = rng.random(n) < 0.05
            data += [
                {
                    "timestamp": start + timedelta(seconds=float(x)),
                    "plant_id": plant,
                    "model_version": version,
                    "latency_ms": float(rng.integers(150, 500)),
                    "contains_safety_keyword": bool(f),
                    "human_feedback_score": int(rng.choice([3, 4, 5, 5])),
                }
                for x, f in zip(ts, flags, strict=True)
            ]
    obs = Observations.from_rows(data)
    episodes = check(
        obs,
        default_policy(),
        start + timedelta(hours=1),
        T,
        timedelta(minutes=15),
        stable=OLD,
        candidates=[NEW],
    )
    assert episodes == []


def test_check_and_replay_find_a_candidate_that_turns_bad() -> None:
    onset = T - timedelta(hours=30)
    exposure = T - timedelta(hours=48)
    good = rows(NEW, 200, 10, exposure, onset - exposure) + rows(
        OLD, 600, 30, exposure, timedelta(hours=48)
    )
    bad = rows(NEW, 200, 60, onset, T - onset)  # 30 % flagged from the onset
    obs = Observations.from_rows(good + bad)
    pol = only("safety_incident_rate")
    assert [w.label for w in watches(obs, exposure, T)] == [
        f"{NEW} vs {OLD}",
        f"{OLD} vs its previous window",
    ]
    episodes = check(obs, pol, exposure, T, timedelta(minutes=30), candidates=[NEW])
    assert episodes and all(e.candidate == NEW for e in episodes)
    assert min(e.first_at for e in episodes) > onset
    found = replay(obs, pol, exposure, T, timedelta(minutes=30), candidates=[NEW])
    assert len(found) == 1
    inc = found[0]
    assert inc.rule_id == "safety_incident_rate" and onset < inc.detected_at < T
    assert inc.exposed_since is not None and inc.exposed_since < onset
    assert inc.time_to_detect == inc.detected_at - inc.exposed_since
