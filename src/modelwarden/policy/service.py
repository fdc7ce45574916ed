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

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from modelwarden.errors import InputError
from modelwarden.policy import replay as replay_mod
from modelwarden.policy.engine import Observations
from modelwarden.policy.observe import load_observations
from modelwarden.policy.replay import lookback, watches
from modelwarden.policy.sop import render_sop
from modelwarden.policy.spec import Policy, default_policy, parse_duration, policy_path
from modelwarden.settings import Settings
from modelwarden.store.reads import require_data
from modelwarden.store.state import StateStore
from modelwarden.store.tables import policies
from modelwarden.windows import parse_time

DEFAULT_SPAN = timedelta(days=14)
MIN_STEP = timedelta(minutes=1)


@dataclass(frozen=True)
class StoredPolicy:
    """One version of the policy in the state store."""

    version: int
    policy: Policy
    digest: str
    source: str
    set_by: str
    set_at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "sop_id": self.policy.sop_id,
            "digest": self.digest,
            "source": self.source,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(),
            "reason": self.reason,
        }


def digest(policy: Policy) -> str:
    """A policy's fingerprint: the SHA-256 of its canonical YAML."""
    return hashlib.sha256(policy.to_yaml().encode("utf-8")).hexdigest()


def _stored(row: Any) -> StoredPolicy:
    return StoredPolicy(
        version=int(row.version),
        policy=Policy.model_validate(row.policy),
        digest=row.digest,
        source=row.source,
        set_by=row.set_by,
        set_at=row.set_at,
        reason=row.reason,
    )


def stored_in(con: Connection) -> StoredPolicy | None:
    """The newest stored version, read inside the caller's transaction, or None."""
    row = con.execute(select(policies).order_by(policies.c.version.desc()).limit(1)).one_or_none()
    return _stored(row) if row is not None else None


def stored(state: StateStore) -> StoredPolicy | None:
    """The policy version in force in the state store, or None while none was set."""
    with state.engine.connect() as con:
        return stored_in(con)


def versions(state: StateStore, limit: int = 50) -> list[StoredPolicy]:
    """Stored versions, newest first."""
    with state.engine.connect() as con:
        rows = con.execute(select(policies).order_by(policies.c.version.desc()).limit(limit)).all()
    return [_stored(r) for r in rows]


def insert_in(
    con: Connection, policy: Policy, source: str, actor: str, reason: str, at: datetime
) -> StoredPolicy:
    """Store ``policy`` as the new version in force, inside the caller's (audited) transaction."""
    version = con.execute(
        insert(policies)
        .values(
            sop_id=policy.sop_id,
            policy=policy.model_dump(mode="json"),
            digest=digest(policy),
            source=source[:500],
            set_by=actor,
            set_at=at,
            reason=reason,
        )
        .returning(policies.c.version)
    ).scalar_one()
    return StoredPolicy(int(version), policy, digest(policy), source, actor, at, reason)


def resolve(
    settings: Settings, state: StateStore | None = None, path: Path | None = None
) -> tuple[Policy, str, StoredPolicy | None]:
    """(policy, where it comes from, its stored version if any): ``path`` if given, else the
    state store's newest version, else ``DATA/policy.yaml``, else the built-in SOP-MLOPS-003."""
    if path is not None:
        return Policy.load(path), str(path), None
    own = state is None
    st = state or StateStore.of(settings)
    try:
        cur = stored(st)
    finally:
        if own:
            st.close()
    if cur is not None:
        return cur.policy, f"state store (version {cur.version})", cur
    file = policy_path(settings.data_dir)
    return Policy.for_data(settings.data_dir), str(file) if file.exists() else "built-in", None


def current(settings: Settings, state: StateStore | None = None) -> dict[str, Any]:
    """The policy the engine enforces, and where it comes from."""
    pol, source, version = resolve(settings, state)
    return {
        "source": source,
        "version": version.to_dict() if version is not None else None,
        "policy": pol.model_dump(mode="json"),
    }


def sop_markdown(
    settings: Settings, path: Path | None = None, state: StateStore | None = None
) -> str:
    """The SOP document (Markdown) rendered from the policy in force (or the one at ``path``)."""
    return render_sop(load_policy(settings, path, state=state))


def write_default_policy(settings: Settings, out: Path | None = None, force: bool = False) -> Path:
    """Write the built-in policy (SOP-MLOPS-003) as YAML to ``out`` (default ``DATA/policy.yaml``,
    the file an instance enforces while the state store holds no policy); ``force`` overwrites a
    file that exists."""
    path = out or policy_path(settings.data_dir)
    if path.exists() and not force:
        raise InputError(f"{path} exists; add --force to overwrite it", field="out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_policy().to_yaml(), encoding="utf-8")
    return path


def load_policy(
    settings: Settings, path: Path | None = None, state: StateStore | None = None
) -> Policy:
    """The policy in force (see the module's docstring); ``path`` names a file to use instead."""
    return resolve(settings, state, path)[0]


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


@dataclass(frozen=True)
class HistoryRun:
    """What ``policy check`` or ``policy replay`` found over ``[start, end)``."""

    policy: Policy
    start: datetime
    end: datetime
    step: str
    watched: list[str]
    found: list[dict[str, Any]]

    def to_dict(self, key: str) -> dict[str, Any]:
        """The JSON answer, with the findings under ``key`` (``fired`` or ``incidents``)."""
        return {
            "from": self.start,
            "to": self.end,
            "step": self.step,
            "watched": self.watched,
            key: self.found,
        }


def _run_history(
    settings: Settings,
    mode: str,
    since: str | None,
    until: str | None,
    policy_path: Path | None,
    step: str,
    stable: str | None,
    candidates: list[str] | None,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> HistoryRun:
    h = load_history(settings, since, until, policy_path, step)
    w = watches(h.observations, h.start, h.end, stable, candidates or None)
    if on_total is not None:
        on_total(int((h.end - h.start) / h.step) * max(len(w), 1))
    run = replay_mod.check if mode == "check" else replay_mod.replay
    found = run(
        h.observations, h.policy, h.start, h.end, h.step, stable, candidates or None, progress
    )
    return HistoryRun(
        h.policy, h.start, h.end, step, [x.label for x in w], [f.to_dict() for f in found]
    )


def check_history(
    settings: Settings,
    since: str | None = None,
    until: str | None = None,
    policy_path: Path | None = None,
    step: str = "15m",
    stable: str | None = None,
    candidates: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HistoryRun:
    """Which rules would have fired over stored history, when, and for which candidate.

    ``on_total`` hears the number of evaluations first, ``progress`` each one as it is done.
    """
    return _run_history(
        settings, "check", since, until, policy_path, step, stable, candidates, progress, on_total
    )


def replay_history(
    settings: Settings,
    since: str | None = None,
    until: str | None = None,
    policy_path: Path | None = None,
    step: str = "15m",
    stable: str | None = None,
    candidates: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HistoryRun:
    """History replayed as if live: each rollback the policy would have made, and its time to
    detect. ``on_total`` and ``progress`` as in :func:`check_history`."""
    return _run_history(
        settings, "replay", since, until, policy_path, step, stable, candidates, progress, on_total
    )


__all__ = [
    "History",
    "HistoryRun",
    "StoredPolicy",
    "check_history",
    "current",
    "digest",
    "history_range",
    "insert_in",
    "load_history",
    "load_policy",
    "parse_step",
    "replay_history",
    "resolve",
    "sop_markdown",
    "stored",
    "stored_in",
    "versions",
    "write_default_policy",
]
