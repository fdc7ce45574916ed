"""The detector contract: one result shape, input validation, minimum sizes, the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelwarden.drift import (
    DriftResult,
    DriftSuite,
    available_detectors,
    get_detector,
)
from modelwarden.errors import ConflictError, DimensionError, InputError

EMBEDDING_METHODS = [
    "suite",
    "centroid_cosine",
    "centroid_euclidean",
    "mmd",
    "classifier",
    "clusters",
    "seed",
]
FAST = {"n_permutations": 199}


def _params(method: str) -> dict:
    return {} if method in ("seed", "classifier") else dict(FAST)


def _windows(seed: int = 0, n_b: int = 60, n_c: int = 40, d: int = 8):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_b, d)), rng.standard_normal((n_c, d))


def test_registry_knows_every_method():
    quality = {"feedback_score", "safety_rate", "cusum", "bernoulli_cusum"}
    assert {*EMBEDDING_METHODS, *quality} == set(available_detectors())


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_every_embedding_detector_returns_the_one_result_shape(method):
    baseline, current = _windows()
    det = get_detector(method, **_params(method))
    assert det.method == method
    assert det.fit(baseline) is det
    result = det.test(current)
    assert isinstance(result, DriftResult)
    assert result.method == method
    assert result.status in ("OK", "ALERT")
    assert result.drifted is (result.status == "ALERT")
    assert (result.n_baseline, result.n_current) == (60, 40)
    assert result.alpha == 0.05
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data) == {
        "drifted",
        "status",
        "score",
        "p_value",
        "threshold",
        "method",
        "n_baseline",
        "n_current",
        "alpha",
        "details",
    }
    assert data["details"]["params"]["alpha"] == 0.05


@pytest.mark.parametrize("method", ["centroid_cosine", "centroid_euclidean", "mmd", "clusters"])
def test_permutation_threshold_agrees_with_the_p_value(method):
    baseline, current = _windows(3)
    for shift in (0.0, 0.4, 2.0):
        result = get_detector(method, **FAST).fit(baseline).test(current + shift)
        assert (result.p_value <= result.alpha) == (result.score > result.threshold)


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_results_are_deterministic_for_a_seed(method):
    baseline, current = _windows(1)
    a = get_detector(method, **_params(method)).fit(baseline).test(current + 0.3)
    b = get_detector(method, **_params(method)).fit(baseline).test(current + 0.3)
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("method", [m for m in EMBEDDING_METHODS if m != "seed"])
def test_below_min_n_the_answer_is_insufficient_data(method):
    baseline, current = _windows(n_b=60, n_c=19)
    result = get_detector(method, **_params(method)).fit(baseline).test(current + 5.0)
    assert result.status == "INSUFFICIENT_DATA"
    assert result.drifted is None
    assert result.p_value is None
    assert result.details["min_n"] == 20
    json.dumps(result.to_dict(), allow_nan=False)


def test_min_n_is_configurable():
    baseline, current = _windows(n_b=60, n_c=10)
    det = get_detector("centroid_euclidean", min_n=5, **FAST).fit(baseline)
    assert det.test(current + 5.0).status == "ALERT"


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_mismatched_dimensions_name_the_current_window(method):
    baseline, _ = _windows()
    det = get_detector(method, **_params(method)).fit(baseline)
    with pytest.raises(DimensionError) as err:
        det.test(np.zeros((30, 9)))
    assert err.value.field == "current"
    assert isinstance(err.value, InputError)


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
@pytest.mark.parametrize("window", ["baseline", "current"])
def test_empty_and_nan_windows_are_input_errors_naming_the_window(method, window):
    baseline, current = _windows()
    bad_nan = (baseline if window == "baseline" else current).copy()
    bad_nan[3, 2] = np.nan
    for bad in (np.empty((0, 8)), bad_nan, [["a", "b"]]):
        det = get_detector(method, **_params(method))
        with pytest.raises(InputError) as err:
            if window == "baseline":
                det.fit(bad)
            else:
                det.fit(baseline).test(bad)
        assert err.value.field == window


def test_test_before_fit_is_a_conflict():
    with pytest.raises(ConflictError):
        get_detector("mmd").test(np.zeros((30, 4)))


def test_unknown_method_and_parameter_are_input_errors():
    with pytest.raises(InputError) as err:
        get_detector("kolmogorov")
    assert err.value.field == "method"
    with pytest.raises(InputError) as err:
        get_detector("mmd", bandwith=1.0)
    assert err.value.field == "bandwith"
    with pytest.raises(InputError) as err:
        get_detector("mmd", alpha=1.5)
    assert err.value.field == "alpha"
    with pytest.raises(InputError) as err:
        DriftSuite(members=["mmd", "seed"])
    assert err.value.field == "members"


def test_one_dimensional_input_is_one_vector():
    det = get_detector("seed").fit([1.0, 2.0, 3.0])
    assert det.test([1.0, 2.0, 3.0]).score == pytest.approx(0.0, abs=1e-12)


def test_float32_windows_are_accepted_without_copying_to_float64():
    baseline, current = _windows(2, n_b=100, n_c=50)
    r32 = (
        get_detector("centroid_euclidean", **FAST)
        .fit(baseline.astype(np.float32))
        .test(current.astype(np.float32))
    )
    r64 = get_detector("centroid_euclidean", **FAST).fit(baseline).test(current)
    assert r32.p_value == r64.p_value
    assert r32.score == pytest.approx(r64.score, rel=1e-5)
