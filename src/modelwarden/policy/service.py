"""Policy service: the SOP policy in force, the SOP document rendered from it, and the stored
history to check it against.

What ``modelwarden policy check|replay|show``, ``modelwarden sop render`` and the HTTP API call; the
rules themselves are in :mod:`~modelwarden.policy.spec`, their evaluation in
:mod:`~modelwarden.policy.engine` and :mod:`~modelwarden.policy.replay`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError
from modelwarden.policy.engine import Observations
from modelwarden.policy.observe import load_observations
from modelwarden.policy.replay import lookback
from modelwarden.policy.sop import render_sop
from modelwarden.policy.spec import Policy, parse_duration, policy_path
from modelwarden.settings import Settings
from modelwarden.store.reads import require_data
from modelwarden.windows import parse_time

DEFAULT_SPAN = timedelta(days=14)
MIN_STEP = timedelta(minutes=1)


def current(settings: Settings) -> dict[str, Any]:
    """The policy the engine enforces, and where it comes from."""
    path = policy_path(settings.data_dir)
    pol = Policy.for_data(settings.data_dir)
    return {
        "source": str(path) if path.exists() else "built-in",
        "policy": pol.model_dump(mode="json"),
    }


def sop_markdown(settings: Settings) -> str:
    """The SOP document (Markdown) rendered from the policy in force."""
    return render_sop(Policy.for_data(settings.data_dir))


def load_policy(settings: Settings, path: Path | None = None) -> Policy:
    """``path`` if given, else ``DATA/policy.yaml``, else the built-in SOP-MLOPS-003."""
    return Policy.for_data(settings.data_dir, path)


def history_range(
    settings: Settings, since: str | None, until: str | None
) -> tuple[datetime, datetime]:
    """``[from, to)``: by default up to the last request and 14 days back (not before the first)."""
    lo, hi = require_data(settings)
    end = parse_time(until, "to") if until else hi + timedelta(microseconds=1)
    start = parse_time(since, "from") if since else max(lo, end - DEFAULT_SPAN)
    if end <= start:
        raise InputError("--to must be after --from", field="to")
    return start, end


def parse_step(value: str) -> timedelta:
    try:
        step = parse_duration(value)
    except ValueError as exc:
        raise InputError(str(exc), field="step") from None
    if step < MIN_STEP:
        raise InputError("--step must be at least 1m", field="step")
    return step


@dataclass(frozen=True)
class History:
    """A policy with the observations it needs between ``start`` and ``end``, every ``step``."""

    policy: Policy
    observations: Observations
    start: datetime
    end: datetime
    step: timedelta


def load_history(
    settings: Settings,
    since: str | None,
    until: str | None,
    policy_path: Path | None,
    step: str,
) -> History:
    pol = load_policy(settings, policy_path)
    start, end = history_range(settings, since, until)
    obs = load_observations(settings, start - lookback(pol), end)
    return History(pol, obs, start, end, parse_step(step))


__all__ = [
    "History",
    "current",
    "history_range",
    "load_history",
    "load_policy",
    "parse_step",
    "sop_markdown",
]
