"""The scorecard of a model version: its latest run, its gate and its human review."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelwarden.errors import NotFoundError
from modelwarden.evals.golden import starter_set
from modelwarden.evals.runner import RunOptions, run_eval
from modelwarden.evals.store import compare_stored, run_scores
from modelwarden.gateway import fake_upstream
from modelwarden.governance.scorecard import default_gate, render_markdown, scorecard, wilson
from modelwarden.review.queue import next_item, submit_review
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import TOPICS
from modelwarden.store.state import StateStore

GOOD, POOR = "sop-assistant-v1.1", "sop-assistant-v1.2"
ANSWERS = {qa.answer for t in TOPICS for qa in t.items}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("scorecard") / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    state = StateStore.at(data)
    golden = starter_set()
    for version, quality, names in ((GOOD, "good", ["GOOD"]), (POOR, "poor", ["POOR0", "POOR"])):
        with ServerThread(fake_upstream.create_app(version, latency_ms=0, quality=quality)) as s:
            for name in names:
                run_eval(
                    settings,
                    golden,
                    RunOptions.build(model=version, name=name, endpoint=f"{s.url}/v1"),
                    state=state,
                )
    compare_stored(state, "GOOD", "POOR", default_gate())
    build_queue(
        settings, state, SampleSpec.build(source="POOR", n=16, reviewers=2, queue="q", seed=2)
    )
    build_queue(
        settings,
        state,
        SampleSpec.build(source="GOOD", n=16, reviewers=2, queue="q", seed=2, append=True),
    )
    build_queue(
        settings,
        state,
        SampleSpec.build(source="GOOD", pair_with="POOR", n=8, reviewers=2, queue="ab", seed=2),
    )
    rng = random.Random(7)

    def answer(item: dict[str, Any]) -> dict[str, Any]:
        if item["kind"] == "pairwise":
            return {"preference": "first" if item["first"] in ANSWERS else "second"}
        good = item["response"] in ANSWERS
        return {
            "correctness": 5 if good else 2,
            "safety": True,
            "helpfulness": rng.randint(1, 5),  # nobody agrees on this one
            "issue": "none" if good else "incomplete",
        }

    for queue in ("q", "ab"):
        for reviewer in ("ann", "bob"):
            while (item := next_item(state, queue, reviewer)) is not None:
                submit_review(state, item["item_id"], reviewer, answer(item))
    card = scorecard(settings, POOR, state=state)
    good_card = scorecard(settings, GOOD, state=state)
    poor_items = run_scores(state, card["run"]["id"])
    state.close()
    return {"settings": settings, "card": card, "good": good_card, "items": poor_items}


def test_the_latest_run_of_the_version_is_scored(world: dict[str, Any]) -> None:
    card = world["card"]
    assert card["version"] == POOR and card["run"]["name"] == "POOR"
    assert card["run"]["golden_set"]["content_hash"] == starter_set().content_hash
    metrics = {m["metric"]: m for m in card["metrics"]}
    assert list(metrics)[:3] == ["must_include", "semantic", "rougeL"]
    semantic = np.array([s.metrics["semantic"] for s in world["items"].values()])
    assert metrics["semantic"]["mean"] == pytest.approx(semantic.mean(), abs=1e-12)
    assert metrics["semantic"]["ci_low"] < semantic.mean() < metrics["semantic"]["ci_high"]
    assert metrics["must_include"] == {
        "metric": "must_include",
        "mean": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
        "n": 64,
    }
    outcomes = {o["outcome"]: o for o in card["outcomes"]}
    assert (outcomes["pass"]["count"], outcomes["pass"]["n"]) == (0, 64)
    # Wilson's upper bound at 0 of n is z^2 / (n + z^2).
    z2 = 1.959963984540054**2
    assert outcomes["safety_violations"]["ci_high"] == pytest.approx(z2 / (64 + z2))
    assert outcomes["safety_violations"]["ci_low"] == 0.0


def test_intervals_are_seeded(world: dict[str, Any]) -> None:
    settings = world["settings"]
    again = scorecard(settings, POOR)
    other = scorecard(settings, POOR, seed=1)
    pick = lambda c: [(m["ci_low"], m["ci_high"]) for m in c["metrics"]]  # noqa: E731
    assert pick(again) == pick(world["card"]) != pick(other)


def test_wilson_interval() -> None:
    lo, hi = wilson(5, 10, 0.95)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0, 0.95))


def test_the_gate_of_the_latest_comparison_is_shown(world: dict[str, Any]) -> None:
    gate = world["card"]["gate"]
    assert gate["passed"] is False and gate["baseline"] == "GOOD"
    assert gate["gate"] == "release-gate" and len(gate["checks"]) == 7
    failed = {c["name"] for c in gate["checks"] if not c["passed"]}
    assert "floor must_include >= 0.8" in failed
    assert world["good"]["gate"] is None


def test_only_reliable_review_dimensions_are_reported(world: dict[str, Any]) -> None:
    human = world["card"]["human_review"]
    dims = {(d["queue"], d["dimension"]): d for d in human["dimensions"]}
    excluded = {(d["queue"], d["dimension"]) for d in human["excluded"]}
    assert ("q", "correctness") in dims and ("q", "issue") in dims
    assert ("q", "helpfulness") in excluded and ("q", "safety") in excluded
    assert not set(dims) & excluded
    correctness = dims[("q", "correctness")]
    # 16 POOR items, two reviewers each, all rated 2.
    assert (correctness["mean"], correctness["n"], correctness["items"]) == (2.0, 32, 16)
    assert correctness["alpha"] == 1.0
    assert dims[("q", "issue")]["distribution"]["incomplete"] == 32
    good_dims = {d["dimension"]: d for d in world["good"]["human_review"]["dimensions"]}
    assert good_dims["correctness"]["mean"] == 5.0
    assert human["pairwise"] == [
        {"queue": "ab", "versus": GOOD, "preferred": 0, "other_preferred": 16, "ties": 0, "n": 16}
    ]


def test_markdown_and_missing_versions(world: dict[str, Any]) -> None:
    md = render_markdown(world["card"])
    assert md.startswith(f"# Scorecard: {POOR}\n")
    assert "Gate `release-gate` **FAILED** against baseline **GOOD**" in md
    assert "| q | correctness | 2 | [2, 2] | 32 | 16 | 1 |" in md
    assert "- q / helpfulness: alpha" in md
    assert "| must_include | 0 | [0, 0] | 64 |" in md
    with pytest.raises(NotFoundError, match="no evaluation run of 'nope'"):
        scorecard(world["settings"], "nope")


def test_scorecard_file_is_valid_json(world: dict[str, Any], tmp_path: Path) -> None:
    import json

    text = json.dumps(world["card"], default=str, allow_nan=False)
    assert json.loads(text)["version"] == POOR
