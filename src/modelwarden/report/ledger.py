"""Which weekly packs were sent: one row per ISO week, so that a week is never sent twice.

The row is written in the same transaction as the pack's deliveries in the notification outbox:
either both exist or neither does. Two servers sharing one state database that both find a week
due both build the pack, but only the first insert wins; the other rolls back and sends nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from modelwarden.store.state import StateStore
from modelwarden.store.tables import report_sends


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def sent(state: StateStore, week: str) -> dict[str, Any] | None:
    with state.engine.connect() as con:
        r = con.execute(select(report_sends).where(report_sends.c.week == week)).first()
    return _row(r) if r else None


def last_sent(state: StateStore) -> dict[str, Any] | None:
    """The newest week sent (ISO week labels sort in time order)."""
    with state.engine.connect() as con:
        r = con.execute(select(report_sends).order_by(report_sends.c.week.desc()).limit(1)).first()
    return _row(r) if r else None


def history(state: StateStore, limit: int = 20) -> list[dict[str, Any]]:
    with state.engine.connect() as con:
        rows = con.execute(
            select(report_sends).order_by(report_sends.c.week.desc()).limit(limit)
        ).all()
    return [_row(r) for r in rows]


__all__ = ["history", "last_sent", "report_sends", "sent"]
