"""The shared statistics against published values and the libraries they are built on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from modelwarden.stats.bootstrap import bootstrap_mean
from modelwarden.stats.multitest import benjamini_hochberg, holm
from modelwarden.stats.paired import cohens_dz, mcnemar
from modelwarden.stats.proportions import newcombe, newcombe_upper, wilson

# Benjamini & Hochberg (1995), section 4: fifteen p-values from a clinical trial.
BH_1995 = [
    0.0001,
    0.0004,
    0.0019,
    0.0095,
    0.0201,
    0.0278,
    0.0298,
    0.0344,
    0.0459,
    0.3240,
    0.4262,
    0.5719,
    0.6528,
    0.7590,
    1.0000,
]


def test_benjamini_hochberg_paper_example() -> None:
    # The paper's procedure rejects the four smallest at q = 0.05; Bonferroni-type ones three.
    assert (benjamini_hochberg(BH_1995) <= 0.05).sum() == 4
    assert (holm(BH_1995) <= 0.05).sum() == 3
    np.testing.assert_allclose(holm(BH_1995)[:4], [0.0015, 0.0056, 0.0247, 0.114], rtol=1e-12)
    # The fourth: min over j >= 4 of p_j * 15 / j is 0.0095 * 15 / 4.
    assert benjamini_hochberg(BH_1995)[3] == pytest.approx(0.035625, abs=1e-15)


def test_holm_and_bh_on_a_hand_computed_vector_in_any_order() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02], rtol=1e-12)


def test_nan_p_values_are_not_tests() -> None:
    for adjust in (holm, benjamini_hochberg):
        out = adjust([0.01, float("nan"), 0.04])
        assert math.isnan(out[1])
        np.testing.assert_allclose(out[[0, 2]], adjust([0.01, 0.04]))
        assert adjust([]).size == 0
        assert np.isnan(adjust([float("nan")])).all()


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_equal_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=40) ** 3
    p[::7] = p[1]  # ties
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=0, atol=1e-15
    )


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
        # method 3 (score interval without continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n, 0.95)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_formula_edges_and_confidence() -> None:
    z = float(stats.norm.ppf(0.95))
    lo, hi = wilson(7, 40, 0.90)
    p = 7 / 40
    centre = (p + z * z / 80) / (1 + z * z / 40)
    half = z * math.sqrt(p * (1 - p) / 40 + z * z / 6400) / (1 + z * z / 40)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-15)
    assert wilson(10, 10)[1] == pytest.approx(1.0, abs=1e-15)
    assert all(math.isnan(x) for x in wilson(0, 0))


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions", Table II, method 10 (hybrid score), 95%.
        ((56, 70, 48, 80), 0.0524, 0.3339),
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((5, 56, 0, 29), -0.0381, 0.1926),
        ((0, 10, 0, 20), -0.1611, 0.2775),
        ((0, 10, 0, 10), -0.2775, 0.2775),
        ((10, 10, 0, 20), 0.6791, 1.0000),
        ((10, 10, 0, 10), 0.6075, 1.0000),
    ],
)
def test_newcombe_published_values(counts: tuple[int, int, int, int], low: float, high: float):
    lo, hi = newcombe(*counts, confidence=0.95)
    assert (round(lo, 4), round(hi, 4)) == (low, high)
    # A one-sided bound at 1 - alpha is the end of the two-sided interval at 1 - 2 * alpha.
    assert newcombe_upper(*counts, alpha=0.025) == pytest.approx(hi, abs=1e-12)


def test_newcombe_is_built_from_the_two_wilson_intervals() -> None:
    k1, n1, k0, n0 = 12, 50, 5, 60
    l1, u1 = wilson(k1, n1, 0.9)
    l0, u0 = wilson(k0, n0, 0.9)
    p1, p0 = k1 / n1, k0 / n0
    expected = (
        p1 - p0 - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
        p1 - p0 + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2),
    )
    assert newcombe(k1, n1, k0, n0, 0.9) == pytest.approx(expected, abs=1e-12)
    assert all(math.isnan(x) for x in newcombe(1, 0, 1, 5))


def test_mcnemar_exact_and_chi_square() -> None:
    # Exact: 2 * P(X <= 1) for X ~ Binomial(10, 1/2) = 2 * 11 / 1024.
    assert mcnemar(1, 9) == (22 / 1024, "exact")
    assert mcnemar(9, 1) == (22 / 1024, "exact")
    assert mcnemar(0, 0) == (1.0, "exact")
    assert mcnemar(5, 5) == (1.0, "exact")  # 2 * P(X <= 5) > 1 is capped
    assert mcnemar(0, 25)[1] == "exact" and mcnemar(0, 26)[1] == "chi2-cc"
    # Agresti, "An Introduction to Categorical Data Analysis": 86 and 150 discordant pairs.
    # With continuity correction chi2 = (|86 - 150| - 1)**2 / 236 = 16.818.
    p, method = mcnemar(86, 150)
    assert method == "chi2-cc"
    assert p == pytest.approx(float(stats.chi2.sf(63**2 / 236, 1)), rel=1e-12)
    assert p == pytest.approx(4.1146e-05, rel=1e-4)
    assert mcnemar(3, 8, exact_max=5)[1] == "chi2-cc"


def test_cohens_dz() -> None:
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert cohens_dz(np.array([-1.0, -1.0])) == -math.inf
    assert cohens_dz(np.array([0.0, 0.0])) == 0.0
    assert math.isnan(cohens_dz(np.array([1.0])))


def test_bootstrap_mean_is_the_percentile_bootstrap() -> None:
    values = np.random.default_rng(3).normal(size=57)
    lo, hi = bootstrap_mean(values, n_boot=2000, confidence=0.9, rng=np.random.default_rng(9))
    # The same draws by hand: resample indices, take means, read the 5% and 95% quantiles.
    idx = np.random.default_rng(9).integers(0, values.size, size=(2000, values.size))
    means = values[idx].mean(axis=1)
    expected = np.quantile(means, [0.05, 0.95])
    assert (lo, hi) == pytest.approx(tuple(expected), abs=1e-12)
    assert lo < values.mean() < hi
    assert bootstrap_mean(
        np.array([2.5]), n_boot=100, confidence=0.95, rng=np.random.default_rng(0)
    ) == (
        2.5,
        2.5,
    )
    empty = bootstrap_mean(np.array([]), n_boot=100, confidence=0.95, rng=np.random.default_rng(0))
    assert all(math.isnan(x) for x in empty)
