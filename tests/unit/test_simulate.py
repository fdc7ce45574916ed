"""The traffic simulator: deterministic, four plants, and scenarios that show what they claim."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from modelwarden.errors import InputError
from modelwarden.records import validate
from modelwarden.simulate import corpus, live
from modelwarden.simulate.traffic import (
    CANDIDATE_VERSION,
    PLANTS,
    STABLE_VERSION,
    SimulatedData,
    parse_scenarios,
    simulate,
)

END = datetime(2026, 11, 23, tzinfo=UTC)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _dump(data: SimulatedData) -> str:
    return json.dumps([data.requests, data.feedback, data.escalations], sort_keys=True)


QUESTION_TOPIC = {q: t.name for t in corpus.all_topics() for qa in t.items for q in qa.questions}
DRIFT_NAMES = {t.name for t in corpus.DRIFT_TOPICS}


def _topic_of(prompt: str) -> str:
    found = {name for q, name in QUESTION_TOPIC.items() if q in prompt}
    assert len(found) == 1, (prompt, found)
    return found.pop()


@pytest.fixture(scope="module")
def topics_of(sim_data: SimulatedData) -> dict[str, str]:
    return {r["request_id"]: _topic_of(r["user_prompt"]) for r in sim_data.requests}


def test_same_seed_and_end_give_identical_output(sim_data: SimulatedData) -> None:
    again = simulate(days=21, seed=3, scenarios=("drift", "incident"), end=END)
    assert _dump(again) == _dump(sim_data)
    assert (again.start, again.end) == (END - timedelta(days=21), END)


def test_different_seed_gives_different_output(sim_data: SimulatedData) -> None:
    other = simulate(days=21, seed=4, scenarios=("drift", "incident"), end=END)
    assert _dump(other) != _dump(sim_data)
    assert {r["request_id"] for r in other.requests}.isdisjoint(
        r["request_id"] for r in sim_data.requests
    )


def test_end_in_another_zone_is_the_same_instant() -> None:
    a = simulate(days=2, seed=9, end=END)
    b = simulate(days=2, seed=9, end=END.astimezone(ZoneInfo("Asia/Tokyo")))
    assert _dump(a) == _dump(b)


def test_records_lie_in_the_range_and_are_sorted(sim_data: SimulatedData) -> None:
    start = END - timedelta(days=21)
    times = [_ts(r["timestamp"]) for r in sim_data.requests]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < END
    assert all(r["timestamp"].endswith("Z") for r in sim_data.requests)
    ids = [r["request_id"] for r in sim_data.requests]
    assert len(set(ids)) == len(ids)
    by_id = {r["request_id"]: _ts(r["timestamp"]) for r in sim_data.requests}
    for ev in (*sim_data.feedback, *sim_data.escalations):
        assert _ts(ev["timestamp"]) > by_id[ev["request_id"]]


def test_four_plants_with_their_own_volume(sim_data: SimulatedData) -> None:
    counts: dict[str, int] = defaultdict(int)
    for r in sim_data.requests:
        counts[r["plant_id"]] += 1
    assert sorted(counts) == list(PLANTS) == ["Plant_A", "Plant_B", "Plant_C", "Plant_D"]
    # Profiles: A is the busiest plant and D the quietest.
    assert counts["Plant_A"] > counts["Plant_B"] > counts["Plant_C"] > counts["Plant_D"]
    # Every plant has traffic every day.
    days = {(r["plant_id"], r["timestamp"][:10]) for r in sim_data.requests}
    assert len(days) == 4 * 21


def test_all_topics_appear(sim_data: SimulatedData, topics_of: dict[str, str]) -> None:
    assert set(topics_of.values()) == {t.name for t in corpus.all_topics()}
    stable = simulate(days=21, seed=3, scenarios=("stable",), end=END)
    names = {_topic_of(r["user_prompt"]) for r in stable.requests}
    assert names == {t.name for t in corpus.TOPICS}


def test_drift_topics_only_at_plant_c_in_the_last_week(
    sim_data: SimulatedData, topics_of: dict[str, str]
) -> None:
    drift_start = END - timedelta(days=7)
    drifted = [r for r in sim_data.requests if topics_of[r["request_id"]] in DRIFT_NAMES]
    assert len(drifted) > 50
    assert {r["plant_id"] for r in drifted} == {"Plant_C"}
    assert min(_ts(r["timestamp"]) for r in drifted) >= drift_start
    last_week_c = [
        r
        for r in sim_data.requests
        if r["plant_id"] == "Plant_C" and _ts(r["timestamp"]) >= drift_start
    ]
    share = len(drifted) / len(last_week_c)
    assert 0.2 < share < 0.5  # about a third of Plant_C's traffic


def test_incident_canary_only_at_plant_b_in_the_last_four_days(sim_data: SimulatedData) -> None:
    incident_start = END - timedelta(days=4)
    canary = [r for r in sim_data.requests if r["model_version"] == CANDIDATE_VERSION]
    assert len(canary) > 20
    assert {r["plant_id"] for r in canary} == {"Plant_B"}
    assert {r["route"] for r in canary} == {"canary"}
    assert min(_ts(r["timestamp"]) for r in canary) >= incident_start
    others = [r for r in sim_data.requests if r["model_version"] != CANDIDATE_VERSION]
    assert {r["model_version"] for r in others} == {STABLE_VERSION}
    assert {r["route"] for r in others} == {"stable"}


def test_incident_canary_is_sticky_by_user(sim_data: SimulatedData) -> None:
    incident_start = END - timedelta(days=4)
    versions: dict[str, set[str]] = defaultdict(set)
    for r in sim_data.requests:
        if r["plant_id"] == "Plant_B" and _ts(r["timestamp"]) >= incident_start:
            versions[r["user_id"]].add(r["model_version"])
    assert all(len(v) == 1 for v in versions.values()), versions
    on_canary = [u for u, v in versions.items() if v == {CANDIDATE_VERSION}]
    assert 0 < len(on_canary) < len(versions)


def test_candidate_is_worse_than_stable() -> None:
    # Four times the traffic: about 90 ratings of the canary rather than 20, so the comparison
    # is about the versions and not about a handful of ratings.
    sim_data = simulate(days=21, seed=3, scenarios=("drift", "incident"), end=END, scale=4)
    late = {f["request_id"]: f["score"] for f in sim_data.feedback}
    stats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    incident_start = END - timedelta(days=4)
    for r in sim_data.requests:
        if r["plant_id"] != "Plant_B" or _ts(r["timestamp"]) < incident_start:
            continue
        s = stats[r["model_version"]]
        score = late.get(r["request_id"], r["human_feedback_score"])
        if score is not None:
            s["feedback"].append(score)
        s["safety"].append(float(r["contains_safety_keyword"]))
        s["latency"].append(r["latency_ms"])
    new, old = stats[CANDIDATE_VERSION], stats[STABLE_VERSION]
    assert np.mean(new["feedback"]) < np.mean(old["feedback"]) - 1.0
    assert np.mean(new["safety"]) > np.mean(old["safety"]) + 0.05
    assert np.median(new["latency"]) > np.median(old["latency"])


def test_all_simulated_records_validate(sim_data: SimulatedData) -> None:
    for kind, rows in (
        ("requests", sim_data.requests),
        ("feedback", sim_data.feedback),
        ("escalations", sim_data.escalations),
    ):
        assert rows
        for raw in rows:
            rec, problems = validate(kind, raw)
            assert problems == [], (kind, raw, problems)
            assert rec is not None


def test_late_feedback_replaces_the_inline_score(sim_data: SimulatedData) -> None:
    late_ids = {f["request_id"] for f in sim_data.feedback}
    assert late_ids
    by_id = {r["request_id"]: r for r in sim_data.requests}
    assert all(by_id[i]["human_feedback_score"] is None for i in late_ids)
    assert all(1 <= f["score"] <= 5 for f in sim_data.feedback)


def test_scenario_parsing() -> None:
    assert parse_scenarios("drift, incident,drift") == ("drift", "incident")
    assert parse_scenarios("") == ("stable",)
    with pytest.raises(InputError) as info:
        parse_scenarios("meltdown")
    assert info.value.field == "scenario"
    with pytest.raises(InputError):
        simulate(days=0, end=END)
    with pytest.raises(InputError):
        simulate(days=1, scale=0, end=END)


def test_scenarios_change_only_the_requests_they_name() -> None:
    # The same seed gives the same traffic whatever the scenarios, except the drifted requests at
    # Plant_C in the last week and the canary requests at Plant_B in the last four days.
    stable = simulate(days=21, seed=7, scenarios=("stable",), end=END)
    both = simulate(days=21, seed=7, scenarios=("drift", "incident"), end=END)
    by_id = {r["request_id"]: r for r in stable.requests}
    assert sorted(by_id) == sorted(r["request_id"] for r in both.requests)
    changed = [r for r in both.requests if r != by_id[r["request_id"]]]
    assert {(r["plant_id"], r["model_version"]) for r in changed} == {
        ("Plant_C", STABLE_VERSION),
        ("Plant_B", CANDIDATE_VERSION),
    }
    drifted = [r for r in changed if r["plant_id"] == "Plant_C"]
    assert all(_topic_of(r["user_prompt"]) in DRIFT_NAMES for r in drifted)
    assert min(_ts(r["timestamp"]) for r in drifted) >= END - timedelta(days=7)
    canary = [r for r in both.requests if r["model_version"] == CANDIDATE_VERSION]
    assert {r["request_id"] for r in canary} <= {r["request_id"] for r in changed}
    # A shorter run with the same end is the tail of the longer one.
    tail = simulate(days=7, seed=7, scenarios=("drift", "incident"), end=END)
    assert _dump(tail) == _dump(
        SimulatedData(
            requests=[r for r in both.requests if _ts(r["timestamp"]) >= END - timedelta(days=7)],
            feedback=[
                f
                for f in both.feedback
                if f["request_id"] in {r["request_id"] for r in tail.requests}
            ],
            escalations=[
                e
                for e in both.escalations
                if e["request_id"] in {r["request_id"] for r in tail.requests}
            ],
        )
    )


# ---- live traffic --------------------------------------------------------------------------------
def _relative(reqs: list[live.LiveRequest], origin: datetime) -> list[tuple[object, ...]]:
    return [(r.at - origin, r.plant, r.user, r.prompt, r.qa_key, r.rates, r.seq) for r in reqs]


def test_live_traffic_counted_from_an_epoch_is_the_same_on_any_date() -> None:
    plays = []
    for origin in (datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 12, 6, 12, tzinfo=UTC)):
        reqs = live.plan_requests(
            origin + timedelta(minutes=15), origin + timedelta(hours=2), seed=7, epoch=origin
        )
        assert reqs and all(
            origin + timedelta(minutes=15) <= r.at < origin + timedelta(hours=2) for r in reqs
        )
        plays.append(_relative(reqs, origin))
    assert plays[0] == plays[1]
    # Consecutive windows continue each other: no gap, no double.
    origin = datetime(2026, 12, 6, 12, tzinfo=UTC)
    whole = live.plan_requests(origin, origin + timedelta(hours=1), seed=7, epoch=origin)
    halves = [
        r
        for a, b in ((0, 30), (30, 60))
        for r in live.plan_requests(
            origin + timedelta(minutes=a), origin + timedelta(minutes=b), seed=7, epoch=origin
        )
    ]
    assert sorted(r.seq for r in whole) == sorted(r.seq for r in halves)
    assert len(whole) == sum(live.DEMO_RATES.values())


def test_live_traffic_without_an_epoch_follows_the_calendar() -> None:
    a = datetime(2026, 3, 1, 12, tzinfo=UTC)
    b = datetime(2026, 12, 6, 12, tzinfo=UTC)
    one = live.plan_requests(a, a + timedelta(hours=1), seed=7)
    two = live.plan_requests(b, b + timedelta(hours=1), seed=7)
    assert _relative(one, a) != _relative(two, b)
    with pytest.raises(InputError) as err:
        live.plan_requests(a, a + timedelta(hours=1), epoch=b)
    assert err.value.field == "start"


def test_live_traffic_asks_what_the_history_of_its_seed_asked() -> None:
    # The demo's live hours follow four weeks of history made with the same seed: a stable plant
    # must not look drifted because the live generator asks differently (another topic mix, no
    # closings), or every plant's prompts are reported as drifting.
    from scipy.stats import chi2_contingency

    hist = simulate(days=28, seed=7, scenarios=("stable",), end=END)
    origin = END
    reqs = live.plan_requests(
        origin, origin + timedelta(hours=24), {"Plant_A": 200.0}, seed=7, epoch=origin
    )
    names = [t.name for t in corpus.TOPICS]
    past = [_topic_of(r["user_prompt"]) for r in hist.requests if r["plant_id"] == "Plant_A"]
    now = [_topic_of(r.prompt) for r in reqs]
    table = np.array([[past.count(n) for n in names], [now.count(n) for n in names]])
    keep = table.sum(axis=0) > 0
    assert chi2_contingency(table[:, keep]).pvalue > 0.001
    # The same greetings and closings as the history's operators.
    assert any(r.prompt.endswith(" Thanks.") for r in reqs)
