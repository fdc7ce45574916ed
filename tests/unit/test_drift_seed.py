"""The seed notebook's drift example: parity of its metric, and what the calibrated suite says."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_distances

from modelwarden.drift import (
    CentroidCosineDetector,
    CentroidEuclideanDetector,
    DriftSuite,
    check_drift,
    get_detector,
)


@pytest.fixture(scope="module")
def seed_example() -> dict[str, np.ndarray]:
    """The notebook's arrays, drawn in its order from numpy's legacy global generator."""
    state = np.random.get_state()
    np.random.seed(11)
    baseline = np.random.randn(100, 768) * 0.1 + 0.5
    drifted = np.random.randn(50, 768) * 0.1 + 0.8
    control = np.random.randn(50, 768) * 0.1 + 0.5
    np.random.set_state(state)
    return {"baseline": baseline, "drifted": drifted, "control": control}


def _sklearn_score(baseline: np.ndarray, current: np.ndarray) -> float:
    return float(
        cosine_distances(baseline.mean(axis=0).reshape(1, -1), current.mean(axis=0).reshape(1, -1))[
            0, 0
        ]
    )


def test_check_drift_matches_the_notebook_computation(seed_example):
    for current in (seed_example["drifted"], seed_example["control"]):
        score, status = check_drift(seed_example["baseline"], current)
        assert score == pytest.approx(
            _sklearn_score(seed_example["baseline"], current), rel=1e-9, abs=1e-15
        )
        assert status == "OK"


def test_check_drift_misses_the_notebooks_own_drift(seed_example):
    # The documented blind spot: a shift along the mean direction barely turns the centroid.
    score, status = check_drift(seed_example["baseline"], seed_example["drifted"])
    assert score < 0.002
    assert status == "OK"


def test_seed_detector_wraps_check_drift_in_the_contract(seed_example):
    result = get_detector("seed").fit(seed_example["baseline"]).test(seed_example["drifted"])
    score, status = check_drift(seed_example["baseline"], seed_example["drifted"])
    assert result.method == "seed"
    assert result.score == score
    assert result.status == status
    assert result.drifted is False
    assert result.p_value is None
    assert result.threshold == 0.02


def test_default_suite_alerts_on_the_seed_drift_and_not_on_its_control(seed_example):
    suite = DriftSuite().fit(seed_example["baseline"])
    drifted = suite.test(seed_example["drifted"])
    control = suite.test(seed_example["control"])
    assert drifted.status == "ALERT"
    assert drifted.drifted is True
    assert drifted.p_value is not None and drifted.p_value <= 0.05
    assert control.status == "OK"
    assert control.drifted is False
    assert control.details["firing"] == []


def test_calibrated_cosine_keeps_the_seed_score_and_blind_spot(seed_example):
    det = CentroidCosineDetector().fit(seed_example["baseline"])
    result = det.test(seed_example["drifted"])
    assert result.score == pytest.approx(
        _sklearn_score(seed_example["baseline"], seed_example["drifted"]), rel=1e-9
    )
    # Calibration cannot give the cosine sight of a shift along the mean.
    assert result.status == "OK"


def test_euclidean_centroid_sees_the_shift_along_the_mean(seed_example):
    result = CentroidEuclideanDetector().fit(seed_example["baseline"]).test(seed_example["drifted"])
    assert result.status == "ALERT"
    assert result.p_value == pytest.approx(1 / 1001)
    assert result.score == pytest.approx(0.3 * np.sqrt(768), rel=0.05)
