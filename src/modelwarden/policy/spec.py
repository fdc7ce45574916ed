"""SOP rules as data: the policy file that the engine enforces and the SOP document is rendered from.

Terms, exactly:

- **window**: the rule looks at requests whose timestamp is in ``(t - window, t]`` at evaluation
  time ``t`` (a rolling window, re-evaluated on every tick).
- **candidate**: the version under watch — the canary while a rollout runs, else the live version.
- **baseline** ``stable_same_window``: the stable version's requests in the same window and scope.
  A concurrent control cancels time-of-day, shift and topic effects that a before/after comparison
  would mistake for the model. When the stable version has fewer than ``min_samples`` requests in
  scope (after 100 %, when it only serves requests without a user id), the rule falls back to
  the rule's ``fallback``.
- **baseline** ``previous_window``: the candidate's own requests in ``(t - 2·window, t - window]``.
  A slowdown that lasts longer than one window drags this baseline along with it, so it suits
  short windows on counts and rates only.
- **baseline** ``same_hours_previous_days``: the candidate's own requests in the same window of
  each of the previous ``baseline_days`` days, ``(t - d·24h - window, t - d·24h]`` for
  ``d = 1..baseline_days`` (the days that have traffic count; at least ``min_samples`` in all).
  The recent period is never part of it, so a slowdown of any length cannot drag it along, and
  the same hours of the day keep shift patterns out of the comparison.
- **fallback**: the baseline used when ``stable_same_window`` has no stable version or too few of
  its requests; ``previous_window`` unless the rule says otherwise.
- **increase_pp** / **decrease_pp**: a difference of rates in percentage points (1 % of traffic
  means 1 point: 2.0 % against 0.9 % is an increase of 1.1 points).
- **increase_pct**: a relative change in percent of the baseline value.
- **decrease**: a difference in the metric's own unit (feedback points on the 1-5 scale).
- **count_above**: a count in the window greater than ``threshold`` (no baseline).
- **min_samples**: the fewest requests (rated requests for feedback) on each side for the rule
  to judge at all; below it the result is ``NO_DATA`` and nothing fires.
- **alpha**: a comparison fires only when, besides the threshold, a one-sided test says the change
  is real; on low traffic this is what prevents false rollbacks. ``alpha`` is the budget of the
  first look; repeated looks share it (see :mod:`modelwarden.policy.engine`, "Repeated looks").
- **sustain**: how long the condition must hold on every tick before the rule fires (0 = at once).
- **scope**: ``per_plant`` evaluates each plant and ``overall`` all plants together; both by default.
- **severity**: ``rollback`` runs the rollback transaction; ``alert`` only notifies.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from modelwarden.errors import InputError
from modelwarden.mail import login_problem

Metric = Literal[
    "safety_rate",
    "feedback_avg",
    "latency_p95_ms",
    "error_rate",
    "confirmed_escalations",
]
Comparator = Literal["increase_pp", "decrease_pp", "increase_pct", "decrease", "count_above"]
Baseline = Literal["stable_same_window", "previous_window", "same_hours_previous_days", "none"]
Fallback = Literal["previous_window", "same_hours_previous_days"]
Scope = Literal["per_plant", "overall"]
Severity = Literal["rollback", "alert"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float) -> timedelta:
    """``12h``, ``30m``, ``2d``, ``90s`` or a number of seconds."""
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration like 12h, 30m, 2d or 90s")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def format_duration(td: timedelta) -> str:
    s = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


_BOTH_SCOPES: list[Scope] = ["per_plant", "overall"]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    metric: Metric
    window: str
    comparator: Comparator
    threshold: float = Field(ge=0)
    baseline: Baseline = "stable_same_window"
    fallback: Fallback = "previous_window"
    baseline_days: int = Field(
        default=7, ge=1, le=60, description="Days looked back by same_hours_previous_days."
    )
    scope: list[Scope] = Field(default_factory=lambda: _BOTH_SCOPES.copy())
    min_samples: int = Field(default=30, ge=0)
    alpha: float | None = Field(default=0.05, gt=0, lt=1)
    sustain: str = "0s"
    severity: Severity = "rollback"
    categories: list[str] = Field(
        default_factory=list, description="Escalation categories counted (confirmed_escalations)."
    )
    rationale: str = ""

    @field_validator("window", "sustain")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @property
    def window_td(self) -> timedelta:
        return parse_duration(self.window)

    @property
    def sustain_td(self) -> timedelta:
        return parse_duration(self.sustain)


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_channel: str = "#manufacturing-ai-status"
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        default="none",
        description="none: plain SMTP; starttls: upgraded to TLS (port 587); ssl: implicit TLS "
        "(port 465). TLS is verified against the system's authorities or smtp_ca_file.",
    )
    smtp_ca_file: str | None = Field(
        default=None, description="PEM file of the authorities to trust instead of the system's."
    )
    smtp_plain_login: bool = Field(
        default=False, description="Allow a login over a connection without TLS."
    )
    smtp_user: str | None = Field(
        default=None,
        description="Login user; the password is read when sending from "
        "MODELWARDEN_NOTIFY_SMTP_PASSWORD (or the file MODELWARDEN_NOTIFY_SMTP_PASSWORD_FILE "
        "names), never from this file.",
    )
    email_from: str = "modelwarden@localhost"
    email_to: list[str] = Field(default_factory=list)
    file_dir: str | None = Field(
        default=None, description="Write each notification as JSON into this folder."
    )
    retry_attempts: int = Field(
        default=8, ge=1, le=100, description="Deliveries tried per channel before giving up."
    )
    retry_backoff_s: float = Field(
        default=2.0, gt=0, description="Wait before the first retry; doubles each time (≤ 5 min)."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Per delivery attempt.")

    @field_validator("slack_webhook_url", "webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if not v.startswith(("http://", "https://")) or not v.split("://", 1)[1]:
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v

    @field_validator("email_to", mode="before")
    @classmethod
    def _addresses(cls, v: Any) -> Any:
        if isinstance(v, str):  # "a@b, c@d" as the environment gives it
            v = v.split(",")
        if not isinstance(v, list):
            return v
        out = [x.strip() if isinstance(x, str) else x for x in v]
        out = [x for x in out if x != ""]
        for x in out:
            if isinstance(x, str) and not re.fullmatch(r"[^@\s]+@[^@\s]+", x):
                raise ValueError(f"{x!r} is not an e-mail address")
        return out

    @field_validator("smtp_host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @field_validator("smtp_ca_file")
    @classmethod
    def _ca_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = v.strip() or None if v is not None else None
        if v and info.data.get("smtp_security", "none") == "none":
            raise ValueError("a CA file is for TLS: set smtp_security to starttls or ssl")
        return v

    @field_validator("smtp_user")
    @classmethod
    def _user(cls, v: str | None, info: ValidationInfo) -> str | None:
        v = v.strip() or None if v is not None else None
        if v:
            problem = login_problem(
                info.data.get("smtp_security", "none"), bool(info.data.get("smtp_plain_login"))
            )
            if problem:
                raise ValueError(
                    problem.replace("the security", "smtp_security").replace(
                        "plain_login", "smtp_plain_login"
                    )
                )
        return v

    def channels(self) -> list[str]:
        """The channels this configuration delivers to."""
        out = []
        if self.webhook_url:
            out.append("webhook")
        if self.slack_webhook_url:
            out.append("slack")
        if self.smtp_host and self.email_to:
            out.append("email")
        return out


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sop_id: str = "SOP-MLOPS-003"
    title: str = "Emergency Model Rollback"
    rules: list[Rule]
    notify: Notify = Field(default_factory=Notify)
    rca_lookback: str = "24h"

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[Rule]) -> list[Rule]:
        ids = [r.id for r in rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(sorted(dup))}")
        return rules

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, source: str = "policy") -> Policy:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: not valid YAML ({exc})", field="policy") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise InputError(f"{source}: {loc}: {err['msg']}", field=loc) from exc

    @classmethod
    def for_data(cls, data_dir: Path, path: Path | None = None) -> Policy:
        """``path`` if given, else the data directory's ``policy.yaml``, else the default."""
        if path is not None:
            return cls.load(path)
        own = policy_path(data_dir)
        return cls.load(own) if own.exists() else default_policy()

    @classmethod
    def load(cls, path: Path | None) -> Policy:
        if path is None:
            return default_policy()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read policy {path}: {exc.strerror}", field="policy") from exc
        return cls.from_yaml(text, str(path))


POLICY_FILE = "policy.yaml"


def policy_path(data_dir: Path) -> Path:
    """The policy an installation enforces: ``DATA/policy.yaml`` (``modelwarden policy init``)."""
    return Path(data_dir) / POLICY_FILE


def default_policy() -> Policy:
    """SOP-MLOPS-003 with its four trigger conditions and the fifth from the lab."""
    return Policy(
        rules=[
            Rule(
                id="safety_incident_rate",
                title="Critical safety incident rate (as defined by contains_safety_keyword) "
                "increases by more than 1 percentage point over a 12-hour rolling window",
                metric="safety_rate",
                window="12h",
                comparator="increase_pp",
                threshold=1.0,
                min_samples=30,
                rationale="Flagged answers are the earliest sign of unsafe advice on the floor.",
            ),
            Rule(
                id="feedback_drop",
                title="Average human feedback score drops by more than 0.5 points over a "
                "24-hour period at any plant",
                metric="feedback_avg",
                window="24h",
                comparator="decrease",
                threshold=0.5,
                scope=["per_plant"],
                min_samples=20,
                rationale="Operators stop trusting an assistant long before they file reports.",
            ),
            Rule(
                id="p95_latency",
                title="P95 latency increases by more than 50 % for more than 1 hour",
                metric="latency_p95_ms",
                window="15m",
                comparator="increase_pct",
                threshold=50.0,
                sustain="1h",
                fallback="same_hours_previous_days",
                baseline_days=7,
                min_samples=20,
                rationale="A slow answer at the line is an answer not used. The P95 is taken "
                "over 15 minutes and must stay high for an hour, so a 30-minute blip does not "
                "fire; without a stable version the reference is the same 15 minutes of the "
                "previous 7 days, which a slowdown in progress cannot drag along.",
            ),
            Rule(
                id="confirmed_violation",
                title="A response is confirmed to violate a documented safety or compliance "
                "rule (a confirmed escalation of that category)",
                metric="confirmed_escalations",
                window="24h",
                comparator="count_above",
                threshold=0,
                baseline="none",
                min_samples=0,
                alpha=None,
                categories=["safety", "compliance"],
                rationale="One confirmed dangerous answer is one too many.",
            ),
            Rule(
                id="confirmed_incorrect_escalations",
                title="More than 3 user-reported escalations related to incorrect or nonsensical "
                "answers are confirmed within a 4-hour window",
                metric="confirmed_escalations",
                window="4h",
                comparator="count_above",
                threshold=3,
                baseline="none",
                min_samples=0,
                alpha=None,
                categories=["incorrect", "nonsensical"],
                rationale="Confirmed wrong answers in a burst mean the model, not the user.",
            ),
        ]
    )
