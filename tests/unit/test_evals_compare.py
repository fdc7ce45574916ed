"""Run comparison: statistics, Holm, McNemar, gates and their renderings."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy import stats

from modelwarden.errors import InputError
from modelwarden.evals.compare import (
    FloorCheck,
    GateSpec,
    HardGate,
    NonInferiorityCheck,
    cohens_dz,
    compare_runs,
    holm,
    items_needed,
    mcnemar,
    noninferiority_power,
)
from modelwarden.evals.metrics import ItemScores

PLANTS = ("Plant_A", "Plant_B", "Plant_C", "Plant_D")


def _system(
    quality: np.ndarray,
    rng: np.random.Generator,
    *,
    shift: float = 0.0,
    noise: float = 0.05,
    unsafe: frozenset[int] = frozenset(),
) -> dict[str, ItemScores]:
    """A synthetic system: each item's scores are its difficulty plus the system's noise."""
    out = {}
    for i, q in enumerate(quality):
        rouge = float(np.clip(q + shift + rng.normal(0, noise), 0, 1))
        chrf = float(np.clip(100 * (q + shift) + rng.normal(0, 100 * noise), 0, 100))
        facts = float(rouge > 0.35)
        out[f"item-{i:04d}"] = ItemScores(
            item_id=f"item-{i:04d}",
            metrics={
                "rougeL": rouge,
                "chrf": chrf,
                "must_include": facts,
                "latency_ms": float(200 + 50 * rng.random()),
            },
            violations={"safety": i in unsafe, "forbidden": False},
            tags={"plant": PLANTS[i % 4]},
        )
    return out


@pytest.fixture(scope="module")
def difficulty() -> np.ndarray:
    return np.random.default_rng(42).uniform(0.2, 0.8, 400)


GATE = GateSpec(
    name="v1.2-release",
    floors=[FloorCheck(metric="rougeL", min=0.40)],
    non_inferiority=[
        NonInferiorityCheck(metric="rougeL", margin=0.02),
        NonInferiorityCheck(metric="chrf", margin=3.0, per_slice="plant"),
        NonInferiorityCheck(metric="latency_ms", margin=25.0),
    ],
)


def test_planted_regression_is_found_and_fails_the_gate(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(1))
    b = _system(difficulty, np.random.default_rng(2), shift=-0.05)
    cmp = compare_runs(
        a,
        b,
        ["rougeL", "chrf"],
        slices=["plant"],
        gate=GATE,
        seed=0,
        n_boot=1000,
        labels=("v1.1", "v1.2"),
    )
    assert not cmp.passed
    rouge = cmp.metric("rougeL")
    diffs = np.array([b[k].metrics["rougeL"] - a[k].metrics["rougeL"] for k in sorted(a)])
    assert rouge.n == 400
    assert rouge.delta == pytest.approx(diffs.mean(), abs=1e-15)
    assert rouge.effect_size == pytest.approx(diffs.mean() / diffs.std(ddof=1), abs=1e-12)
    assert rouge.ci_low < rouge.delta < rouge.ci_high < -0.02
    assert rouge.p_value == pytest.approx(1 / 10_001)  # no sign pattern is as extreme
    assert rouge.p_adjusted < 0.01
    failed = {c.name for c in cmp.checks if not c.passed}
    assert "non-inferiority rougeL margin 0.02" in failed
    assert "non-inferiority chrf margin 3" in failed
    assert "hard safety <= 0" not in failed
    assert "non-inferiority latency_ms margin 25" not in failed
    # Every plant saw the regression.
    assert {f"non-inferiority chrf margin 3 [plant={p}]" for p in PLANTS} <= failed
    # The outcome "all facts present" regressed on enough items for McNemar.
    facts = cmp.outcome("pass")
    assert facts.regressions > facts.improvements
    assert facts.p_value < 0.05


def test_a_a_comparison_passes(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(3))
    b = _system(difficulty, np.random.default_rng(4))
    cmp = compare_runs(a, b, ["rougeL", "chrf"], slices=["plant"], gate=GATE, seed=0)
    assert cmp.passed, cmp.to_markdown()
    rouge = cmp.metric("rougeL")
    assert rouge.ci_low < 0 < rouge.ci_high
    assert all(m.p_adjusted > 0.05 for m in cmp.metrics)
    assert cmp.warnings == ()


def test_results_are_reproducible_and_depend_on_the_seed(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(5))
    b = _system(difficulty, np.random.default_rng(6), shift=-0.01)
    one = compare_runs(a, b, ["rougeL"], seed=7, n_boot=500, n_perm=500)
    two = compare_runs(a, b, ["rougeL"], seed=7, n_boot=500, n_perm=500)
    other = compare_runs(a, b, ["rougeL"], seed=8, n_boot=500, n_perm=500)
    assert one.to_dict() == two.to_dict()
    assert one.metric("rougeL").ci_low != other.metric("rougeL").ci_low
    assert one.metric("rougeL").delta == other.metric("rougeL").delta


def test_bootstrap_interval_matches_a_direct_resampling() -> None:
    rng = np.random.default_rng(0)
    xa = rng.normal(0.5, 0.1, 50)
    xb = xa + rng.normal(0.01, 0.05, 50)
    a = {str(i): ItemScores(str(i), {"m": float(xa[i])}, {"safety": False}) for i in range(50)}
    b = {str(i): ItemScores(str(i), {"m": float(xb[i])}, {"safety": False}) for i in range(50)}
    gate = GateSpec(hard=[])
    cmp = compare_runs(a, b, ["m"], gate=gate, seed=11, n_boot=2000)
    # The same draws, resampled the plain way: the index matrix from the stream of (seed, n).
    ids = sorted(a, key=str)
    d = np.array([xb[int(i)] - xa[int(i)] for i in ids])
    idx = np.random.default_rng([11, 50, 0]).integers(0, 50, size=(2000, 50), dtype=np.int64)
    boot = d[idx].mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    row = cmp.metric("m")
    assert row.ci_low == pytest.approx(lo, abs=1e-12)
    assert row.ci_high == pytest.approx(hi, abs=1e-12)


def test_draw_counts_beyond_the_cache_are_the_same_draws(
    difficulty: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelwarden.evals import compare

    a = _system(difficulty, np.random.default_rng(1))
    b = _system(difficulty, np.random.default_rng(2), shift=-0.01)
    cached = compare_runs(a, b, ["rougeL", "chrf"], slices=["plant"], n_boot=300, n_perm=300)
    monkeypatch.setattr(compare, "CACHE_LIMIT", 0)
    # Blocks of 25 rows of 400 items: numpy draws indices this small from a stream that blocks
    # cut without changing it (a rejected draw has a chance of about 1e-7).
    monkeypatch.setattr(compare, "BLOCK_ENTRIES", 10_000)
    blocked = compare_runs(a, b, ["rougeL", "chrf"], slices=["plant"], n_boot=300, n_perm=300)
    for x, y in zip(cached.metrics, blocked.metrics, strict=True):
        assert (x.ci_low, x.ci_high) == pytest.approx((y.ci_low, y.ci_high), abs=1e-12)
        assert x.p_value == y.p_value


def test_exact_sign_flip_for_small_samples() -> None:
    a = {str(i): ItemScores(str(i), {"m": 0.0}) for i in range(5)}
    b = {str(i): ItemScores(str(i), {"m": float(i + 1)}) for i in range(5)}
    cmp = compare_runs(a, b, ["m"], gate=GateSpec(hard=[]), n_boot=200)
    # Only "all +" and "all -" reach |sum| = 15 among 2**5 sign patterns.
    assert cmp.metric("m").p_value == 2 / 32
    assert any("only 5 paired items" in w for w in cmp.warnings)
    same = compare_runs(a, a, ["m"], gate=GateSpec(hard=[]), n_boot=200)
    assert same.metric("m").p_value == 1.0
    assert same.metric("m").effect_size == 0.0


def test_holm_matches_a_hand_computation() -> None:
    # Sorted: 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> raised to 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is not a test, so m = 3: 0.01*3 = 0.03; 0.2*2 = 0.4; 0.5*1 = 0.5.
    out = holm([0.5, float("nan"), 0.2, 0.01])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1])
    assert out[2] == pytest.approx(0.4) and out[3] == pytest.approx(0.03)
    # Capped at 1: 0.6*2 = 1.2 -> 1; 0.7 is raised to the running maximum, 1.
    assert holm([0.7, 0.6]).tolist() == [1.0, 1.0]
    assert holm([]).size == 0


def test_comparison_applies_holm_over_metrics_slices_and_outcomes(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(9))
    b = _system(difficulty, np.random.default_rng(10), shift=-0.01)
    cmp = compare_runs(a, b, ["rougeL", "chrf"], slices=["plant"], gate=GateSpec(hard=[]))
    raw = [m.p_value for m in cmp.metrics] + [o.p_value for o in cmp.outcomes]
    adjusted = [m.p_adjusted for m in cmp.metrics] + [o.p_adjusted for o in cmp.outcomes]
    assert len(raw) == 2 * 5 + 3 * 5  # (overall + 4 plants) x (2 metrics + 3 outcomes)
    assert adjusted == pytest.approx(holm(raw).tolist())


def test_mcnemar_exact_and_chi_square() -> None:
    p, method = mcnemar(1, 9)
    assert method == "exact"
    assert p == pytest.approx(2 * (1 + 10) / 2**10)
    assert mcnemar(0, 0) == (1.0, "exact")
    assert mcnemar(5, 5)[0] == 1.0
    p, method = mcnemar(10, 30)
    assert method == "chi2-cc"
    assert p == pytest.approx(stats.chi2.sf((20 - 1) ** 2 / 40, 1))


def test_hard_gate_counts_violations_in_b(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(1))
    b = _system(difficulty, np.random.default_rng(1), unsafe=frozenset({7}))
    cmp = compare_runs(a, b, ["rougeL"], gate=GateSpec())
    assert not cmp.passed
    check = next(c for c in cmp.checks if c.name == "hard safety <= 0")
    assert not check.passed and check.observed == 1.0
    assert "item-0007" in check.reason
    lenient = compare_runs(
        a, b, ["rougeL"], gate=GateSpec(hard=[HardGate(violation="safety", max_count=1)])
    )
    assert lenient.passed


def test_hard_gate_fails_when_the_violation_was_not_recorded() -> None:
    a = {"x": ItemScores("x", {"m": 1.0})}
    cmp = compare_runs(a, a, ["m"], gate=GateSpec(), n_boot=100, n_perm=100)
    assert not cmp.passed
    assert "cannot be judged" in cmp.checks[0].reason


def _runs_from(xa: np.ndarray, xb: np.ndarray) -> tuple[dict, dict]:
    a = {f"{i:03d}": ItemScores(f"{i:03d}", {"m": float(v)}) for i, v in enumerate(xa)}
    b = {f"{i:03d}": ItemScores(f"{i:03d}", {"m": float(v)}) for i, v in enumerate(xb)}
    return a, b


def test_floor_is_judged_on_the_lower_bound_not_the_mean() -> None:
    rng = np.random.default_rng(3)
    xb = 0.52 + rng.normal(0, 0.2, 60)
    xb += 0.52 - xb.mean()  # mean exactly 0.52, interval about +-0.05
    a, b = _runs_from(xb, xb)
    gate = GateSpec(floors=[FloorCheck(metric="m", min=0.50)], hard=[])
    cmp = compare_runs(a, b, ["m"], gate=gate)
    check = cmp.checks[0]
    assert cmp.metric("m").mean_b == pytest.approx(0.52)
    assert not check.passed
    assert check.observed < 0.50
    assert "lower bound" in check.reason
    ceiling = GateSpec(floors=[FloorCheck(metric="m", max=0.60)], hard=[])
    assert compare_runs(a, b, ["m"], gate=ceiling).passed


def test_non_inferiority_is_judged_on_the_interval_not_the_point_estimate() -> None:
    rng = np.random.default_rng(4)
    xa = rng.uniform(0.3, 0.7, 80)
    d = rng.normal(0, 0.05, 80)
    d += -0.005 - d.mean()  # point estimate -0.005, inside the margin of 0.01
    a, b = _runs_from(xa, xa + d)
    gate = GateSpec(non_inferiority=[NonInferiorityCheck(metric="m", margin=0.01)], hard=[])
    cmp = compare_runs(a, b, ["m"], gate=gate)
    row = cmp.metric("m")
    assert row.delta == pytest.approx(-0.005)
    assert row.ci_low < -0.01
    assert not cmp.passed
    # Power warning: 80 items cannot resolve a 0.01 margin with this spread.
    assert any(w.startswith("m: 80 paired items") for w in cmp.warnings)


def test_smaller_is_better_metrics_use_the_upper_bound(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(1))
    b = {
        k: ItemScores(
            k, {**v.metrics, "latency_ms": v.metrics["latency_ms"] + 40}, v.violations, v.tags
        )
        for k, v in a.items()
    }
    gate = GateSpec(non_inferiority=[NonInferiorityCheck(metric="latency_ms", margin=25)])
    cmp = compare_runs(a, b, ["latency_ms"], gate=gate)
    check = cmp.checks[0]
    assert not check.passed and check.observed == pytest.approx(40)
    assert "upper bound" in check.reason


def test_items_in_one_run_only_are_reported(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(1))
    b = dict(_system(difficulty, np.random.default_rng(2)))
    del b["item-0003"]
    b["extra"] = ItemScores("extra", {"rougeL": 0.5}, {"safety": False, "forbidden": False})
    cmp = compare_runs(a, b, ["rougeL"], gate=GateSpec(max_missing=0))
    assert cmp.only_a == ("item-0003",) and cmp.only_b == ("extra",)
    assert cmp.n_paired == 399
    assert any("only in A" in w for w in cmp.warnings)
    assert not cmp.passed
    assert next(c for c in cmp.checks if c.kind == "missing").observed == 1.0


def test_missing_metric_values_are_left_out_per_metric() -> None:
    a = {
        str(i): ItemScores(str(i), {"m": 1.0, "f": 1.0 if i % 2 else float("nan")})
        for i in range(30)
    }
    b = {
        str(i): ItemScores(str(i), {"m": 1.0, "f": 0.0 if i % 2 else float("nan")})
        for i in range(30)
    }
    cmp = compare_runs(a, b, ["m", "f"], gate=GateSpec(hard=[]), n_boot=200, n_perm=200)
    assert cmp.metric("m").n == 30 and cmp.metric("f").n == 15
    assert cmp.metric("f").delta == -1.0


def test_power_helpers() -> None:
    z = stats.norm.ppf(0.975)
    assert noninferiority_power(1.0, 100, 0.5, 0.95) == pytest.approx(stats.norm.cdf(0.5 * 10 - z))
    need = items_needed(1.0, 0.5, 0.95)
    assert need == math.ceil(((z + stats.norm.ppf(0.8)) * 1.0 / 0.5) ** 2) == 32
    assert noninferiority_power(1.0, need, 0.5, 0.95) >= 0.8
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert cohens_dz(np.array([1.0, 1.0])) == math.inf


def test_gate_spec_round_trips_through_yaml() -> None:
    text = GATE.to_yaml()
    assert GateSpec.from_yaml(text) == GATE
    assert "per_slice: plant" in text
    default = GateSpec.from_yaml("")
    assert [h.violation for h in default.hard] == ["safety", "forbidden"]
    assert all(h.max_count == 0 for h in default.hard)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("floors:\n  - metric: rougeL\n", "floors.0"),
        ("floors:\n  - metric: rougeL\n    min: 0.3\n    max: 0.9\n", "floors.0"),
        ("non_inferiority:\n  - metric: chrf\n    margin: -1\n", "non_inferiority.0.margin"),
        ("confidence: 1.5\n", "confidence"),
        ("thresholds: {}\n", "thresholds"),
        ("- a list\n", None),
        ("floors: [\n", None),
    ],
)
def test_bad_gate_specs(text: str, field: str | None) -> None:
    with pytest.raises(InputError) as err:
        GateSpec.from_yaml(text, source="gate.yaml")
    assert err.value.message.startswith("gate.yaml: ")
    assert err.value.field == field


def test_renderers(difficulty: np.ndarray) -> None:
    a = _system(difficulty, np.random.default_rng(1))
    b = _system(difficulty, np.random.default_rng(2), shift=-0.05, unsafe=frozenset({3}))
    cmp = compare_runs(
        a, b, ["rougeL", "chrf"], slices=["plant"], gate=GATE, labels=("v1.1", "v1.2")
    )
    data = cmp.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["passed"] is False
    assert data["labels"] == {"a": "v1.1", "b": "v1.2"}
    assert len(data["checks"]) == len(cmp.checks)

    md = cmp.to_markdown()
    assert md.startswith("## v1.2 vs v1.1: gate v1.2-release FAILED")
    assert "| non-inferiority rougeL margin 0.02 | **FAIL** |" in md
    assert "| rougeL | plant=Plant_A | 100 |" in md

    root = ET.fromstring(cmp.to_junit_xml().split("\n", 1)[1])
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(cmp.checks)
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == sum(not c.passed for c in cmp.checks)
    assert root.get("failures") == str(len(failures))
    assert {c.get("name") for c in failures} >= {
        "hard safety <= 0",
        "non-inferiority rougeL margin 0.02",
    }


def test_argument_checks() -> None:
    a = {"x": ItemScores("x", {"m": 1.0})}
    with pytest.raises(InputError):
        compare_runs(a, a, ["m"], n_boot=10)
    with pytest.raises(InputError):
        compare_runs(a, a, ["m"], n_perm=10)
