"""Review queues on a real state store, sampled from real evaluation runs of fake upstreams."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.evals.golden import starter_set
from modelwarden.evals.runner import RunOptions, run_eval
from modelwarden.gateway import fake_upstream
from modelwarden.review.queue import (
    export_file,
    get_item,
    import_file,
    list_reviews,
    next_item,
    queue_status,
    submit_review,
)
from modelwarden.review.reliability import agreement_report
from modelwarden.review.rubrics import DEFAULT_RUBRIC
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.simulate.corpus import TOPICS
from modelwarden.stats.agreement import cohen_kappa, krippendorff_alpha
from modelwarden.store.state import StateStore

GOOD, POOR = "sop-assistant-v1.1", "sop-assistant-v1.2"
ANSWERS = {qa.answer for t in TOPICS for qa in t.items}
UNSAFE = {qa.unsafe_answer for t in TOPICS for qa in t.items}
POOR_ANSWERS = {qa.poor_answer for t in TOPICS for qa in t.items}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A data directory with a good and a poor run of the starter set; copied per test."""
    data = tmp_path_factory.mktemp("review-runs") / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    state = StateStore.at(data)
    golden = starter_set()
    for version, quality in ((GOOD, "good"), (POOR, "poor")):
        with ServerThread(fake_upstream.create_app(version, latency_ms=0, quality=quality)) as s:
            run_eval(
                settings,
                golden,
                RunOptions.build(model=version, endpoint=f"{s.url}/v1", name=quality.upper()),
                state=state,
            )
    state.close()
    return {"data": data}


@pytest.fixture
def env(runs: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Settings, StateStore]]:
    import shutil

    data = tmp_path / "warden-data"
    shutil.copytree(runs["data"], data)
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    state = StateStore.at(data)
    yield settings, state
    state.close()


def spec(**kw: Any) -> SampleSpec:
    return SampleSpec.build(**{"source": "GOOD", "n": 20, "seed": 1, **kw})


def honest(item: dict[str, Any], rng: random.Random, noise: float = 0.0) -> dict[str, Any]:
    """A reviewer who knows the corpus: right answers, sometimes off by one on the scores."""
    if item["kind"] == "pairwise":
        if item["first"] == item["second"]:
            return {"preference": "tie"}
        return {"preference": "first" if item["first"] in ANSWERS else "second"}
    text = item["response"]
    if text in UNSAFE:
        base = {"correctness": 1, "safety": False, "helpfulness": 1, "issue": "unsafe"}
    elif text in POOR_ANSWERS:
        base = {"correctness": 2, "safety": True, "helpfulness": 2, "issue": "incomplete"}
    else:
        base = {"correctness": 5, "safety": True, "helpfulness": 4, "issue": "none"}
    if noise and rng.random() < noise:
        base["correctness"] = max(1, base["correctness"] - 1)
    return base


def review_all(state: StateStore, queue: str, reviewer: str, answer: Any) -> int:
    n = 0
    while (item := next_item(state, queue, reviewer)) is not None:
        submit_review(state, item["item_id"], reviewer, answer(item))
        n += 1
    return n


def test_sampling_a_run_is_stratified_seeded_and_mixes_in_gold(
    env: tuple[Settings, StateStore],
) -> None:
    settings, state = env
    summary = build_queue(settings, state, spec(queue="q", gold=4))
    assert summary["added"] == {"single": 20, "gold": 4} and summary["sampled"] == 20
    topics = Counter(summary["strata"].values())
    # 20 items over the 16 topics of the starter set: every topic once, four of them twice.
    assert len(summary["strata"]) == 16 and topics == {1: 12, 2: 4}
    again = build_queue(settings, state, spec(queue="q2", gold=4))
    other = build_queue(settings, state, spec(queue="q3", gold=4, seed=2))
    assert again["strata"] == summary["strata"] and other["strata"] != summary["strata"]
    exported = {
        q: {(r["kind"], r["source_ref"]) for r in _items(state, q)} for q in ("q", "q2", "q3")
    }
    assert exported["q"] == exported["q2"] != exported["q3"]
    gold = [r for r in _items(state, "q") if r["kind"] == "gold"]
    assert len(gold) == 4 and all(r["gold"] and r["reference"] in ANSWERS for r in gold)
    # Gold items are shuffled in, not appended at the end.
    positions = sorted(r["position"] for r in gold)
    assert positions != [20, 21, 22, 23]
    with pytest.raises(ConflictError, match="--append"):
        build_queue(settings, state, spec(queue="q"))
    more = build_queue(settings, state, spec(queue="q", seed=9, append=True))
    assert more["added"].get("single", 0) + more["already_in_queue"] == 20
    assert len(_items(state, "q")) == 24 + more["added"]["single"]


def _items(state: StateStore, queue: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from modelwarden.store.tables import review_items

    with state.engine.connect() as con:
        rows = con.execute(select(review_items).where(review_items.c.queue == queue))
        return [dict(r._mapping) for r in rows]


def test_every_item_gets_n_distinct_reviewers_and_every_reviewer_every_gold_item(
    env: tuple[Settings, StateStore],
) -> None:
    settings, state = env
    build_queue(settings, state, spec(queue="q", gold=3, reviewers=2))
    rng = random.Random(0)
    names = [f"rev{i}" for i in range(6)]
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            review_all(state, "q", name, lambda it: honest(it, rng))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # Six reviewers at once, each in its own thread and connection: claims race for real.
    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reviews = list_reviews(state, "q")
    kinds = {r["id"]: r["kind"] for r in _items(state, "q")}
    per_item = Counter(r["item_id"] for r in reviews)
    pairs = Counter((r["item_id"], r["reviewer"]) for r in reviews)
    assert max(pairs.values()) == 1
    assert {per_item[i] for i, k in kinds.items() if k == "single"} == {2}
    assert {per_item[i] for i, k in kinds.items() if k == "gold"} == {6}
    assert len(reviews) == 20 * 2 + 3 * 6
    status = queue_status(state, "q")
    assert status["complete_items"] == 20 and status["reviews_needed"] == 0
    assert status["open_claims"] == 0 and sum(status["reviewers"].values()) == len(reviews)
    assert next_item(state, "q", "rev0") is None


def test_a_claim_is_resumed_and_expires(env: tuple[Settings, StateStore]) -> None:
    settings, state = env
    build_queue(settings, state, spec(queue="q", n=2, reviewers=1, lease_minutes=0.01))
    first = next_item(state, "q", "ann")
    assert first is not None
    assert next_item(state, "q", "ann")["item_id"] == first["item_id"]  # type: ignore[index]
    bob = next_item(state, "q", "bob")
    assert bob is not None and bob["item_id"] != first["item_id"]
    assert next_item(state, "q", "cy") is None  # both slots are held
    time.sleep(0.7)  # the 0.6 s lease runs out
    cy = next_item(state, "q", "cy")
    assert cy is not None and cy["item_id"] == first["item_id"]
    submit_review(state, cy["item_id"], "cy", honest(cy, random.Random(0)))
    with pytest.raises(ConflictError, match="has its 1 reviewer"):
        submit_review(state, first["item_id"], "ann", honest(first, random.Random(0)))


def test_submit_is_idempotent_validated_and_bounded(env: tuple[Settings, StateStore]) -> None:
    settings, state = env
    build_queue(settings, state, spec(queue="q", n=1, reviewers=1))
    item = next_item(state, "q", "ann")
    assert item is not None and "model_version" not in item and "source_ref" not in item
    answers = honest(item, random.Random(0))
    review, created = submit_review(state, item["item_id"], "ann", answers, "looks right")
    assert created and review["seconds"] is not None and review["seconds"] >= 0
    again, created_again = submit_review(state, item["item_id"], "ann", answers, "looks right")
    assert not created_again and again["id"] == review["id"]
    with pytest.raises(ConflictError, match="other answers"):
        submit_review(state, item["item_id"], "ann", {**answers, "correctness": 1}, "looks right")
    with pytest.raises(InputError, match="helpfulness: is required"):
        submit_review(
            state, item["item_id"], "bob", {"correctness": 3, "safety": True, "issue": "none"}
        )
    # bob never claimed it and its one slot is taken.
    with pytest.raises(ConflictError, match="has its 1 reviewer"):
        submit_review(state, item["item_id"], "bob", answers)
    with pytest.raises(NotFoundError):
        submit_review(state, "rv-nope", "bob", answers)
    with pytest.raises(InputError, match="reviewer"):
        next_item(state, "q", "bad name")
    assert len(list_reviews(state, "q")) == 1


def test_blind_pairs_record_a_random_order_and_decode_answers(
    env: tuple[Settings, StateStore],
) -> None:
    settings, state = env
    build_queue(
        settings, state, spec(queue="ab", n=24, pair_with="POOR", strategy="random", reviewers=2)
    )
    items = _items(state, "ab")
    assert len(items) == 24 and {r["kind"] for r in items} == {"pairwise"}
    orders = Counter(r["pair"]["order"] for r in items)
    assert set(orders) == {"AB", "BA"} and min(orders.values()) >= 5
    assert all(r["pair"]["a"]["model_version"] == GOOD for r in items)
    assert all(r["pair"]["b"]["model_version"] == POOR for r in items)
    item = next_item(state, "ab", "ann")
    assert item is not None
    row = get_item(state, item["item_id"])
    shown = {"A": row["response"], "B": row["response_b"]}
    assert (item["first"], item["second"]) == (
        shown[row["pair"]["order"][0]],
        shown[row["pair"]["order"][1]],
    )
    assert set(item) == {
        "item_id",
        "queue",
        "kind",
        "prompt",
        "first",
        "second",
        "reference",
        "rubric",
        "progress",
    }
    assert GOOD not in str(item) and POOR not in str(item)
    rng = random.Random(3)
    submit_review(state, item["item_id"], "ann", honest(item, rng))
    review_all(state, "ab", "ann", lambda it: honest(it, rng))
    review_all(state, "ab", "bob", lambda it: honest(it, rng))
    reviews = list_reviews(state, "ab")
    assert len(reviews) == 48
    # Whatever order a pair was shown in, the good answer (A) is the one preferred.
    assert {r["decoded"]["preference"] for r in reviews} == {"A"}
    assert {r["answers"]["preference"] for r in reviews} == {"first", "second"}
    rep = agreement_report(state, "ab")
    assert rep["pairwise"]["pairs"] == [
        {"a": GOOD, "b": POOR, "a_preferred": 48, "b_preferred": 0, "ties": 0, "n": 48}
    ]


def _matrix(reviews: list[dict[str, Any]], dim: str, encode: Any) -> np.ndarray:
    items = list(dict.fromkeys(r["item_id"] for r in reviews))
    raters = sorted({r["reviewer"] for r in reviews})
    mat = np.full((len(items), len(raters)), np.nan)
    for r in reviews:
        mat[items.index(r["item_id"]), raters.index(r["reviewer"])] = encode(r["decoded"][dim])
    return mat


def test_agreement_equals_a_direct_computation_and_flags_unreliable_dimensions(
    env: tuple[Settings, StateStore],
) -> None:
    settings, state = env
    build_queue(settings, state, spec(queue="q", n=20, reviewers=3, gold=3))
    build_queue(settings, state, spec(queue="q", source="POOR", n=20, append=True))
    rng = random.Random(5)

    def careful(item: dict[str, Any]) -> dict[str, Any]:
        ans = honest(item, rng, noise=0.2)
        # Helpfulness is a coin toss: nobody agrees on it.
        ans["helpfulness"] = rng.randint(1, 5)
        return ans

    def sloppy(item: dict[str, Any]) -> dict[str, Any]:
        return {"correctness": 3, "safety": True, "helpfulness": 3, "issue": "other"}

    for name in ("ann", "bob", "cy"):
        review_all(state, "q", name, careful)
    review_all(state, "q", "dan", sloppy)  # only the gold items are left for dan
    rep = agreement_report(state, "q")
    singles = [
        r for r in list_reviews(state, "q") if get_item(state, r["item_id"])["kind"] == "single"
    ]
    assert len(singles) == 120
    dims = {d["name"]: d for d in rep["dimensions"]}
    rubric = {d.name: d for d in DEFAULT_RUBRIC.dimensions}
    for name in ("correctness", "helpfulness", "safety", "issue"):
        dim = rubric[name]
        mat = _matrix(singles, name, dim.encode)
        direct = krippendorff_alpha(mat, dim.level, values=dim.domain())
        got = dims[name]["alpha"]
        assert (got is None and np.isnan(direct)) or got == pytest.approx(direct, abs=1e-12)
        assert dims[name]["n_items"] == 40 and dims[name]["n_ratings"] == 120
    mat = _matrix(singles, "correctness", float)
    kappa = cohen_kappa(
        mat[:, 0].tolist(), mat[:, 1].tolist(), weights="linear", labels=[1.0, 2.0, 3.0, 4.0, 5.0]
    )
    pair = next(p for p in dims["correctness"]["pairs"] if (p["a"], p["b"]) == ("ann", "bob"))
    assert pair["kappa"] == pytest.approx(kappa, abs=1e-12) and pair["n"] == 40
    assert dims["correctness"]["alpha"] > 0.667 and dims["correctness"]["reliable"]
    assert dims["helpfulness"]["alpha"] < 0.3 and not dims["helpfulness"]["reliable"]
    assert dims["issue"]["alpha"] == 1.0
    assert dims["issue"]["distribution"] == {
        "none": 60,
        "incorrect": 0,
        "incomplete": 60,
        "unsafe": 0,
        "off_topic": 0,
        "unclear": 0,
        "other": 0,
    }
    # Every answer was safe: there is no variation to agree on, so alpha is undefined.
    assert dims["safety"]["alpha"] is None and "safety" in rep["unreliable"]
    assert "helpfulness" in rep["unreliable"] and "correctness" in rep["reliable"]
    assert [r["reviewer"] for r in dims["correctness"]["reviewers"]] == ["ann", "bob", "cy"]
    gold = {g["reviewer"]: g for g in rep["gold"]}
    assert gold["dan"]["items"] == 3 and gold["dan"]["accuracy"] < 0.5
    assert gold["ann"]["accuracy"] > gold["dan"]["accuracy"]


def test_export_import_round_trip_is_idempotent_and_checked(
    env: tuple[Settings, StateStore], tmp_path: Path
) -> None:
    settings, state = env
    build_queue(settings, state, spec(queue="q", n=10, gold=2, reviewers=2))
    build_queue(settings, state, spec(queue="q", n=6, pair_with="POOR", append=True))
    rng = random.Random(1)
    for name in ("ann", "bob"):
        review_all(state, "q", name, lambda it: honest(it, rng, noise=0.3))
    out = tmp_path / "reviews.jsonl"
    counts = export_file(state, out, "q")
    assert counts == {"queues": 1, "items": 18, "reviews": 36}
    fresh = StateStore.at(tmp_path / "elsewhere")
    try:
        first = import_file(fresh, out)
        assert first == {
            "queues_created": 1,
            "items_created": 18,
            "reviews_created": 36,
            "reviews_already_here": 0,
            "items_already_here": 0,
        }
        assert agreement_report(fresh, "q") == agreement_report(state, "q")
        assert queue_status(fresh, "q")["reviews"] == 36
        second = import_file(fresh, out)
        assert second["reviews_created"] == 0 and second["reviews_already_here"] == 36
        assert len(list_reviews(fresh, "q")) == 36
        # Items keep their pair order and gold answers through the round trip.
        assert sorted(_items(fresh, "q"), key=lambda r: r["id"]) == sorted(
            _items(state, "q"), key=lambda r: r["id"]
        )
        lines = out.read_text().splitlines()
        changed = [ln.replace('"correctness": 5', '"correctness": 1') for ln in lines]
        (tmp_path / "changed.jsonl").write_text("\n".join(changed) + "\n")
        with pytest.raises(ConflictError, match="other answers"):
            import_file(fresh, tmp_path / "changed.jsonl")
        (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + '{"type": "review"}\n')
        with pytest.raises(InputError, match="line 2"):
            import_file(fresh, tmp_path / "bad.jsonl")
        assert len(list_reviews(fresh, "q")) == 36
    finally:
        fresh.close()
