"""The default drift check: several calibrated detectors with different blind spots, one answer.

Each member gives a valid p-value. The suite adjusts them for multiplicity and alerts when some
member is significant after adjustment *and* its effect size clears that member's floor. The
floors only ever remove alerts, so the suite's false-alarm rate is at most that of the adjusted
test, which is at most ``alpha``.

The default adjustment (``correction="minp"``) is weighted Holm in which the members that are
calibrated on the same relabellings (all four default members: they share one seed, so they
see the same permuted windows) are judged by their *joint* permutation null, the
Westfall-Young minP. Those statistics all measure how far apart the same two windows are, so
they are strongly correlated; Holm or Bonferroni would charge for each as if it were independent
and give away power for nothing. A member with a null of its own (another seed, or a null drawn
from a subsample of very large windows) enters through Bonferroni's bound instead. The
family-wise error rate is controlled under any dependence;
``"holm"`` (weighted Holm without the joint null) and ``"bh"`` (Benjamini-Hochberg, which bounds
false alarms by Simes' inequality under the positive dependence these statistics have) are there
for comparison.

Why these members, and their weights:

- ``clusters`` (weight 0.55) sees a topic gaining share of the traffic, the usual way prompt
  traffic drifts, and one that moves the mean too little for the others to see early;
- ``mmd`` (0.15) sees any change of distribution at the scale of the bulk, including spread;
- ``centroid_euclidean`` (0.15) sees a mean shift in any direction, including along the mean,
  which the seed's cosine distance cannot;
- ``classifier`` (0.15) weighs directions by their noise, so it sees a shift along a quiet
  direction that the distances drown in the loud ones.

A gross shift is caught by several members with p-values far below any share of alpha; the
weights matter only for borderline shifts, and the borderline shift that matters most in prompt
traffic is a topic gaining share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from modelwarden.drift.base import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_N,
    DEFAULT_PERMUTATIONS,
    STATUS_INSUFFICIENT,
    Detector,
    DriftResult,
    check_positive_int,
)
from modelwarden.drift.calibration import (
    PermutationDetector,
    benjamini_hochberg,
    joint_p_values,
    weighted_step_down,
)
from modelwarden.drift.detectors import SUITE_MEMBERS, build_detector
from modelwarden.errors import InputError

DEFAULT_MEMBERS: tuple[str, ...] = ("clusters", "mmd", "centroid_euclidean", "classifier")

DEFAULT_WEIGHTS: dict[str, float] = {
    "clusters": 0.55,
    "mmd": 0.15,
    "centroid_euclidean": 0.15,
    "classifier": 0.15,
}

# Effect-size floors, in each member's own unit (``effect_name`` in its details). They sit below
# the smallest drift worth acting on (a topic gaining 2 points of traffic share, a centroid moving
# by 2% of the baseline's spread, a classifier AUC of 0.52) and above what windows of a million
# rows measure when nothing changed.
DEFAULT_MIN_EFFECT: dict[str, float] = {
    "clusters": 0.02,
    "mmd": 1e-4,
    "centroid_euclidean": 0.02,
    "centroid_cosine": 0.0,
    "classifier": 0.02,
}

Correction = Literal["minp", "holm", "bh"]
CORRECTION_NAMES: tuple[str, ...] = ("minp", "holm", "bh")


class DriftSuite(Detector):
    """Runs the member detectors on the same windows and combines them into one result."""

    method = "suite"

    def __init__(
        self,
        members: Sequence[str | Detector] | None = None,
        *,
        alpha: float = DEFAULT_ALPHA,
        min_n: int = DEFAULT_MIN_N,
        correction: Correction = "minp",
        weights: Mapping[str, float] | None = None,
        n_permutations: int = DEFAULT_PERMUTATIONS,
        seed: int = 0,
        min_effect: Mapping[str, float] | None = None,
        member_params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(alpha=alpha, min_n=min_n)
        if correction not in CORRECTION_NAMES:
            raise InputError(
                f"correction must be one of {list(CORRECTION_NAMES)}", field="correction"
            )
        self.correction: Correction = correction
        self.n_permutations = check_positive_int(n_permutations, "n_permutations")
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.min_effect = dict(DEFAULT_MIN_EFFECT)
        self.min_effect.update(_non_negative(min_effect or {}, "min_effect"))
        self.members = self._build_members(members or DEFAULT_MEMBERS, member_params or {})
        names = [m.method for m in self.members]
        if len(set(names)) != len(names):
            raise InputError("each member detector may appear only once", field="members")
        given = _non_negative(weights or {}, "weights")
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InputError(
                f"weights given for detectors not in the suite: {unknown}", field="weights"
            )
        self.weights = {n: given.get(n, DEFAULT_WEIGHTS.get(n, 0.2)) for n in names}
        if any(w <= 0 for w in self.weights.values()):
            raise InputError("every member needs a positive weight", field="weights")

    def _build_members(
        self, members: Sequence[str | Detector], member_params: Mapping[str, Mapping[str, Any]]
    ) -> list[Detector]:
        allowed = sorted(SUITE_MEMBERS)
        built: list[Detector] = []
        for m in members:
            if isinstance(m, Detector):
                built.append(m)
                continue
            if m not in allowed:
                raise InputError(
                    f"unknown suite member {m!r}; choose from {allowed}", field="members"
                )
            params: dict[str, Any] = {
                "alpha": self.alpha,
                "min_n": self.min_n,
                "seed": self.seed,
                "n_permutations": self.n_permutations,
            }
            params.update(member_params.get(m, {}))
            built.append(build_detector(SUITE_MEMBERS, m, **params))
        return built

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "members": [m.method for m in self.members],
            "correction": self.correction,
            "weights": self.weights,
            "n_permutations": self.n_permutations,
            "seed": self.seed,
            "min_effect": {m.method: self.min_effect.get(m.method, 0.0) for m in self.members},
        }

    def _after_fit(self, baseline: np.ndarray) -> None:
        for member in self.members:
            member.fit(baseline)

    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult:
        n_b, n_c = baseline.shape[0], current.shape[0]
        results = [member.test(current) for member in self.members]
        tested = [
            (m, r)
            for m, r in zip(self.members, results, strict=True)
            if r.status != STATUS_INSUFFICIENT and r.p_value is not None
        ]
        if not tested:
            return self._insufficient(n_b, n_c)
        adjusted, shared = self._adjust(tested)
        names = [r.method for _, r in tested]
        adjusted_by_name = {n: float(a) for n, a in zip(names, adjusted, strict=True)}
        significant = [n for n in names if adjusted_by_name[n] <= self.alpha]
        effects = {r.method: _effect(r) for _, r in tested}
        firing = [n for n in significant if effects[n] >= self.min_effect.get(n, 0.0)]
        p_value = float(min(adjusted))
        return self._result(
            drifted=bool(firing),
            score=-np.log10(max(p_value, 1e-300)),
            p_value=p_value,
            threshold=-np.log10(self.alpha),
            n_baseline=n_b,
            n_current=n_c,
            details={
                "score_is": "-log10 of the suite's adjusted p-value",
                "correction": self.correction,
                "joint_null_members": shared,
                "adjusted_p_values": adjusted_by_name,
                "significant": significant,
                "firing": firing,
                "below_effect_floor": [n for n in significant if n not in firing],
                "members": {r.method: r.to_dict() for r in results},
            },
        )

    def _adjust(self, tested: list[tuple[Detector, DriftResult]]) -> tuple[np.ndarray, list[str]]:
        p = np.array([r.p_value for _, r in tested], dtype=np.float64)
        if self.correction == "bh":
            return benjamini_hochberg(p), []
        w = np.array([self.weights[r.method] for _, r in tested])
        if self.correction == "holm":
            return weighted_step_down(p, w), []
        shared = self._shared_null(tested)
        if len(shared) < 2:
            return weighted_step_down(p, w), []
        outcomes = [
            m.last_outcome
            for m in (tested[i][0] for i in shared)
            if isinstance(m, PermutationDetector)
        ]
        observed = np.array([o.observed for o in outcomes if o is not None])
        nulls = np.stack([o.null for o in outcomes if o is not None])
        p_shared, p_null = joint_p_values(observed, nulls)
        p = p.copy()
        p[shared] = p_shared
        adjusted = weighted_step_down(p, w, joint=p_null, joint_members=shared)
        return adjusted, [tested[i][1].method for i in shared]

    def _shared_null(self, tested: list[tuple[Detector, DriftResult]]) -> list[int]:
        """Members whose nulls were computed on the same relabellings of the same rows.

        Those are the members with the suite's seed and permutation count whose null came from
        the whole windows, or from the same subsample of very large windows (the subsample
        depends only on the sizes, the seed and ``max_null_n``; see ``null_subsample``).
        """
        by_sample: dict[int | None, list[int]] = {}
        for i, (member, _) in enumerate(tested):
            if not isinstance(member, PermutationDetector):
                continue
            outcome = member.last_outcome
            if (
                outcome is not None
                and member.seed == self.seed
                and member.n_permutations == self.n_permutations
                and outcome.null.size == self.n_permutations
            ):
                by_sample.setdefault(outcome.null_sample, []).append(i)
        return max(by_sample.values(), key=len, default=[])


def _non_negative(values: Mapping[str, float], field: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
            raise InputError(f"{field} for {name} must be a finite number >= 0", field=field)
        out[str(name)] = float(value)
    return out


def _effect(result: DriftResult) -> float:
    value = result.details.get("effect")
    return float(value) if value is not None else float("-inf")
