"""Rollouts in the state store: everything the controller needs to resume exactly where it was.

A rollout row holds the plan it follows, the step it is on, absolute timestamps (when the step
started, when its hold ends, when the guard phase ends), the route table version it set last and
the SOP engine's memory (which conditions hold since when, which rules fired). The controller is
stateless between ticks: a restarted process, or another instance, reads the row and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from modelwarden.errors import NotFoundError
from modelwarden.store.state import StateStore
from modelwarden.store.tables import rollouts

ACTIVE = ("running", "paused", "guard")
ENDED = ("completed", "rolled_back", "aborted")


@dataclass
class Rollout:
    id: int
    version: str
    canary_url: str
    stable_version: str
    stable_url: str
    plan: dict[str, Any]
    status: str
    step: int
    step_started_at: datetime
    hold_until: datetime
    looks: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    paused_from: str | None = None
    route_version: int | None = None
    engine_state: dict[str, Any] = field(default_factory=dict)
    last_tick_at: datetime | None = None
    last_verdict: dict[str, Any] | None = None
    incident_id: str | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.isoformat()
        return out


MUTABLE = (
    "status",
    "paused_from",
    "step",
    "step_started_at",
    "hold_until",
    "looks",
    "route_version",
    "engine_state",
    "last_tick_at",
    "last_verdict",
    "incident_id",
    "updated_at",
    "ended_at",
    "end_reason",
)


def _rollout(r: Any) -> Rollout:
    d = dict(r._mapping)
    d["engine_state"] = d["engine_state"] or {}
    return Rollout(**d)


def insert_rollout(con: Connection, values: dict[str, Any]) -> Rollout:
    res = con.execute(insert(rollouts).values(**values))
    assert res.inserted_primary_key is not None
    rid = int(res.inserted_primary_key[0])
    return _rollout(con.execute(select(rollouts).where(rollouts.c.id == rid)).one())


def save(con: Connection, r: Rollout) -> None:
    r.updated_at = datetime.now(UTC)
    con.execute(
        update(rollouts).where(rollouts.c.id == r.id).values(**{k: getattr(r, k) for k in MUTABLE})
    )


def record_tick(
    con: Connection,
    rollout_id: int,
    at: datetime,
    engine_state: dict[str, Any],
    verdict: dict[str, Any] | None = None,
) -> None:
    """Keep the evaluation of the tick that ended a rollout (its time, every rule's state and the
    judge's verdict), so the ended rollout still shows what decided it."""
    values: dict[str, Any] = {"last_tick_at": at, "engine_state": engine_state}
    if verdict is not None:
        values["last_verdict"] = verdict
    con.execute(update(rollouts).where(rollouts.c.id == rollout_id).values(**values))


def active_in(con: Connection) -> Rollout | None:
    row = con.execute(
        select(rollouts)
        .where(rollouts.c.status.in_(ACTIVE))
        .order_by(rollouts.c.id.desc())
        .limit(1)
    ).one_or_none()
    return _rollout(row) if row is not None else None


def active(state: StateStore) -> Rollout | None:
    """The rollout under way (running, paused or in its guard phase), if any."""
    with state.engine.connect() as con:
        return active_in(con)


def get(state: StateStore, rollout_id: int) -> Rollout:
    with state.engine.connect() as con:
        row = con.execute(select(rollouts).where(rollouts.c.id == rollout_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no rollout {rollout_id}", field="rollout")
    return _rollout(row)


def latest(state: StateStore, version: str | None = None) -> Rollout | None:
    q = select(rollouts).order_by(rollouts.c.id.desc()).limit(1)
    if version:
        q = q.where(rollouts.c.version == version)
    with state.engine.connect() as con:
        row = con.execute(q).one_or_none()
    return _rollout(row) if row is not None else None


def list_rollouts(state: StateStore, limit: int = 50) -> list[Rollout]:
    with state.engine.connect() as con:
        rows = con.execute(select(rollouts).order_by(rollouts.c.id.desc()).limit(limit)).all()
    return [_rollout(r) for r in rows]


__all__ = [
    "ACTIVE",
    "ENDED",
    "Rollout",
    "active",
    "get",
    "insert_rollout",
    "latest",
    "list_rollouts",
    "record_tick",
    "rollouts",
    "save",
]
