"""Calibration: exact permutation p-values, multiplicity adjustments, false-alarm rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modelwarden.drift import DriftSuite, get_detector
from modelwarden.drift.calibration import (
    Relabeller,
    benjamini_hochberg,
    critical_value,
    holm,
    joint_p_values,
    permutation_p_value,
    weighted_step_down,
    westfall_young,
)
from modelwarden.drift.synthetic import topic_centres, topic_mixture


def test_permutation_p_value_counts_the_observed_labelling():
    null = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    assert permutation_p_value(0.95, null) == pytest.approx(1 / 6)
    assert permutation_p_value(0.5, null) == pytest.approx(3 / 6)
    assert permutation_p_value(0.0, null) == pytest.approx(1.0)


def test_critical_value_is_the_boundary_of_the_p_value():
    rng = np.random.default_rng(0)
    for b in (19, 99, 999):
        null = rng.standard_normal(b)
        c = critical_value(null, 0.05)
        for obs in np.linspace(-3, 4, 301):
            assert (permutation_p_value(obs, null) <= 0.05) == (obs > c)
    assert critical_value(np.zeros(10), 0.05) == float("inf")


def test_relabellings_are_uniform_subsets_and_reproducible():
    idx = np.concatenate(list(Relabeller(6, 3, 600, seed=4).chunks(256)))
    assert idx.shape == (600, 3)
    # Detectors chunk differently; they must still see the same relabellings.
    for chunk in (1, 100, 600):
        again = np.concatenate(list(Relabeller(6, 3, 600, seed=4).chunks(chunk)))
        np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(again, axis=1))
    big = [np.concatenate(list(Relabeller(5000, 100, 20, seed=4).chunks(c))) for c in (3, 20)]
    np.testing.assert_array_equal(np.sort(big[0], axis=1), np.sort(big[1], axis=1))
    assert all(len(set(row)) == 3 for row in idx.tolist())
    counts = np.bincount(idx.ravel(), minlength=9)
    assert stats.chisquare(counts).pvalue > 0.001


def test_holm_and_bh_match_their_textbook_values():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_weighted_step_down_is_holm_with_equal_weights_and_no_shared_null():
    p = [0.01, 0.04, 0.03, 0.2]
    np.testing.assert_allclose(weighted_step_down(p, [1, 1, 1, 1]), holm(p))
    # Weighted Bonferroni bound at the first step: p / w.
    adj = weighted_step_down([0.02, 0.5], [0.8, 0.2])
    assert adj[0] == pytest.approx(0.02 / 0.8)


def test_westfall_young_does_not_charge_for_copies():
    rng = np.random.default_rng(1)
    null = rng.standard_normal(999)
    one = westfall_young(np.array([2.1]), null[None, :])
    three = westfall_young(np.array([2.1, 2.1, 2.1]), np.stack([null, null, null]))
    assert one[0] == pytest.approx(permutation_p_value(2.1, null))
    np.testing.assert_allclose(three, one[0])
    # Independent statistics: close to Sidak, never below the raw p-value.
    indep = rng.standard_normal((3, 4999))
    adj = westfall_young(np.array([3.0, 0.0, -1.0]), indep)
    raw = permutation_p_value(3.0, indep[0])
    assert raw <= adj[0] <= 3 * raw + 1e-12


def test_joint_p_values_agree_with_the_single_statistic_formula():
    rng = np.random.default_rng(2)
    null = rng.standard_normal((2, 199))
    p_obs, p_null = joint_p_values(np.array([1.5, -0.3]), null)
    assert p_obs[0] == pytest.approx(permutation_p_value(1.5, null[0]))
    assert p_obs[1] == pytest.approx(permutation_p_value(-0.3, null[1]))
    assert p_null.shape == (2, 199)
    assert p_null.min() >= 1 / 200 and p_null.max() <= 1.0


def _null_windows(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two windows from one mixture of four topics in 16 dimensions."""
    centres = topic_centres(4, 16, seed=seed)
    rng = np.random.default_rng(seed)
    w = np.array([0.4, 0.3, 0.2, 0.1])
    return (
        topic_mixture(centres, w, 60, seed=rng, dtype=np.float64)[0],
        topic_mixture(centres, w, 40, seed=rng, dtype=np.float64)[0],
    )


def test_false_alarm_rate_of_the_suite_and_its_members_stays_at_alpha():
    """200 no-drift windows: every alarm count must be within binomial bounds of alpha."""
    trials = 200
    suite = DriftSuite(n_permutations=199)
    alarms = 0
    member_alarms = dict.fromkeys(["clusters", "mmd", "centroid_euclidean", "classifier"], 0)
    for seed in range(trials):
        baseline, current = _null_windows(seed)
        result = suite.fit(baseline).test(current)
        alarms += result.status == "ALERT"
        for name, member in result.details["members"].items():
            member_alarms[name] += member["p_value"] <= 0.05
    upper = stats.binom.ppf(0.999, trials, 0.05)
    assert alarms <= upper
    for name, count in member_alarms.items():
        assert count <= upper, name
    # Not absurdly conservative either: each member alone does raise some alarms.
    assert all(count >= 1 for count in member_alarms.values())


@pytest.mark.parametrize(
    "method", ["centroid_cosine", "centroid_euclidean", "mmd", "clusters", "classifier"]
)
def test_member_p_values_are_roughly_uniform_without_drift(method):
    det = get_detector(method, n_permutations=99)
    p = []
    for seed in range(60):
        baseline, current = _null_windows(1000 + seed)
        p.append(det.fit(baseline).test(current).p_value)
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_tiny_but_significant_shift_on_huge_windows_does_not_alarm():
    # One topic gains 1.5 points of traffic: significant on 20,000 rows a side, not material.
    centres = topic_centres(10, 32, seed=3)
    rng = np.random.default_rng(3)
    old = np.full(10, 0.1)
    new = np.r_[0.115, np.full(9, 0.885 / 9)]
    baseline, _ = topic_mixture(centres, old, 20_000, seed=rng)
    current, _ = topic_mixture(centres, new, 20_000, seed=rng)
    result = DriftSuite(n_permutations=199).fit(baseline).test(current)
    assert "clusters" in result.details["significant"]
    assert result.details["firing"] == []
    assert "clusters" in result.details["below_effect_floor"]
    assert result.status == "OK"
    # Without the floors the same windows alarm.
    loose = DriftSuite(
        n_permutations=199,
        min_effect={"clusters": 0, "mmd": 0, "centroid_euclidean": 0, "classifier": 0},
    )
    assert loose.fit(baseline).test(current).status == "ALERT"


def _large_null_windows(seed: int) -> tuple[np.ndarray, np.ndarray]:
    centres = topic_centres(6, 24, seed=seed)
    rng = np.random.default_rng(seed)
    w = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    return (
        topic_mixture(centres, w, 900, seed=rng)[0],
        topic_mixture(centres, w, 300, seed=rng)[0],
    )


SUBSAMPLED = {
    m: {"max_null_n": 400} for m in ("clusters", "mmd", "centroid_euclidean", "classifier")
}


def test_members_share_one_subsampled_null_on_large_windows():
    baseline, current = _large_null_windows(0)
    result = DriftSuite(n_permutations=99, member_params=SUBSAMPLED).fit(baseline).test(current)
    members = result.details["members"]
    # The MMD of 1,200 rows is exact and keeps its own null; the other three share one drawn
    # from the same 400 rows, so the suite judges them by their joint null.
    assert members["mmd"]["details"]["null_sample"] is None
    for name in ("clusters", "centroid_euclidean", "classifier"):
        assert members[name]["details"]["null_sample"] == 400, name
    assert result.details["joint_null_members"] == ["clusters", "centroid_euclidean", "classifier"]


def test_false_alarm_rate_with_subsampled_nulls_stays_at_alpha():
    """A null drawn from 400 of 1,200 rows and rescaled keeps the members and the suite valid."""
    trials = 200
    suite = DriftSuite(n_permutations=199, member_params=SUBSAMPLED)
    alarms = 0
    p_values: dict[str, list[float]] = {"clusters": [], "centroid_euclidean": [], "classifier": []}
    for seed in range(trials):
        baseline, current = _large_null_windows(500 + seed)
        result = suite.fit(baseline).test(current)
        alarms += result.status == "ALERT"
        for name in p_values:
            p_values[name].append(result.details["members"][name]["p_value"])
    upper = stats.binom.ppf(0.999, trials, 0.05)
    assert alarms <= upper
    for name, p in p_values.items():
        assert np.count_nonzero(np.array(p) <= 0.05) <= upper, name
        assert stats.kstest(p, "uniform").pvalue > 0.001, name


def test_subsampled_classifier_still_sees_a_shift():
    centres = topic_centres(6, 24, seed=9)
    rng = np.random.default_rng(9)
    baseline = topic_mixture(centres, np.full(6, 1 / 6), 900, seed=rng)[0]
    current = topic_mixture(centres, np.r_[0.4, np.full(5, 0.12)], 300, seed=rng)[0]
    det = get_detector("classifier", n_permutations=199, max_null_n=400)
    result = det.fit(baseline).test(current)
    assert result.details["null_sample"] == 400
    assert result.p_value <= 0.01
