"""The canary judge: canary against stable over the same window and scope, gate by gate.

For each gate the judge estimates how much *worse* the canary is (in the gate's unit; negative
means better), a one-sided upper confidence bound of that worsening at ``1 - alpha``, and a
one-sided p-value for "the canary is worse":

- rates (``safety_rate``, ``error_rate``): the difference of proportions in percentage points,
  Newcombe's hybrid score interval (from Wilson intervals; sound at small counts and at 0 %)
  and Fisher's exact test;
- ``feedback_avg``: the difference of means in points, Welch's t interval and test;
- ``latency_ms``: the Hodges-Lehmann estimate of the shift of log latency, as a percent change,
  with the distribution-free interval obtained by inverting the Mann-Whitney U test, and the
  one-sided Mann-Whitney test itself.

Each gate is tested at ``alpha / len(gates)`` (Bonferroni), so the chance that *some* gate fails
a canary that is as good as the stable version stays under ``alpha`` per look.

Verdict per gate:

- ``NoData``: fewer than ``min_samples`` observations on either side;
- ``Fail``: significantly worse (p below the gate's alpha) *and* the estimated worsening reaches
  the gate's effect floor — a real but negligible difference does not fail;
- ``Pass``, by the plan's ``pass_rule``:

  - ``no_harm`` (default): not significantly worse beyond the floor, and the estimated worsening
    is under the margin. This is the seed's criterion ("KPIs remain stable"): at a plant's
    traffic no interval is narrow enough to *prove* a 1-point margin, so requiring proof would
    hold a 5 % canary for months;
  - ``non_inferiority``: the upper confidence bound of the worsening is within the margin;

- ``Inconclusive``: neither — the canary looks worse by the margin or more but not yet
  significantly so, or (non-inferiority) the interval is still too wide.

Overall: ``Fail`` if any gate fails; else ``NoData`` if any gate lacks data; else ``Pass`` if all
pass; else ``Inconclusive``. NoData and Inconclusive extend the hold; only Fail rolls back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats

from modelwarden.policy.engine import Observations, _us
from modelwarden.rollout.plan import Gate
from modelwarden.stats.proportions import newcombe_upper

PASS, FAIL, INCONCLUSIVE, NO_DATA = "Pass", "Fail", "Inconclusive", "NoData"
# Hodges-Lehmann uses every pairwise difference; beyond this many per side a fixed-seed sample
# keeps it to a million pairs, far below where the estimate moves.
HL_MAX_PER_SIDE = 1000


@dataclass
class Sample:
    """One version's requests in the judged window and scope."""

    latency: np.ndarray
    safety: np.ndarray
    error: np.ndarray
    score: np.ndarray  # rated requests only

    @property
    def n(self) -> int:
        return len(self.latency)

    @classmethod
    def of(
        cls,
        obs: Observations,
        version: str,
        since: datetime,
        until: datetime,
        plants: Sequence[str] = (),
    ) -> Sample:
        hi = _us(until)
        sl = obs.window(_us(since), hi)
        m = obs.is_version(version)[sl]
        if plants:
            m &= np.isin(obs.plant[sl], list(plants))
        score = obs.score[sl][m]
        known = ~np.isnan(score)
        if obs.score_at is not None:
            known &= obs.score_at[sl][m] <= hi
        return cls(
            latency=obs.latency[sl][m].astype(float),
            safety=obs.safety[sl][m].astype(bool),
            error=obs.error[sl][m].astype(bool),
            score=score[known].astype(float),
        )


@dataclass
class GateResult:
    metric: str
    comparator: str
    margin: float
    floor: float
    verdict: str
    n_canary: int
    n_stable: int
    canary_value: float | None = None
    stable_value: float | None = None
    worsening: float | None = None
    upper: float | None = None
    p_value: float | None = None
    alpha: float = 0.05
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    verdict: str
    gates: list[GateResult] = field(default_factory=list)
    alpha: float = 0.05
    n_canary: int = 0
    n_stable: int = 0

    def failing(self) -> GateResult | None:
        return next((g for g in self.gates if g.verdict == FAIL), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "alpha": self.alpha,
            "n_canary": self.n_canary,
            "n_stable": self.n_stable,
            "gates": [g.to_dict() for g in self.gates],
        }


# ---- tests -----------------------------------------------------------------------------------------
def _rate(gate: Gate, c: np.ndarray, s: np.ndarray, alpha: float, rule: str) -> GateResult:
    k1, n1, k0, n0 = int(c.sum()), len(c), int(s.sum()), len(s)
    p1, p0 = k1 / n1, k0 / n0
    worse = (p1 - p0) * 100
    upper = newcombe_upper(k1, n1, k0, n0, alpha) * 100
    p = float(stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="greater")[1])
    return _result(
        gate,
        n1,
        n0,
        p1,
        p0,
        worse,
        upper,
        p,
        alpha,
        f"{p1:.2%} vs {p0:.2%} ({k1}/{n1} vs {k0}/{n0})",
        rule,
    )


def _mean(gate: Gate, c: np.ndarray, s: np.ndarray, alpha: float, rule: str) -> GateResult:
    n1, n0 = len(c), len(s)
    m1, m0 = float(c.mean()), float(s.mean())
    worse = m0 - m1  # lower feedback is worse
    v1 = float(c.var(ddof=1)) if n1 > 1 else 0.0
    v0 = float(s.var(ddof=1)) if n0 > 1 else 0.0
    se = math.sqrt(v1 / n1 + v0 / n0)
    if se == 0:
        upper, p = worse, (0.0 if worse > 0 else 1.0)
    else:
        num = (v1 / n1 + v0 / n0) ** 2
        den = ((v1 / n1) ** 2 / (n1 - 1) if n1 > 1 else 0) + (
            (v0 / n0) ** 2 / (n0 - 1) if n0 > 1 else 0
        )
        df = num / den if den > 0 else float(n1 + n0 - 2)
        upper = worse + float(stats.t.ppf(1 - alpha, df)) * se
        p = float(stats.t.sf(worse / se, df))
    return _result(
        gate, n1, n0, m1, m0, worse, upper, p, alpha, f"mean {m1:.3f} vs {m0:.3f} points", rule
    )


def hodges_lehmann(c: np.ndarray, s: np.ndarray, alpha: float) -> tuple[float, float]:
    """Shift of c over s (estimate and one-sided upper bound at 1 - alpha)."""
    rng = np.random.default_rng(0)
    if len(c) > HL_MAX_PER_SIDE:
        c = rng.choice(c, HL_MAX_PER_SIDE, replace=False)
    if len(s) > HL_MAX_PER_SIDE:
        s = rng.choice(s, HL_MAX_PER_SIDE, replace=False)
    d = np.sort((c[:, None] - s[None, :]).ravel())
    n1, n0, m = len(c), len(s), len(d)
    z = float(stats.norm.ppf(1 - alpha))
    k = math.floor(m / 2 - z * math.sqrt(n1 * n0 * (n1 + n0 + 1) / 12))
    k = min(max(k, 0), m - 1)
    return float(np.median(d)), float(d[m - 1 - k])


def _latency(gate: Gate, c: np.ndarray, s: np.ndarray, alpha: float, rule: str) -> GateResult:
    lc, ls = np.log(np.maximum(c, 1e-3)), np.log(np.maximum(s, 1e-3))
    shift, upper_shift = hodges_lehmann(lc, ls, alpha)
    worse, upper = (math.exp(shift) - 1) * 100, (math.exp(upper_shift) - 1) * 100
    p = float(stats.mannwhitneyu(c, s, alternative="greater").pvalue)
    return _result(
        gate,
        len(c),
        len(s),
        float(np.median(c)),
        float(np.median(s)),
        worse,
        upper,
        p,
        alpha,
        f"median {np.median(c):.0f} vs {np.median(s):.0f} ms",
        rule,
    )


def _result(
    gate: Gate,
    n1: int,
    n0: int,
    v1: float,
    v0: float,
    worse: float,
    upper: float,
    p: float,
    alpha: float,
    what: str,
    pass_rule: str,
) -> GateResult:
    unit = {"increase_pp": " pp", "decrease": " points", "increase_pct": " %"}[gate.comparator]
    if p < alpha and worse >= gate.floor:
        verdict = FAIL
        why = f"worse by {worse:.3g}{unit} (p={p:.3g} < {alpha:.3g}, floor {gate.floor:g}{unit})"
    elif pass_rule == "non_inferiority" and upper <= gate.margin:
        verdict = PASS
        why = f"at most {upper:.3g}{unit} worse at {1 - alpha:.1%} (margin {gate.margin:g}{unit})"
    elif pass_rule == "no_harm" and worse < gate.margin:
        verdict = PASS
        why = (
            f"{worse:+.3g}{unit} (margin {gate.margin:g}{unit}; p={p:.3g}; could be up to "
            f"{upper:.3g}{unit})"
        )
    else:
        verdict = INCONCLUSIVE
        why = (
            f"{worse:+.3g}{unit}, could be up to {upper:.3g}{unit} worse (margin "
            f"{gate.margin:g}{unit}); p={p:.3g}"
        )
    return GateResult(
        gate.metric,
        gate.comparator,
        gate.margin,
        gate.floor,
        verdict,
        n1,
        n0,
        v1,
        v0,
        worse,
        upper,
        p,
        alpha,
        f"{what}: {why}",
    )


def judge_gate(
    gate: Gate, canary: Sample, stable: Sample, alpha: float, pass_rule: str = "no_harm"
) -> GateResult:
    """One gate at significance ``alpha`` (already divided among the gates)."""
    c, s = {
        "safety_rate": (canary.safety, stable.safety),
        "error_rate": (canary.error, stable.error),
        "feedback_avg": (canary.score, stable.score),
        "latency_ms": (canary.latency, stable.latency),
    }[gate.metric]
    if len(c) < gate.min_samples or len(s) < gate.min_samples:
        return GateResult(
            gate.metric,
            gate.comparator,
            gate.margin,
            gate.floor,
            NO_DATA,
            len(c),
            len(s),
            alpha=alpha,
            message=f"{len(c)} canary and {len(s)} stable observations; "
            f"{gate.min_samples} needed on each side",
        )
    if gate.metric in ("safety_rate", "error_rate"):
        return _rate(gate, c, s, alpha, pass_rule)
    if gate.metric == "feedback_avg":
        return _mean(gate, c, s, alpha, pass_rule)
    return _latency(gate, c, s, alpha, pass_rule)


def judge(
    canary: Sample, stable: Sample, gates: Sequence[Gate], alpha: float, pass_rule: str = "no_harm"
) -> Verdict:
    """Every gate, each at ``alpha / len(gates)``, and the overall verdict."""
    per_gate = alpha / max(len(gates), 1)
    results = [judge_gate(g, canary, stable, per_gate, pass_rule) for g in gates]
    kinds = {r.verdict for r in results}
    if FAIL in kinds:
        overall = FAIL
    elif NO_DATA in kinds or not results:
        overall = NO_DATA
    elif kinds == {PASS}:
        overall = PASS
    else:
        overall = INCONCLUSIVE
    return Verdict(overall, results, alpha, canary.n, stable.n)


__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "NO_DATA",
    "PASS",
    "GateResult",
    "Sample",
    "Verdict",
    "hodges_lehmann",
    "judge",
    "judge_gate",
    "newcombe_upper",
]
