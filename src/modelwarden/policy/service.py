"""Policy service: the SOP policy in force, the SOP document rendered from it, and the stored
history to check it against.

What ``modelwarden policy check|replay|show``, ``modelwarden sop render`` and the HTTP API call; the
rules themselves are in :mod:`~modelwarden.policy.spec`, their evaluation in
:mod:`~modelwarden.policy.engine` and :mod:`~modelwarden.policy.replay`.

The policy in force is the newest version stored in the state store (``modelwarden policy set``,
table ``policies``), so every instance on one database enforces the same rules. While the state
store holds none, it is the data directory's ``policy.yaml``, else the built-in SOP-MLOPS-003. A
policy file named explicitly (``--policy FILE``) is used as it is, for checks and replays of a
draft. Storing a version is audited, so it lives in :mod:`modelwarden.governance.policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError
from modelwarden.policy import replay as replay_mod
from modelwarden.policy.engine import Observations
from modelwarden.policy.observe import load_observations
from modelwarden.policy.replay import lookback, watches
from modelwarden.policy.spec import Policy, parse_duration
from modelwarden.policy.store import (
    StoredPolicy,
    current,
    digest,
    insert_in,
    load_policy,
    resolve,
    sop_markdown,
    stored,
    stored_in,
    versions,
    write_default_policy,
)
from modelwarden.settings import Settings
from modelwarden.store.reads import require_data
from modelwarden.windows import parse_time

DEFAULT_SPAN = timedelta(days=14)
MIN_STEP = timedelta(minutes=1)


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


#: What ``policy check`` and ``policy replay`` run, and the key of their findings in the answer.
HISTORY_MODES: dict[str, tuple[Callable[..., list[Any]], str]] = {
    "check": (replay_mod.check, "fired"),
    "replay": (replay_mod.replay, "incidents"),
}


@dataclass(frozen=True)
class HistoryRun:
    """What ``policy check`` or ``policy replay`` (``mode``) found over ``[start, end)``."""

    mode: str
    policy: Policy
    start: datetime
    end: datetime
    step: str
    watched: list[str]
    found: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer, the findings under ``fired`` (check) or ``incidents`` (replay)."""
        return {
            "from": self.start,
            "to": self.end,
            "step": self.step,
            "watched": self.watched,
            HISTORY_MODES[self.mode][1]: self.found,
        }


def run_history(
    settings: Settings,
    mode: str,
    since: str | None = None,
    until: str | None = None,
    policy_path: Path | None = None,
    step: str = "15m",
    stable: str | None = None,
    candidates: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HistoryRun:
    """The policy over stored history, every ``step``. ``check``: which rules would have fired,
    when, and for which candidate. ``replay``: history replayed as if live, each rollback the
    policy would have made and its time to detect.

    ``on_total`` hears the number of evaluations first, ``progress`` each one as it is done.
    """
    if mode not in HISTORY_MODES:
        raise InputError(f"mode must be one of {', '.join(HISTORY_MODES)}", field="mode")
    h = load_history(settings, since, until, policy_path, step)
    w = watches(h.observations, h.start, h.end, stable, candidates or None)
    if on_total is not None:
        on_total(int((h.end - h.start) / h.step) * max(len(w), 1))
    run = HISTORY_MODES[mode][0]
    found = run(
        h.observations, h.policy, h.start, h.end, h.step, stable, candidates or None, progress
    )
    return HistoryRun(
        mode, h.policy, h.start, h.end, step, [x.label for x in w], [f.to_dict() for f in found]
    )


__all__ = [
    "HISTORY_MODES",
    "History",
    "HistoryRun",
    "StoredPolicy",
    "current",
    "digest",
    "history_range",
    "insert_in",
    "load_history",
    "load_policy",
    "parse_step",
    "resolve",
    "run_history",
    "sop_markdown",
    "stored",
    "stored_in",
    "versions",
    "write_default_policy",
]
