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

Wall clocks and pauses can still leave an instance believing it holds a lease that another has
taken over (a process stopped for longer than ``ttl_s``, a clock that jumped). So the lease also
carries a **generation**, a fencing token raised by one each time the lease changes holder (and
never lowered: a released lease keeps its row, expired). A holder's writes that matter — the
rollback transaction, a rollout's step — call :meth:`Lease.check_in` inside their own database
transaction: it reads the lease row (locked on PostgreSQL, under the write lock on SQLite) and
refuses with :class:`LeaseLost` unless this holder and generation are still the lease's. Another
instance's takeover then waits for that transaction, or that transaction does nothing.

Leadership (``controller``) says which instance runs the loop; a second, short lease, ``tick``,
is the lock of one tick. The leader takes it around each of its ticks and a manual
``modelwarden rollout tick`` takes it around its own, so a tick by hand waits for the loop's tick
under way (or the loop skips its turn while the hand tick runs) and two ticks never overlap.
Ticks fence their writes with the ``tick`` lease's generation. Taking it is not audited (it
changes hands at every tick); the ``controller`` lease's changes of holder are.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, literal, select, update

from modelwarden.errors import ConflictError
from modelwarden.governance import audit
from modelwarden.store.state import StateStore, conflict_insert
from modelwarden.store.tables import UtcDateTime, leases

CONTROLLER = "controller"
# A killed holder's lease is taken over within TTL_S plus one renewal period.
TTL_S = 6.0
# The lock of one controller tick: the leader's loop takes it for each of its ticks and a manual
# ``rollout tick`` for its own, so ticks never overlap across instances. A tick running longer
# than TICK_TTL_S can be overtaken, and its later writes are then refused by the fence; a holder
# killed mid-tick delays the next tick by at most TICK_TTL_S.
TICK = "tick"
TICK_TTL_S = 30.0
# What a released lease expires at: long past, so that the next instance to try takes it.
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)


class LeaseLost(ConflictError):
    """This instance no longer holds the lease it acted under: another took it over."""

    code = "lease_lost"


def instance_name() -> str:
    """This process's name as a lease holder: host, process id and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "holder": self.holder,
            "acquired_at": self.acquired_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "generation": self.generation,
        }


def holder_of(state: StateStore, name: str = CONTROLLER) -> LeaseInfo | None:
    """The lease's current row (expired or not), or None if it was never taken or was released."""
    with state.engine.connect() as con:
        row = con.execute(select(leases).where(leases.c.name == name)).one_or_none()
    if row is None or not row.holder:
        return None
    return LeaseInfo(**row._mapping)


class Lease:
    """One instance's hold on the lease ``name``: call :meth:`acquire` more often than ``ttl_s``."""

    def __init__(
        self,
        state: StateStore,
        name: str = CONTROLLER,
        holder: str | None = None,
        ttl_s: float = TTL_S,
        clock: Callable[[], datetime] | None = None,
        audit_takes: bool = True,
    ) -> None:
        self.state = state
        self.audit_takes = audit_takes
        self.name = name
        self.holder = holder or instance_name()
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.held = False
        self.generation = 0

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
                    generation=case(
                        (c.holder == self.holder, c.generation), else_=c.generation + 1
                    ),
                )
                .returning(c.acquired_at, c.generation)
            ).one_or_none()
            if renewed is None:
                ins = conflict_insert(con.dialect.name, leases)
                taken = con.execute(
                    ins.values(
                        name=self.name,
                        holder=self.holder,
                        acquired_at=now,
                        expires_at=now + self.ttl,
                        generation=1,
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(c.acquired_at, c.generation)
                ).one_or_none()
                if taken is None:
                    return False
                acquired_at, generation = taken.acquired_at, taken.generation
            else:
                acquired_at, generation = renewed.acquired_at, renewed.generation
        self.held = True
        self.generation = int(generation)
        if acquired_at == now and self.audit_takes:
            audit.record(
                self.state,
                self.holder,
                "lease.take",
                self.name,
                reason="no live holder",
                evidence={"ttl_s": self.ttl.total_seconds(), "generation": self.generation},
            )
        return True

    def check_in(self, con: Connection) -> None:
        """Refuse (:class:`LeaseLost`) unless this holder still holds the lease at the generation
        it took, inside the caller's transaction ``con``: the fencing check of a write made under
        the lease. The row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's write lock, which
        :func:`modelwarden.governance.audit.transaction` takes first, does the same), so a
        takeover cannot land between this check and the caller's commit."""
        row = con.execute(
            select(leases.c.holder, leases.c.generation)
            .where(leases.c.name == self.name)
            .with_for_update()
        ).one_or_none()
        if row is None or row.holder != self.holder or int(row.generation) != self.generation:
            self.held = False
            now_by = (
                f"{row.holder} (generation {row.generation})" if row and row.holder else "nobody"
            )
            raise LeaseLost(
                f"the {self.name} lease (generation {self.generation}) was taken over; it is now "
                f"held by {now_by}: this instance no longer acts",
                field="lease",
            )

    def release(self) -> None:
        """Give the lease up so that another instance takes it at its next try.

        The row stays, expired and with no holder, so that its generation keeps rising."""
        if not self.held:
            return
        self.held = False
        with self.state.engine.begin() as con:
            con.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(holder="", expires_at=RELEASED)
            )


__all__ = [
    "CONTROLLER",
    "TICK",
    "TICK_TTL_S",
    "TTL_S",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "holder_of",
    "instance_name",
]
