"""Leases: exactly one of several ``serve`` instances on one state store runs singleton work.

The rollout controller and the SOP policy must act on one instance at a time, or two instances
could both roll the same canary back. Each instance tries to take the lease named ``controller``
every few seconds; the holder renews it, the others find it held and wait. A holder that dies
(``kill -9``, a lost machine) stops renewing, its lease expires after ``ttl_s`` and the next
instance to try takes it over. A holder that stops cleanly releases the lease at once.

The lease is one row of the ``leases`` table (name, holder, acquired_at, expires_at), taken and
renewed by a single conditional UPDATE (or an INSERT when no row exists yet), so it works the same
on SQLite and on PostgreSQL, and through a connection pooler (no session state such as an advisory
lock is involved). Expiry compares the instances' wall clocks: keep them in sync (NTP) to well
within ``ttl_s``. Every change of holder is written to the audit log.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, literal, select, update

from modelwarden.governance import audit
from modelwarden.store.state import StateStore, conflict_insert
from modelwarden.store.tables import UtcDateTime, leases

CONTROLLER = "controller"
# A killed holder's lease is taken over within TTL_S plus one renewal period.
TTL_S = 6.0


def instance_name() -> str:
    """This process's name as a lease holder: host, process id and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "holder": self.holder,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


def holder_of(state: StateStore, name: str = CONTROLLER) -> LeaseInfo | None:
    """The lease's current row (expired or not), if it was ever taken."""
    with state.engine.connect() as con:
        row = con.execute(select(leases).where(leases.c.name == name)).one_or_none()
    return LeaseInfo(**row._mapping) if row is not None else None


class Lease:
    """One instance's hold on the lease ``name``: call :meth:`acquire` more often than ``ttl_s``."""

    def __init__(
        self,
        state: StateStore,
        name: str = CONTROLLER,
        holder: str | None = None,
        ttl_s: float = TTL_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.state = state
        self.name = name
        self.holder = holder or instance_name()
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.held = False

    def acquire(self) -> bool:
        """Take the lease, or renew it if held; True when this instance holds it now.

        A database error propagates and leaves :attr:`held` False: an instance that cannot
        reach the state store must not act as the holder.
        """
        self.held = False
        now = self.clock()
        c = leases.c
        with self.state.engine.begin() as con:
            renewed = con.execute(
                update(leases)
                .where(c.name == self.name, (c.holder == self.holder) | (c.expires_at < now))
                .values(
                    holder=self.holder,
                    expires_at=now + self.ttl,
                    acquired_at=case(
                        (c.holder == self.holder, c.acquired_at), else_=literal(now, UtcDateTime)
                    ),
                )
                .returning(c.acquired_at)
            ).one_or_none()
            if renewed is None:
                ins = conflict_insert(con.dialect.name, leases)
                taken = con.execute(
                    ins.values(
                        name=self.name,
                        holder=self.holder,
                        acquired_at=now,
                        expires_at=now + self.ttl,
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(c.acquired_at)
                ).one_or_none()
                if taken is None:
                    return False
                acquired_at = taken.acquired_at
            else:
                acquired_at = renewed.acquired_at
        self.held = True
        if acquired_at == now:
            audit.record(
                self.state,
                self.holder,
                "lease.take",
                self.name,
                reason="no live holder",
                evidence={"ttl_s": self.ttl.total_seconds()},
            )
        return True

    def release(self) -> None:
        """Give the lease up so that another instance takes it at its next try."""
        if not self.held:
            return
        self.held = False
        with self.state.engine.begin() as con:
            con.execute(
                delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
            )


__all__ = ["CONTROLLER", "TTL_S", "Lease", "LeaseInfo", "holder_of", "instance_name"]
