"""The policy over stored history: which rules would have fired (check), and how fast (replay).

Both tick the engine every ``step`` from ``since`` to ``until`` on the same observations the live
controller reads. Who is watched:

- the **stable** version is the one that served most requests in the range (or the one given);
- every other version with traffic is a **candidate** judged against the stable version in the
  same window, as during a canary;
- the stable version is also watched against its own history (each rule's ``fallback``), as
  after 100 %.

``check`` reports every episode in which a rule fired (first and last tick, the values at the
first). ``replay`` plays the history as if it were live: a candidate whose rollback-severity rule
fires is rolled back at that tick and not watched afterwards (the stable version is never
proposed for a rollback: there is nothing to roll back to), and each such incident gets its
time to detect — from the candidate's first request in the firing scope (exposure), or, for the
stable version, from the first tick at which the change was beyond the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from modelwarden.policy.engine import FIRE, NO_DATA, Engine, Observations, RuleResult, _us
from modelwarden.policy.spec import Policy, Rule

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Watch:
    candidate: str
    stable: str | None  # None: against its own previous window

    @property
    def label(self) -> str:
        return (
            f"{self.candidate} vs {self.stable}"
            if self.stable
            else f"{self.candidate} vs its previous window"
        )


def watches(
    obs: Observations,
    since: datetime,
    until: datetime,
    stable: str | None = None,
    candidates: list[str] | None = None,
) -> list[Watch]:
    sl = obs.window(_us(since), _us(until))
    seen = [str(v) for v in obs.version[sl] if v]
    versions, counts = np.unique(np.asarray(seen, dtype=str), return_counts=True)
    if len(versions) == 0:
        return []
    main = stable or str(versions[int(np.argmax(counts))])
    others = [str(v) for v in versions if v != main]
    if candidates is not None:
        others = [c for c in candidates if c != main]
    out = [Watch(c, main) for c in others]
    if candidates is None or main in candidates:
        out.append(Watch(main, None))
    return out


def ticks(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    out, t = [], since + step
    while t <= until:
        out.append(t)
        t += step
    return out


def _beyond(rule: Rule, r: RuleResult) -> bool:
    """The change is beyond the threshold, significant or not."""
    if r.status == NO_DATA or r.value is None:
        return False
    if rule.comparator == "count_above":
        return r.value > rule.threshold
    if r.change is None:
        return False
    worse = -r.change if rule.comparator in ("decrease", "decrease_pp") else r.change
    return worse > rule.threshold


@dataclass
class Episode:
    """A run of consecutive ticks at which one rule fired for one candidate and scope."""

    watch: str
    candidate: str
    stable: str | None
    rule_id: str
    scope: str
    severity: str
    first_at: datetime
    last_at: datetime
    ticks: int
    first: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "watch": self.watch,
            "candidate": self.candidate,
            "stable": self.stable,
            "rule_id": self.rule_id,
            "scope": self.scope,
            "severity": self.severity,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "ticks": self.ticks,
            **{
                k: self.first.get(k)
                for k in (
                    "value",
                    "baseline_value",
                    "baseline",
                    "change",
                    "n",
                    "n_baseline",
                    "p_value",
                    "threshold",
                    "message",
                )
            },
        }


def check(
    obs: Observations,
    policy: Policy,
    since: datetime,
    until: datetime,
    step: timedelta,
    stable: str | None = None,
    candidates: list[str] | None = None,
    progress: Progress | None = None,
) -> list[Episode]:
    """Every episode in which a rule would have fired."""
    out: list[Episode] = []
    for w in watches(obs, since, until, stable, candidates):
        eng = Engine(policy)
        open_: dict[tuple[str, str], Episode] = {}
        for t in ticks(since, until, step):
            fired = set()
            for r in eng.tick(obs, t, w.candidate, w.stable):
                if r.status != FIRE:
                    continue
                key = (r.rule_id, r.scope)
                fired.add(key)
                ep = open_.get(key)
                if ep is None:
                    ep = Episode(
                        w.label,
                        w.candidate,
                        w.stable,
                        r.rule_id,
                        r.scope,
                        r.severity,
                        t,
                        t,
                        0,
                        r.to_dict(),
                    )
                    open_[key] = ep
                    out.append(ep)
                ep.last_at, ep.ticks = t, ep.ticks + 1
            for key in [k for k in open_ if k not in fired]:
                del open_[key]
            if progress:
                progress(1)
    return sorted(out, key=lambda e: (e.first_at, e.candidate, e.rule_id, e.scope))


@dataclass
class ReplayIncident:
    candidate: str
    stable: str | None
    rule_id: str
    scope: str
    detected_at: datetime
    exposed_since: datetime | None
    exceeded_since: datetime | None
    time_to_detect: timedelta | None
    trigger: dict[str, Any]
    also_fired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "stable": self.stable,
            "rule_id": self.rule_id,
            "scope": self.scope,
            "detected_at": self.detected_at,
            "exposed_since": self.exposed_since,
            "exceeded_since": self.exceeded_since,
            "time_to_detect_h": None
            if self.time_to_detect is None
            else round(self.time_to_detect.total_seconds() / 3600, 2),
            "also_fired": self.also_fired,
            **{
                k: self.trigger.get(k)
                for k in (
                    "value",
                    "baseline_value",
                    "baseline",
                    "n",
                    "n_baseline",
                    "threshold",
                    "p_value",
                )
            },
        }


def _first_request(
    obs: Observations, version: str, scope: str, since: datetime, until: datetime
) -> datetime | None:
    sl = obs.window(_us(since) - 1, _us(until))
    m = obs.is_version(version)[sl]
    if scope != "overall":
        m &= obs.is_plant(scope)[sl]
    idx = np.flatnonzero(m)
    if len(idx) == 0:
        return None
    return datetime.fromtimestamp(int(obs.ts[sl][idx[0]]) / 1e6, UTC)


def replay(
    obs: Observations,
    policy: Policy,
    since: datetime,
    until: datetime,
    step: timedelta,
    stable: str | None = None,
    candidates: list[str] | None = None,
    progress: Progress | None = None,
) -> list[ReplayIncident]:
    """History as if live: each candidate's first rollback, and how long it took to detect."""
    rules = {r.id: r for r in policy.rules}
    out = []
    for w in watches(obs, since, until, stable, candidates):
        if w.stable is None:
            # The stable version has nothing to roll back to: what fires for it is an alert,
            # listed by ``check``, never a rollback.
            continue
        eng = Engine(policy)
        exceeded: dict[tuple[str, str], datetime] = {}
        for t in ticks(since, until, step):
            results = eng.tick(obs, t, w.candidate, w.stable)
            for r in results:
                key = (r.rule_id, r.scope)
                if _beyond(rules[r.rule_id], r):
                    exceeded.setdefault(key, t)
                else:
                    exceeded.pop(key, None)
            fires = [r for r in results if r.status == FIRE and r.severity == "rollback"]
            if progress:
                progress(1)
            if not fires:
                continue
            first = fires[0]
            exposed = (
                None
                if w.stable is None
                else _first_request(obs, w.candidate, first.scope, since - _longest(policy), t)
            )
            beyond = exceeded.get((first.rule_id, first.scope), t)
            start = exposed if exposed is not None else beyond
            out.append(
                ReplayIncident(
                    w.candidate,
                    w.stable,
                    first.rule_id,
                    first.scope,
                    t,
                    exposed,
                    beyond,
                    t - start,
                    first.to_dict(),
                    [f"{r.rule_id}@{r.scope}" for r in fires[1:]],
                )
            )
            break  # rolled back: this candidate serves nobody after this tick
    return sorted(out, key=lambda i: i.detected_at)


def _longest(policy: Policy) -> timedelta:
    return max((r.window_td for r in policy.rules), default=timedelta(hours=24))


def lookback(policy: Policy) -> timedelta:
    """How much history before ``since`` the first tick needs: two of the longest windows, or
    the days a ``same_hours_previous_days`` baseline looks back, whichever is longer."""
    days = [
        timedelta(days=r.baseline_days) + r.window_td
        for r in policy.rules
        if "same_hours_previous_days" in (r.baseline, r.fallback)
    ]
    return max([2 * _longest(policy), *days])


__all__ = ["Episode", "ReplayIncident", "Watch", "check", "lookback", "replay", "ticks", "watches"]
