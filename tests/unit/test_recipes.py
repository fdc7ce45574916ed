"""The three recipes of docs/architecture.md, followed exactly: each test is the recipe's code.

A drift detector, an eval metric and an SOP rule are added the way the document says, then run
through the public registry, evaluator or engine, with seeded data and exact expectations.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelwarden.drift import registry
from modelwarden.drift.base import Detector, DriftResult
from modelwarden.drift.service import compare_files
from modelwarden.errors import ConflictError, InputError
from modelwarden.evals import metrics
from modelwarden.evals.compare import FloorCheck, GateSpec, compare_runs
from modelwarden.evals.golden import GoldenItem
from modelwarden.evals.metrics import Evaluator, register_metric
from modelwarden.policy.engine import FIRE, OK, Engine, Observations
from modelwarden.policy.sop import render_sop
from modelwarden.policy.spec import Policy, Rule, default_policy


# ---- recipe 1: a drift detector ----------------------------------------------------------------
class MeanShiftDetector(Detector):
    """Alert when the mean vector moves further than ``max_shift`` (Euclidean)."""

    method = "mean_shift"

    def __init__(self, *, max_shift: float = 0.5, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.max_shift = max_shift

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        shift = float(np.linalg.norm(current.mean(axis=0) - baseline.mean(axis=0)))
        return self._result(
            drifted=shift > self.max_shift,
            score=shift,
            p_value=None,
            threshold=self.max_shift,
            n_baseline=len(baseline),
            n_current=len(current),
            details={"shift": shift},
        )


@pytest.fixture
def mean_shift() -> Iterator[None]:
    registry.register_detector("mean_shift", MeanShiftDetector)
    yield
    for table in (registry.DETECTORS, registry.EMBEDDING_DETECTORS):
        table.pop("mean_shift", None)


def test_a_registered_detector_runs_through_the_registry_and_the_service(
    mean_shift: None, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 4))
    moved = base + np.array([1.0, 0.0, 0.0, 0.0])

    det = registry.get_detector("mean_shift", max_shift=0.5)
    assert det.fit(base).test(base).status == "OK"
    res = det.fit(base).test(moved)
    assert res.status == "ALERT" and res.score == pytest.approx(1.0)
    assert "mean_shift" in registry.available_detectors()

    # The service the command line calls (modelwarden drift --method mean_shift a.npy b.npy).
    np.save(tmp_path / "a.npy", base)
    np.save(tmp_path / "b.npy", moved)
    row = compare_files(
        str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "prompt", "mean_shift", 0.05, 0.02
    )
    assert row["status"] == "ALERT" and row["score"] == pytest.approx(1.0)

    # Too few rows is answered, not guessed; a name is never reused.
    assert det.fit(base[:5]).test(moved[:5]).status == "INSUFFICIENT_DATA"
    with pytest.raises(ConflictError):
        registry.register_detector("mean_shift", MeanShiftDetector)
    with pytest.raises(InputError) as err:
        registry.get_detector("mean_shift", max_shfit=1.0)
    assert err.value.field == "max_shfit"


# ---- recipe 2: an eval metric ------------------------------------------------------------------
def answer_words(answer: str, item: GoldenItem) -> float | None:
    """Words in the answer; shorter is better on a shop floor."""
    return float(len(answer.split()))


@pytest.fixture
def words_metric() -> Iterator[None]:
    register_metric("answer_words", answer_words, higher_is_better=False)
    yield
    metrics.ITEM_METRICS.pop("answer_words", None)


def test_a_registered_metric_is_scored_and_gated(words_metric: None) -> None:
    golden = [
        GoldenItem(id=f"q{i}", references=("Close valve V3, then vent the line.",))
        for i in range(30)
    ]
    short = {it.id: "Close valve V3, then vent the line." for it in golden}
    wordy = {
        it.id: "First of all you should close valve V3 and then vent the line." for it in golden
    }
    ev = Evaluator()
    a, b = ev.score(golden, short), ev.score(golden, wordy)
    assert a.items["q0"].metrics["answer_words"] == 7.0
    assert b.corpus["answer_words"] == 13.0
    assert metrics.higher_is_better("answer_words") is False

    gate = GateSpec(floors=[FloorCheck(metric="answer_words", max=10.0)])
    assert compare_runs(a, a, gate=gate, n_boot=200, n_perm=200).passed
    assert not compare_runs(a, b, gate=gate, n_boot=200, n_perm=200).passed
    with pytest.raises(InputError):
        register_metric("bleu", answer_words)


# ---- recipe 3: an SOP rule ---------------------------------------------------------------------
ERROR_RULE = Rule(
    id="error_rate_jump",
    title="The error rate rises by more than 5 percentage points over 1 hour",
    metric="error_rate",
    window="1h",
    comparator="increase_pp",
    threshold=5.0,
    scope=["overall"],
    min_samples=30,
    rationale="Failed answers send operators back to paper.",
)


def _traffic(t: datetime, canary_error_every: int) -> Observations:
    rows = []
    for i in range(400):
        version = "v2" if i % 2 else "v1"
        rows.append(
            {
                "timestamp": t - timedelta(seconds=5 * i + 1),
                "plant_id": "plant-a",
                "model_version": version,
                "latency_ms": 100.0,
                "contains_safety_keyword": False,
                "error": version == "v2" and canary_error_every and i % canary_error_every == 1,
            }
        )
    return Observations.from_rows(rows)


def test_an_added_rule_fires_on_a_worse_canary_and_reaches_the_sop() -> None:
    base = default_policy()
    policy = Policy.from_yaml(
        Policy(rules=[*base.rules, ERROR_RULE]).to_yaml(), source="policy.yaml"
    )
    t = datetime(2026, 11, 23, 12, tzinfo=UTC)

    def verdict(obs: Observations) -> str:
        results = Engine(policy).tick(obs, t, candidate="v2", stable="v1")
        (mine,) = [r for r in results if r.rule_id == "error_rate_jump"]
        return mine.status

    assert verdict(_traffic(t, canary_error_every=4)) == FIRE  # about 50 % of v2 fails
    assert verdict(_traffic(t, canary_error_every=0)) == OK
    assert ERROR_RULE.title in render_sop(policy)
