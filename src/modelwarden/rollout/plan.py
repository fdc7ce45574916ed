"""Rollout plans as data (YAML): steps with weights, holds and scope; gates; the judge's settings.

A step sends ``weight`` % of the users of its ``plants`` (every plant when empty) to the canary
and holds there until ``hold.duration`` has passed *and* the canary has served
``hold.min_requests`` requests in the step's scope; then the judge compares canary and stable
over the step's window. The last step must reach 100 %: it is the **guard phase**, where no
stable traffic is left to compare with, the SOP policy stays live against the candidate's own
previous window and the old stable version stays in the route table, ready (it still serves
requests without a user id and any request the canary fails).

Gates (one per metric): ``comparator`` says what "worse" means and ``margin`` how much worse is
still acceptable:

==============  ==============  ===============================================================
metric          comparator      margin is
==============  ==============  ===============================================================
safety_rate     increase_pp     percentage points of flagged answers (Fisher's exact test)
error_rate      increase_pp     percentage points of failed requests (Fisher's exact test)
feedback_avg    decrease        feedback points on the 1-5 scale (Welch's t interval)
latency_ms      increase_pct    percent, as the Hodges-Lehmann shift of log latency
                                (Mann-Whitney U test and its inverted interval)
==============  ==============  ===============================================================

``effect_floor`` (default: the margin) is the smallest estimated worsening that may fail a
step: a statistically significant but negligible difference holds the step, it does not roll
back. See :mod:`modelwarden.rollout.judge` for the verdicts.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelwarden.errors import InputError
from modelwarden.policy.spec import parse_duration

GateMetric = Literal["safety_rate", "error_rate", "feedback_avg", "latency_ms"]
GateComparator = Literal["increase_pp", "decrease", "increase_pct"]
COMPARATOR_OF: dict[str, str] = {
    "safety_rate": "increase_pp",
    "error_rate": "increase_pp",
    "feedback_avg": "decrease",
    "latency_ms": "increase_pct",
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hold(_Spec):
    duration: str = "48h"
    min_requests: int = Field(default=30, ge=0, description="Canary requests in the step's scope.")

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class Step(_Spec):
    weight: float = Field(gt=0, le=100, description="Percent of the scope's users on the canary.")
    plants: list[str] = Field(default_factory=list, description="Empty: every plant.")
    hold: Hold = Field(default_factory=Hold)

    def label(self) -> str:
        where = ", ".join(self.plants) if self.plants else "every plant"
        return f"{self.weight:g}% of {where}"


class Gate(_Spec):
    metric: GateMetric
    comparator: GateComparator
    margin: float = Field(ge=0)
    min_samples: int = Field(default=30, ge=1)
    effect_floor: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _matching(self) -> Gate:
        want = COMPARATOR_OF[self.metric]
        if self.comparator != want:
            raise ValueError(f"{self.metric} is judged with {want}, not {self.comparator}")
        return self

    @property
    def floor(self) -> float:
        return self.margin if self.effect_floor is None else self.effect_floor


class Judge(_Spec):
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="For one step, all gates and "
        "all looks together: each test runs at alpha / (gates × max_looks).",
    )
    pass_rule: Literal["no_harm", "non_inferiority"] = Field(
        default="no_harm",
        description="no_harm: a gate passes when the canary is not "
        "significantly worse and its estimated worsening is under the margin (the seed's 'KPIs "
        "remain stable'); non_inferiority: only when the upper confidence bound of the "
        "worsening is under the margin (needs thousands of requests for a 1-point margin).",
    )
    extend: str = Field(
        default="12h",
        description="How long NoData or Inconclusive extends a hold before the next look.",
    )
    max_looks: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Judge looks per step. Alpha is split evenly "
        "among them, so a canary as good as the stable version is failed with probability at "
        "most alpha per step however often the hold is extended. After the last look the step "
        "waits for an operator (rollout promote or abort); the SOP policy keeps protecting it.",
    )

    @field_validator("extend")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError("must be positive")
        return v

    def alpha_at(self, look: int) -> float:
        """The alpha of one look, for all gates together (the judge splits it among them)."""
        return self.alpha / self.max_looks


def default_gates() -> list[Gate]:
    return [
        Gate(metric="safety_rate", comparator="increase_pp", margin=1.0, min_samples=30),
        Gate(metric="error_rate", comparator="increase_pp", margin=1.0, min_samples=30),
        Gate(metric="feedback_avg", comparator="decrease", margin=0.3, min_samples=20),
        Gate(metric="latency_ms", comparator="increase_pct", margin=25.0, min_samples=30),
    ]


class Plan(_Spec):
    name: str = "default"
    description: str = ""
    steps: list[Step] = Field(min_length=1)
    gates: list[Gate] = Field(default_factory=default_gates)
    judge: Judge = Field(default_factory=Judge)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[Step]) -> list[Step]:
        if steps[-1].weight != 100 or steps[-1].plants:
            raise ValueError("the last step must be 100% of every plant (the guard phase)")
        for a, b in itertools.pairwise(steps):
            wider = set(a.plants) < set(b.plants) or (a.plants and not b.plants)
            if b.weight < a.weight or (b.weight == a.weight and not wider):
                raise ValueError("each step must reach more users than the one before")
        return steps

    @field_validator("gates")
    @classmethod
    def _unique(cls, gates: list[Gate]) -> list[Gate]:
        metrics = [g.metric for g in gates]
        if len(set(metrics)) != len(metrics):
            raise ValueError("one gate per metric")
        return gates

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "plan") -> Plan:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: not valid YAML ({exc})", field="plan") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(x) for x in err["loc"]) or "plan"
            raise InputError(f"{source}: {loc}: {err['msg']}", field=loc) from exc

    @classmethod
    def load(cls, path: Path | None) -> Plan:
        if path is None:
            return default_plan()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read plan {path}: {exc.strerror}", field="plan") from exc
        return cls.from_yaml(text, str(path))

    def describe(self) -> str:
        parts = [
            f"{s.label()} (hold {s.hold.duration}, ≥{s.hold.min_requests} requests)"
            for s in self.steps
        ]
        return " → ".join(parts)


def default_plan(plant: str = "Plant_B", hold: str = "48h") -> Plan:
    """The seed's canary: 5 % of one plant, then 25, 50 and 100 % of every plant, 48 h each."""
    h = Hold(duration=hold)
    return Plan(
        name="default",
        description="5% of one plant's users, then 25%, 50% and 100% of every plant; each step "
        "holds 48 hours and until the canary has served enough requests to judge.",
        steps=[
            Step(weight=5, plants=[plant], hold=h),
            Step(weight=25, hold=h),
            Step(weight=50, hold=h),
            Step(weight=100, hold=h),
        ],
    )


__all__ = [
    "COMPARATOR_OF",
    "Gate",
    "Hold",
    "Judge",
    "Plan",
    "Step",
    "default_gates",
    "default_plan",
]
