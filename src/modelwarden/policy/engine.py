"""The SOP engine: evaluates every rule of a policy at a time ``t``, per plant and overall.

Pure computation on arrays (no I/O): :class:`Observations` holds the requests and escalations,
:class:`Engine` keeps what must survive between ticks (how long a condition has held, whether it
already fired), and :meth:`Engine.tick` returns one :class:`RuleResult` per rule and scope.

Statistical tests (one-sided, so only a change for the worse counts):

- rates (``safety_rate``, ``error_rate``): Fisher's exact test, valid at any count;
- ``feedback_avg``: Mann-Whitney U on the scores (ordinal 1-5, no normality assumed);
- ``latency_p95_ms``: a binomial test on how many candidate requests exceed the baseline's P95
  (5 % do under no change).

Repeated looks. A controller ticks every few seconds or minutes over rolling windows, so one
rule looks at nearly the same data again and again, at every scope, for days: tested each time
at ``alpha``, a version that is as good as the stable one would be rolled back within days
(in simulation, 95 % of rollouts at 20 requests an hour per plant). Each look is therefore
tested at::

    alpha / (scopes × looks in the rule's window so far × k²)

where *scopes* is how many scopes the rule evaluates at this tick, the looks are this rule's
evaluations of this scope in ``(t - window, t]`` (this one included), and *k* counts the window
lengths since the rule first looked at the candidate (1 during the first window). Within one
window the looks share their data and Bonferroni's bound over them holds whatever their
correlation; over a whole watch the windows add up to at most ``π²/6 · alpha`` per rule, however
long it lasts. A first look — a fresh engine, ``policy check`` on one moment — is tested at
``alpha`` divided among the scopes only. ``bench/rollout/run.py`` measures the result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats

from modelwarden.policy.spec import Policy, Rule

FIRE, OK, NO_DATA, PENDING = "FIRE", "OK", "NO_DATA", "PENDING"


def _us(t: datetime) -> np.int64:
    return np.int64(int(t.astimezone(UTC).timestamp() * 1_000_000))


@dataclass
class Observations:
    """Requests and escalations as parallel arrays; timestamps in UTC microseconds."""

    ts: np.ndarray
    plant: np.ndarray
    version: np.ndarray
    latency: np.ndarray
    safety: np.ndarray
    score: np.ndarray
    error: np.ndarray
    # When each score became known (a late feedback event's time); None: with the request.
    score_at: np.ndarray | None = None
    esc_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    esc_plant: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    esc_version: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    esc_category: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    esc_confirmed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # ``version == v`` and ``plant == p`` over all requests, computed once each (see is_version).
    _masks: dict[tuple[str, str | None], np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.score_at is None:
            self.score_at = np.asarray(self.ts, dtype=np.int64).copy()
        order = np.argsort(self.ts, kind="stable")
        for name in ("ts", "plant", "version", "latency", "safety", "score", "error", "score_at"):
            setattr(self, name, np.asarray(getattr(self, name))[order])
        eorder = np.argsort(self.esc_ts, kind="stable")
        for name in ("esc_ts", "esc_plant", "esc_version", "esc_category", "esc_confirmed"):
            setattr(self, name, np.asarray(getattr(self, name))[eorder])

    @classmethod
    def from_rows(
        cls, requests: list[dict[str, Any]], escalations: list[dict[str, Any]] | None = None
    ) -> Observations:
        """From record dicts (``timestamp`` datetimes, the seed's fields, ``score`` optional)."""
        esc = escalations or []

        def col(rows: list[dict[str, Any]], key: str, default: Any = None) -> list[Any]:
            return [r.get(key, default) for r in rows]

        scores = [r.get("score", r.get("human_feedback_score")) for r in requests]
        return cls(
            ts=np.array([_us(r["timestamp"]) for r in requests], dtype=np.int64),
            plant=np.array(col(requests, "plant_id"), dtype=object),
            version=np.array(col(requests, "model_version"), dtype=object),
            latency=np.array(col(requests, "latency_ms"), dtype=float),
            safety=np.array([bool(x) for x in col(requests, "contains_safety_keyword", False)]),
            score=np.array([np.nan if s is None else float(s) for s in scores], dtype=float),
            error=np.array([bool(x) for x in col(requests, "error")]),
            score_at=np.array(
                [_us(r.get("score_at") or r["timestamp"]) for r in requests], dtype=np.int64
            ),
            esc_ts=np.array([_us(e["timestamp"]) for e in esc], dtype=np.int64),
            esc_plant=np.array(col(esc, "plant_id"), dtype=object),
            esc_version=np.array(col(esc, "model_version"), dtype=object),
            esc_category=np.array(col(esc, "category", "other"), dtype=object),
            esc_confirmed=np.array([bool(x) for x in col(esc, "confirmed", False)], dtype=bool),
        )

    def is_version(self, version: str | None) -> np.ndarray:
        """``self.version == version`` for every request.

        Computed once per version and kept: comparing an object array holds the interpreter for
        the whole array, and a tick asks the same question for every rule and scope.
        """
        return self._mask("version", version)

    def is_plant(self, plant: str | None) -> np.ndarray:
        """``self.plant == plant`` for every request, computed once per plant (as is_version)."""
        return self._mask("plant", plant)

    def _mask(self, column: str, value: str | None) -> np.ndarray:
        key = (column, value)
        m = self._masks.get(key)
        if m is None:
            m = self._masks[key] = np.asarray(getattr(self, column) == value, dtype=bool)
        return m

    def window(self, lo: np.int64, hi: np.int64) -> slice:
        """Requests with ``lo < ts <= hi`` (the arrays are sorted by time)."""
        return slice(
            int(np.searchsorted(self.ts, lo, "right")), int(np.searchsorted(self.ts, hi, "right"))
        )


@dataclass
class RuleResult:
    rule_id: str
    scope: str
    candidate: str
    status: str
    metric: str
    comparator: str
    threshold: float
    value: float | None = None
    baseline_value: float | None = None
    baseline: str = ""
    change: float | None = None
    n: int = 0
    n_baseline: int = 0
    p_value: float | None = None
    alpha: float | None = None
    holding_since: datetime | None = None
    first_fire: bool = False
    severity: str = "rollback"
    evaluated_at: datetime | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fisher_greater(k1: int, n1: int, k0: int, n0: int) -> float:
    return float(stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="greater")[1])


@dataclass
class _Side:
    n: int
    value: float | None
    sample: np.ndarray


class Engine:
    """Evaluates a policy tick by tick; keeps the state that sustain and fire-once need."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.holding: dict[tuple[str, str, str], datetime] = {}
        self.fired: set[tuple[str, str, str]] = set()
        # Looks (µs) at each rule × scope × candidate within the rule's window, and when each
        # rule first looked at each candidate: what the multiple-look correction counts.
        self.looks: dict[tuple[str, str, str], list[int]] = {}
        self.first_look: dict[tuple[str, str], int] = {}

    def look_alpha(
        self, rule: Rule, scope: str, candidate: str, hi: int, win: int, n_scopes: int
    ) -> float:
        """The significance level of this look (see "Repeated looks" in the module docstring)."""
        assert rule.alpha is not None
        key = (rule.id, scope, candidate)
        looks = [x for x in self.looks.get(key, []) if x > hi - win]
        if not looks or looks[-1] != hi:
            looks.append(hi)
        self.looks[key] = looks
        first = self.first_look.setdefault((rule.id, candidate), hi)
        windows = (hi - first) // win + 1
        return rule.alpha / (n_scopes * len(looks) * windows**2)

    # ---- metric on one side --------------------------------------------------------------------
    @staticmethod
    def _side(
        rule: Rule,
        obs: Observations,
        sl: slice | np.ndarray,
        mask: np.ndarray,
        now: np.int64 | None = None,
    ) -> _Side:
        if rule.metric == "safety_rate":
            x = obs.safety[sl][mask].astype(float)
        elif rule.metric == "error_rate":
            x = obs.error[sl][mask].astype(float)
        elif rule.metric == "feedback_avg":
            x = obs.score[sl][mask]
            known = ~np.isnan(x)
            if now is not None and obs.score_at is not None:
                known &= obs.score_at[sl][mask] <= now
            x = x[known]
        elif rule.metric == "latency_p95_ms":
            x = obs.latency[sl][mask]
        else:  # pragma: no cover - validated by the spec
            raise ValueError(rule.metric)
        if len(x) == 0:
            return _Side(0, None, x)
        value = float(np.percentile(x, 95)) if rule.metric == "latency_p95_ms" else float(x.mean())
        return _Side(len(x), value, x)

    def _compare(
        self, rule: Rule, cur: _Side, base: _Side, alpha: float | None
    ) -> tuple[bool, float, float | None]:
        """Whether the condition holds, the change, and the one-sided p-value.

        The test runs only when the change is beyond the threshold: within it the condition
        cannot hold whatever the p-value, and replays of weeks of history tick thousands of times.
        """
        assert cur.value is not None and base.value is not None
        if rule.comparator in ("increase_pp", "decrease_pp"):
            change = (cur.value - base.value) * 100.0
            worse = change if rule.comparator == "increase_pp" else -change
        elif rule.comparator == "increase_pct":
            change = (cur.value / base.value - 1.0) * 100.0 if base.value > 0 else float("inf")
            worse = change
        elif rule.comparator == "decrease":
            change = cur.value - base.value
            worse = -change
        else:  # pragma: no cover
            raise ValueError(rule.comparator)
        if worse <= rule.threshold:
            return False, change, None
        if rule.comparator in ("increase_pp", "decrease_pp"):
            k1, k0 = int(cur.sample.sum()), int(base.sample.sum())
            p = (
                _fisher_greater(k1, cur.n, k0, base.n)
                if rule.comparator == "increase_pp"
                else _fisher_greater(base.n - k0, base.n, cur.n - k1, cur.n)
            )
        elif rule.comparator == "increase_pct":
            k = int((cur.sample > base.value).sum())
            p = float(stats.binomtest(k, cur.n, 0.05, alternative="greater").pvalue)
        else:
            p = (
                float(stats.mannwhitneyu(cur.sample, base.sample, alternative="less").pvalue)
                if cur.n and base.n
                else 1.0
            )
        holds = alpha is None or p < alpha
        return holds, change, p

    def _own_history(
        self,
        rule: Rule,
        kind: str,
        obs: Observations,
        hi: int,
        win: int,
        scope: str,
        candidate: str,
    ) -> _Side:
        """The candidate's own earlier requests in scope: the previous window, or the same
        window of each of the previous ``baseline_days`` days (see the policy spec)."""
        if kind == "previous_window":
            spans = [obs.window(np.int64(hi - 2 * win), np.int64(hi - win))]
        else:
            day = 86_400_000_000
            spans = [
                obs.window(np.int64(hi - d * day - win), np.int64(hi - d * day))
                for d in range(1, rule.baseline_days + 1)
            ]
        idx = np.concatenate([np.arange(s.start, s.stop) for s in spans]).astype(np.intp)
        m = obs.is_version(candidate)[idx]
        if scope != "overall":
            m &= obs.is_plant(scope)[idx]
        return self._side(rule, obs, idx, m, np.int64(hi))

    # ---- one rule, one scope -------------------------------------------------------------------
    def _evaluate(
        self,
        rule: Rule,
        obs: Observations,
        t: datetime,
        scope: str,
        candidate: str,
        stable: str | None,
        n_scopes: int = 1,
    ) -> RuleResult:
        hi = _us(t)
        win = int(rule.window_td.total_seconds() * 1_000_000)
        res = RuleResult(
            rule_id=rule.id,
            scope=scope,
            candidate=candidate,
            status=NO_DATA,
            metric=rule.metric,
            comparator=rule.comparator,
            threshold=rule.threshold,
            severity=rule.severity,
            evaluated_at=t,
        )
        if rule.metric == "confirmed_escalations":
            lo_i = int(np.searchsorted(obs.esc_ts, hi - win, "right"))
            hi_i = int(np.searchsorted(obs.esc_ts, hi, "right"))
            m = obs.esc_confirmed[lo_i:hi_i] & (obs.esc_version[lo_i:hi_i] == candidate)
            if rule.categories:
                m &= np.isin(obs.esc_category[lo_i:hi_i], rule.categories)
            if scope != "overall":
                m &= obs.esc_plant[lo_i:hi_i] == scope
            count = int(m.sum())
            res.value, res.n, res.baseline = float(count), count, "none"
            holds = count > rule.threshold
            res.status = OK
            res.message = f"{count} confirmed escalation(s) in {rule.window}"
            return self._sustain(rule, res, holds, t)

        sl = obs.window(hi - win, hi)
        in_scope = (
            np.ones(sl.stop - sl.start, bool) if scope == "overall" else obs.is_plant(scope)[sl]
        )
        cur = self._side(rule, obs, sl, in_scope & obs.is_version(candidate)[sl], hi)
        base, kind = _Side(0, None, np.zeros(0)), rule.baseline
        if rule.baseline == "stable_same_window" and stable and stable != candidate:
            base = self._side(rule, obs, sl, in_scope & obs.is_version(stable)[sl], hi)
        elif rule.baseline in ("previous_window", "same_hours_previous_days"):
            base = self._own_history(rule, rule.baseline, obs, int(hi), win, scope, candidate)
        # Too little stable traffic in scope to compare with (after 100 %, or a stable version
        # that only serves requests without a user id): the rule's fallback on the candidate's
        # own history.
        if rule.baseline == "stable_same_window" and base.n < max(rule.min_samples, 1):
            kind = rule.fallback
            base = self._own_history(rule, kind, obs, int(hi), win, scope, candidate)
        res.baseline, res.n, res.n_baseline = kind, cur.n, base.n
        res.value, res.baseline_value = cur.value, base.value
        if cur.n < max(rule.min_samples, 1) or base.n < max(rule.min_samples, 1):
            res.message = (
                f"not enough data: {cur.n} and {base.n} requests, "
                f"{rule.min_samples} needed on each side"
            )
            self.holding.pop((rule.id, scope, candidate), None)
            return res
        alpha = (
            None
            if rule.alpha is None
            else self.look_alpha(rule, scope, candidate, int(hi), win, n_scopes)
        )
        holds, change, p = self._compare(rule, cur, base, alpha)
        res.change, res.p_value, res.alpha, res.status = change, p, alpha, OK
        unit = {"increase_pp": " pp", "decrease_pp": " pp", "increase_pct": " %"}.get(
            rule.comparator, " points"
        )
        res.message = (
            f"{rule.metric} {cur.value:.4g} vs {base.value:.4g} ({kind}); change "
            f"{change:+.3g}{unit}; threshold {rule.threshold:g}{unit}; "
            f"n={cur.n}/{base.n}" + (f"; p={p:.3g}" if p is not None else "")
        )
        return self._sustain(rule, res, holds, t)

    def _sustain(self, rule: Rule, res: RuleResult, holds: bool, t: datetime) -> RuleResult:
        key = (rule.id, res.scope, res.candidate)
        if not holds:
            self.holding.pop(key, None)
            return res
        since = self.holding.setdefault(key, t)
        res.holding_since = since
        if t - since >= rule.sustain_td:
            res.status = FIRE
            res.first_fire = key not in self.fired
            self.fired.add(key)
        else:
            res.status = PENDING
        return res

    # ---- all rules -------------------------------------------------------------------------------
    def tick(
        self, obs: Observations, t: datetime, candidate: str, stable: str | None = None
    ) -> list[RuleResult]:
        """Every rule × scope for ``candidate`` at time ``t`` (plants seen in the longest window)."""
        longest = max((r.window_td for r in self.policy.rules), default=timedelta(hours=24))
        sl = obs.window(_us(t - 2 * longest), _us(t))
        plants = sorted({p for p in obs.plant[sl][obs.is_version(candidate)[sl]] if p})
        out = []
        for rule in self.policy.rules:
            scopes = (["overall"] if "overall" in rule.scope else []) + (
                plants if "per_plant" in rule.scope else []
            )
            for scope in scopes:
                out.append(self._evaluate(rule, obs, t, scope, candidate, stable, len(scopes)))
        return out

    def reset(self, candidate: str) -> None:
        """Forget held and fired conditions of ``candidate`` (after it is re-approved)."""
        self.holding = {k: v for k, v in self.holding.items() if k[2] != candidate}
        self.fired = {k for k in self.fired if k[2] != candidate}
        self.looks = {k: v for k, v in self.looks.items() if k[2] != candidate}
        self.first_look = {k: v for k, v in self.first_look.items() if k[1] != candidate}
