"""Sampling review queues from stored request logs, checked against the simulated traffic itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelwarden.errors import InputError, NotFoundError
from modelwarden.ingest.core import Ingestor
from modelwarden.review.sampling import SampleSpec, build_queue, disagreement
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.simulate.traffic import SimulatedData
from modelwarden.store.reads import open_store
from modelwarden.store.state import StateStore
from modelwarden.store.tables import review_items


@pytest.fixture
def logs(seeded_data_dir: Path, state_url: str) -> Iterator[tuple[Settings, StateStore]]:
    """The shared seeded logs (read only) and a state store of the test's own."""
    settings = Settings(
        data_dir=seeded_data_dir, embedder="hashing", embed_threads=1, state_url=state_url
    )
    state = StateStore.of(settings)
    yield settings, state
    state.close()


def items(state: StateStore, queue: str) -> list[dict[str, Any]]:
    with state.engine.connect() as con:
        rows = con.execute(select(review_items).where(review_items.c.queue == queue))
        return [dict(r._mapping) for r in rows]


def sample(settings: Settings, state: StateStore, **kw: Any) -> dict[str, Any]:
    return build_queue(settings, state, SampleSpec.build(**{"source": "logs", "seed": 4, **kw}))


def reviewable(sim: SimulatedData) -> dict[str, dict[str, Any]]:
    return {
        r["request_id"]: r
        for r in sim.requests
        if r.get("route") != "shadow" and not r.get("error") and r.get("generated_response")
    }


def test_stratified_sample_has_equal_shares_per_plant_and_version(
    logs: tuple[Settings, StateStore], sim_data: SimulatedData
) -> None:
    settings, state = logs
    strata = Counter((r["plant_id"], r["model_version"]) for r in reviewable(sim_data).values())
    assert len(strata) == 5 and min(strata.values()) >= 8
    summary = sample(settings, state, queue="s", n=40)
    assert summary["sampled"] == 40 and set(summary["strata"].values()) == {8}
    rows = items(state, "s")
    got = Counter((r["plant_id"], r["model_version"]) for r in rows)
    assert got == dict.fromkeys(strata, 8)
    by_id = reviewable(sim_data)
    for r in rows:
        src = by_id[r["request_id"]]
        assert (r["prompt"], r["response"]) == (src["user_prompt"], src["generated_response"])
        assert r["source"] == "logs" and r["reference"] is None and r["kind"] == "single"
    by_plant = sample(settings, state, queue="p", n=20, by=["plant_id"])
    assert set(by_plant["strata"].values()) == {5} and len(by_plant["strata"]) == 4


def test_random_sample_is_seeded(logs: tuple[Settings, StateStore]) -> None:
    settings, state = logs
    picks = []
    for queue, seed in (("a", 1), ("b", 1), ("c", 2)):
        sample(settings, state, queue=queue, n=30, strategy="random", seed=seed)
        picks.append({r["request_id"] for r in items(state, queue)})
    assert len(picks[0]) == 30 and picks[0] == picks[1] != picks[2]


def test_low_feedback_takes_the_lowest_rated_requests_first(
    logs: tuple[Settings, StateStore], sim_data: SimulatedData
) -> None:
    settings, state = logs
    lowest: dict[str, int] = {}
    for r in reviewable(sim_data).values():
        if r.get("human_feedback_score") is not None:
            lowest[r["request_id"]] = r["human_feedback_score"]
    for f in sim_data.feedback:
        if f["request_id"] in reviewable(sim_data):
            rid = f["request_id"]
            lowest[rid] = min(lowest.get(rid, 99), f["score"])
    low = {k: v for k, v in lowest.items() if v <= 2}
    ones = {k for k, v in low.items() if v == 1}
    assert len(low) > 70 and 0 < len(ones) < 70
    sample(settings, state, queue="lf", n=70, strategy="low_feedback")
    rows = items(state, "lf")
    assert len(rows) == 70
    assert all(r["request_id"] in low for r in rows)
    assert {r["meta"]["feedback"] for r in rows} == {1, 2}
    assert ones <= {r["request_id"] for r in rows}
    assert all(r["meta"]["feedback"] == low[r["request_id"]] for r in rows)


def test_safety_sample_is_every_flagged_or_escalated_request(
    logs: tuple[Settings, StateStore], sim_data: SimulatedData
) -> None:
    settings, state = logs
    ok = reviewable(sim_data)
    flagged = {r["request_id"] for r in ok.values() if r.get("contains_safety_keyword")}
    escalated = {
        e["request_id"]
        for e in sim_data.escalations
        if e.get("category") == "safety" and e["request_id"] in ok
    }
    expected = flagged | escalated
    assert 10 < len(expected) < 200
    summary = sample(settings, state, queue="sf", n=500, strategy="safety")
    assert summary["sampled"] == len(expected) < summary["requested"]
    assert {r["request_id"] for r in items(state, "sf")} == expected


def test_shadow_disagreement_pairs_the_most_different_answers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    served = "Change the gearbox oil every 5000 operating hours with ISO VG 220 oil."
    shadows = [
        served,  # the same answer
        "Change the gearbox oil every 5000 hours with ISO VG 220.",
        "Change the oil yearly.",
        "Ask maintenance.",
    ]
    records = []
    for i, shadow in enumerate(shadows):
        base = {
            "timestamp": f"2026-11-02T10:0{i}:00Z",
            "plant_id": "Plant_A",
            "user_prompt": f"When is the gearbox oil changed? ({i})",
            "latency_ms": 200,
        }
        records.append(
            {
                **base,
                "request_id": f"p{i}",
                "model_version": "v1.1",
                "generated_response": served,
                "route": "stable",
            }
        )
        records.append(
            {
                **base,
                "request_id": f"s{i}",
                "model_version": "v1.2",
                "generated_response": shadow,
                "route": "shadow",
                "parent_request_id": f"p{i}",
            }
        )
    ing = Ingestor(open_store(settings), safety_checker(settings))
    rep = ing.ingest_raw("requests", [(str(i), r) for i, r in enumerate(records)], "test")
    assert rep.accepted == 8
    state = StateStore.at(data)
    try:
        summary = build_queue(
            settings,
            state,
            SampleSpec.build(
                source="logs", n=3, strategy="shadow_disagreement", queue="sh", seed=0
            ),
        )
        assert summary["added"] == {"pairwise": 3}
        rows = sorted(items(state, "sh"), key=lambda r: -r["meta"]["disagreement"])
        assert [r["source_ref"] for r in rows] == ["shadow:s3", "shadow:s2", "shadow:s1"]
        assert [r["meta"]["disagreement"] for r in rows] == [
            round(disagreement(served, shadows[i]), 6) for i in (3, 2, 1)
        ]
        for r in rows:
            assert r["kind"] == "pairwise" and r["response"] == served
            assert r["pair"]["a"]["model_version"] == "v1.1"
            assert r["pair"]["b"]["model_version"] == "v1.2"
            assert r["pair"]["order"] in ("AB", "BA")
    finally:
        state.close()


def test_bad_sampling_requests_are_input_errors(
    logs: tuple[Settings, StateStore], tmp_path: Path
) -> None:
    settings, state = logs
    with pytest.raises(InputError, match="--by 'topic'"):
        sample(settings, state, queue="x", n=5, by=["topic"])
    with pytest.raises(InputError, match="pairs two evaluation runs"):
        sample(settings, state, queue="x", n=5, pair_with="other")
    with pytest.raises(InputError, match="queue name"):
        sample(settings, state, queue="bad name", n=5)
    with pytest.raises(InputError, match="strategy"):
        SampleSpec.build(source="logs", n=5, strategy="vibes")
    empty = Settings(data_dir=tmp_path / "empty", embedder="hashing")
    with pytest.raises(NotFoundError, match="no requests stored"):
        sample(empty, state, queue="x", n=5)
    with pytest.raises(NotFoundError, match="no evaluation run"):
        build_queue(settings, state, SampleSpec.build(source="nope", n=5, queue="x"))
