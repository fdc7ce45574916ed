"""Each member of the suite sees a drift another one misses; the suite sees them all."""

from __future__ import annotations

import numpy as np
import pytest

from modelwarden.drift import DriftSuite, get_detector
from modelwarden.drift.classifier import _dual_solver, _primal_solver
from modelwarden.drift.clusters import kmeans
from modelwarden.drift.mmd import MMDDetector, median_bandwidth
from modelwarden.drift.synthetic import mixture_weights, topic_centres, topic_mixture

FAST = {"n_permutations": 199}
MEMBERS = ["clusters", "mmd", "centroid_euclidean", "classifier"]


def _outcomes(baseline: np.ndarray, current: np.ndarray) -> dict[str, str]:
    out = {m: get_detector(m, **FAST).fit(baseline).test(current).status for m in MEMBERS}
    out["suite"] = DriftSuite(n_permutations=199).fit(baseline).test(current).status
    return out


def test_spread_change_is_seen_by_mmd_only():
    rng = np.random.default_rng(0)
    baseline = rng.standard_normal((300, 8))
    current = 1.5 * rng.standard_normal((200, 8))
    out = _outcomes(baseline, current)
    assert out["mmd"] == "ALERT"
    assert out["centroid_euclidean"] == "OK"
    assert out["classifier"] == "OK"
    assert out["suite"] == "ALERT"


def test_topic_mix_change_with_the_same_mean_is_seen_by_the_cluster_shares():
    # Four topics at +-e1 and +-e2: moving traffic from the e1 pair to the e2 pair keeps the
    # mean at zero.
    centres = np.zeros((4, 16))
    centres[0, 0], centres[1, 0], centres[2, 1], centres[3, 1] = 1, -1, 1, -1
    rng = np.random.default_rng(1)
    baseline, _ = topic_mixture(centres, [0.3, 0.3, 0.2, 0.2], 1000, seed=rng, noise=0.5)
    current, _ = topic_mixture(centres, [0.2, 0.2, 0.3, 0.3], 400, seed=rng, noise=0.5)
    out = _outcomes(baseline, current)
    assert out["clusters"] == "ALERT"
    assert out["centroid_euclidean"] == "OK"
    assert out["classifier"] == "OK"
    assert out["suite"] == "ALERT"


def test_shift_along_a_quiet_direction_is_seen_by_the_classifier_only():
    rng = np.random.default_rng(0)
    scale = np.r_[np.full(40, 3.0), np.full(10, 0.1)]
    baseline = rng.standard_normal((300, 50)) * scale
    current = rng.standard_normal((300, 50)) * scale
    current[:, 45] += 0.05
    out = _outcomes(baseline, current)
    assert out["classifier"] == "ALERT"
    assert out["centroid_euclidean"] == "OK"
    assert out["mmd"] == "OK"


def test_new_topic_is_seen_by_the_cluster_shares_and_the_suite():
    centres = topic_centres(6, 64, seed=2)
    rng = np.random.default_rng(2)
    old = np.r_[np.full(5, 0.2), 0.0]
    new = np.r_[np.full(5, 0.16), 0.2]
    baseline, _ = topic_mixture(centres, old, 2000, seed=rng)
    current, _ = topic_mixture(centres, new, 500, seed=rng)
    result = DriftSuite(n_permutations=199).fit(baseline).test(current)
    assert result.status == "ALERT"
    assert "clusters" in result.details["firing"]
    top = result.details["members"]["clusters"]["details"]["clusters"][0]
    assert top["share_baseline"] < 0.005 and top["share_current"] > 0.03


def test_mixture_power_on_a_topic_growing_from_10_to_15_percent():
    """The benchmark's topic case (b) on a few seeds; bench/drift runs it on a hundred."""
    alerts = []
    for seed in range(6):
        centres = topic_centres(10, 384, seed=10_000 + seed)
        rng = np.random.default_rng(seed)
        baseline, _ = topic_mixture(centres, mixture_weights(10, 0, 0.10), 5000, seed=rng)
        current, _ = topic_mixture(centres, mixture_weights(10, 0, 0.15), 1000, seed=rng)
        alerts.append(DriftSuite(n_permutations=299).fit(baseline).test(current).drifted)
    assert sum(alerts) >= 5


def test_exact_and_fourier_mmd_agree_on_what_they_measure():
    rng = np.random.default_rng(3)
    baseline = rng.standard_normal((600, 6))
    current = rng.standard_normal((400, 6)) + 0.3
    exact = MMDDetector(exact_max_n=5000, **FAST).fit(baseline).test(current)
    fourier = MMDDetector(exact_max_n=0, n_features=4096, **FAST).fit(baseline).test(current)
    assert exact.details["mode"] == "exact"
    assert fourier.details["mode"] == "random_fourier_features"
    assert exact.details["bandwidth"] == fourier.details["bandwidth"]
    assert fourier.details["effect"] == pytest.approx(exact.details["effect"], rel=0.1)
    assert exact.status == fourier.status == "ALERT"


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = np.array([[0.0], [1.0], [3.0]])
    assert median_bandwidth(x) == pytest.approx(2.0)
    assert median_bandwidth(np.zeros((5, 3))) == 1.0


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.standard_normal((50, 2)) for c in centres])
    fit = kmeans(x, 3, seed=0)
    labels = fit.assign(x)
    assert sorted(np.bincount(labels).tolist()) == [50, 50, 50]
    found = fit.centres[np.argsort(fit.centres[:, 0] + 2 * fit.centres[:, 1])]
    np.testing.assert_allclose(found, centres[[0, 1, 2]], atol=0.5)


def test_classifier_solvers_agree_with_a_direct_solve():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 30)) * np.linspace(0.2, 3, 30)
    v = rng.standard_normal((30, 4))
    mean = x.mean(axis=0)
    gram = x.T @ x
    primal, g1 = _primal_solver(x, gram, 0.3)
    dual, g2 = _dual_solver(x, 0.3)
    cov = gram / 40 - np.outer(mean, mean)
    d = np.sqrt(np.diag(cov))
    reg = 0.7 * cov + 0.3 * np.diag(d**2)
    expected = np.linalg.solve(reg, v)
    np.testing.assert_allclose(primal(v), expected, rtol=1e-8)
    np.testing.assert_allclose(dual(v), expected, rtol=1e-8)
    assert g1 == g2 == 0.3


def test_classifier_held_out_spread_from_scatter_matches_the_scores():
    from modelwarden.drift.classifier import _CrossFit

    rng = np.random.default_rng(6)
    x = rng.standard_normal((120, 10))
    fit = _CrossFit(x, 5, None, seed=0)
    w = rng.standard_normal((10, 3))
    for fold in range(fit.n_folds):
        np.testing.assert_allclose(
            fit._scatter_quadratic(fold, w), fit._row_quadratic(fold, w), rtol=1e-9
        )
