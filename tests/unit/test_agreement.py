"""Reviewer agreement: Krippendorff's published example, scikit-learn's kappa, consensus."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from modelwarden.errors import InputError
from modelwarden.stats.agreement import (
    cohen_kappa,
    coincidence_matrix,
    krippendorff_alpha,
    reviewer_vs_consensus,
)

NAN = float("nan")
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the example with 4 coders,
# 12 units and missing values; given there as coders x units, transposed to units x coders.
CODERS_BY_UNIT = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)
UNITS = CODERS_BY_UNIT.T


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff_published_example(level: str, expected: float) -> None:
    assert round(krippendorff_alpha(UNITS, level), 3) == expected


def test_coincidence_matrix_of_the_published_example() -> None:
    o, values = coincidence_matrix(UNITS)
    assert values.tolist() == [1, 2, 3, 4, 5]
    # The paper's margins: n_c = 9, 13, 10, 5, 3 and n = 40 pairable values.
    assert o.sum(axis=1).tolist() == pytest.approx([9, 13, 10, 5, 3])
    assert o.sum() == pytest.approx(40)
    assert np.allclose(o, o.T)
    assert o[0, 0] == pytest.approx(7.0)
    assert o[0, 1] == pytest.approx(4 / 3)


def test_krippendorff_edge_cases() -> None:
    # None works as missing, like NaN.
    with_none = [[None if math.isnan(v) else v for v in row] for row in UNITS.tolist()]
    assert krippendorff_alpha(with_none, "nominal") == krippendorff_alpha(UNITS, "nominal")
    assert krippendorff_alpha([[1, 1], [2, 2], [3, 3]], "interval") == 1.0
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]], "nominal"))  # no variation
    assert math.isnan(krippendorff_alpha([[1, NAN], [2, NAN]], "nominal"))  # nothing pairable
    # Values nobody used change nothing.
    assert krippendorff_alpha(UNITS, "ordinal", values=[1, 2, 3, 4, 5, 6, 7]) == krippendorff_alpha(
        UNITS, "ordinal"
    )
    with pytest.raises(InputError, match="not one of the given values"):
        krippendorff_alpha(UNITS, "ordinal", values=[1, 2, 3])
    with pytest.raises(InputError, match="unknown level"):
        krippendorff_alpha(UNITS, "cardinal")
    with pytest.raises(InputError, match="units x raters"):
        krippendorff_alpha([1, 2, 3])


def test_krippendorff_systematic_disagreement_is_negative() -> None:
    data = [[1, 2], [2, 1], [1, 2], [2, 1]]
    assert krippendorff_alpha(data, "nominal") < 0


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_equals_scikit_learn(weights: str | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 200)
    b = np.clip(a + rng.integers(-2, 3, 200), 1, 5)
    noisy = rng.random(200) < 0.2
    b[noisy] = rng.integers(1, 6, int(noisy.sum()))
    ours = cohen_kappa(a.tolist(), b.tolist(), weights=weights)  # type: ignore[arg-type]
    assert ours == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)


def test_cohen_kappa_labels_and_strings() -> None:
    a = ["ok", "bad", "ok", "ok", "meh", "bad"]
    b = ["ok", "bad", "meh", "ok", "meh", "ok"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    labels = ["bad", "meh", "ok", "great"]
    assert cohen_kappa(a, b, weights="linear", labels=labels) == pytest.approx(
        cohen_kappa_score(a, b, weights="linear", labels=labels), abs=1e-12
    )
    # Missing ratings leave the item out.
    assert cohen_kappa([1, 2, None, 3], [1, 2, 3, NAN]) == 1.0
    with pytest.raises(InputError, match="rated 2 and 3 items"):
        cohen_kappa([1, 2], [1, 2, 3])
    with pytest.raises(InputError, match="unknown weights"):
        cohen_kappa([1], [1], weights="cubic")  # type: ignore[arg-type]


def test_reviewer_vs_consensus() -> None:
    # r3 rates one step above the others on every unit.
    ratings = [[1, 1, 2], [2, 2, 3], [3, 3, 4], [4, 4, 5], [2, 2, 3], [3, 3, NAN]]
    out = {r.reviewer: r for r in reviewer_vs_consensus(ratings, ["ann", "bo", "cy"])}
    cy = out["cy"]
    assert cy.n == 5 and cy.agreement == 0.0
    assert cy.bias == 1.0 and cy.mean_abs_deviation == 1.0
    # For ann the consensus of bo and cy is their median, half a step up.
    ann = out["ann"]
    assert ann.n == 6
    assert ann.agreement == pytest.approx(1 / 6)  # only where cy is missing
    assert ann.bias == pytest.approx(-2.5 / 6)
    assert ann.mean_abs_deviation == pytest.approx(2.5 / 6)
    assert ann.alpha == pytest.approx(
        krippendorff_alpha([[1, 1.5], [2, 2.5], [3, 3.5], [4, 4.5], [2, 2.5], [3, 3]], "ordinal")
    )
    assert ann.alpha > cy.alpha


def test_reviewer_vs_consensus_nominal_ties_have_no_consensus() -> None:
    ratings = [[1, 1, 2], [1, 2, 3], [2, 2, 2]]
    out = reviewer_vs_consensus(ratings, level="nominal")
    assert [r.reviewer for r in out] == ["r1", "r2", "r3"]
    # r1: the others tie on units 1 and 2 ([1, 2], [2, 3]); only unit 3 counts, and agrees.
    assert (out[0].n, out[0].agreement) == (1, 1.0)
    # r3: the others agree on unit 1 (1, r3 says 2) and unit 3 (2, r3 agrees).
    assert (out[2].n, out[2].agreement) == (2, 0.5)
    assert math.isnan(out[2].bias)
    assert out[2].to_dict()["bias"] is None
    with pytest.raises(InputError, match="2 reviewer names for 3 columns"):
        reviewer_vs_consensus(ratings, ["a", "b"])
