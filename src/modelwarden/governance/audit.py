"""The audit log: append-only and hash-chained, so that an edited, deleted or inserted entry shows.

Every registry transition, route change, rollout decision, rollback step and approval appends one
entry ``(seq, at, actor, action, subject, reason, evidence, prev_hash, hash)`` where::

    hash = sha256(prev_hash + canonical_json({seq, at, actor, action, subject, reason, evidence}))

and ``prev_hash`` is the previous entry's hash (64 zeros for the first). Canonical JSON sorts keys,
uses no whitespace and keeps non-ASCII characters as they are (UTF-8).

A single head row (``audit_head``: the last seq and hash) is updated in the same transaction as
each append. Its update is the first statement of every transaction that appends, which takes the
database's write lock before anything is read: two writers can never both chain onto the same
entry (SQLite serialises on the lock, PostgreSQL on the row). The head also makes a truncated log
detectable. On SQLite, triggers refuse UPDATE and DELETE on the entries.

What the chain proves: nobody changed the log *without also recomputing every later hash and the
head*. Publishing the head hash elsewhere (the weekly report, a ticket) closes that gap.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from modelwarden.store.state import StateStore
from modelwarden.store.tables import GENESIS, audit_head, audit_log


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats become null, datetimes ISO strings, tuples and sets lists."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, Mapping):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [_clean(x) for x in v]
        return sorted(items, key=str) if isinstance(v, (set, frozenset)) else items
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if hasattr(v, "item"):  # numpy scalars
        return _clean(v.item())
    return str(v)


def canonical(obj: Any) -> str:
    return json.dumps(
        _clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_obj(obj: Any) -> Any:
    """``obj`` as it reads back from the log: JSON types only."""
    return json.loads(canonical(obj))


def iso(dt: datetime) -> str:
    """UTC, microseconds, ``Z``: one spelling per instant, so the hash does not depend on it."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    body = {k: entry[k] for k in ("seq", "at", "actor", "action", "subject", "reason", "evidence")}
    return hashlib.sha256(
        (prev_hash + canonical(body)).encode("utf-8", "surrogatepass")
    ).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    reason: str
    evidence: Any
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def lock(con: Connection) -> None:
    """Take the write lock first, so that what the transaction reads next cannot change under it."""
    con.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))


@contextmanager
def transaction(state: StateStore) -> Iterator[Connection]:
    """A write transaction that holds the database's write lock from its first statement."""
    with state.engine.begin() as con:
        lock(con)
        yield con


def append(
    con: Connection,
    actor: str,
    action: str,
    subject: str,
    reason: str = "",
    evidence: Any = None,
    at: datetime | None = None,
) -> Entry:
    """Append one entry inside the caller's transaction (opened with :func:`transaction`)."""
    lock(con)
    head = con.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).one()
    evidence_text = canonical(evidence if evidence is not None else {})
    entry = {
        "seq": int(head.seq) + 1,
        "at": iso(at or datetime.now(UTC)),
        "actor": actor,
        "action": action,
        "subject": subject,
        "reason": reason or "",
        "evidence": json.loads(evidence_text),
    }
    digest = entry_hash(head.hash, entry)
    con.execute(
        insert(audit_log).values(
            **{**entry, "evidence": evidence_text}, prev_hash=head.hash, hash=digest
        )
    )
    con.execute(
        update(audit_head).where(audit_head.c.id == 1).values(seq=entry["seq"], hash=digest)
    )
    return Entry(prev_hash=head.hash, hash=digest, **entry)


def record(
    state: StateStore,
    actor: str,
    action: str,
    subject: str,
    reason: str = "",
    evidence: Any = None,
    at: datetime | None = None,
) -> Entry:
    """Append one entry in a transaction of its own."""
    with transaction(state) as con:
        return append(con, actor, action, subject, reason, evidence, at)


def _entry(r: Any) -> Entry:
    try:
        evidence = json.loads(r.evidence)
    except ValueError:
        evidence = r.evidence
    return Entry(
        seq=r.seq,
        at=r.at,
        actor=r.actor,
        action=r.action,
        subject=r.subject,
        reason=r.reason,
        evidence=evidence,
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def entries(
    state: StateStore,
    *,
    subject: str | None = None,
    action: str | None = None,
    since_seq: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[Entry]:
    q = select(audit_log)
    if subject:
        q = q.where(audit_log.c.subject == subject)
    if action:
        q = q.where(audit_log.c.action.like(action.replace("*", "%")))
    if since_seq is not None:
        q = q.where(audit_log.c.seq >= since_seq)
    q = q.order_by(audit_log.c.seq.desc() if newest_first else audit_log.c.seq)
    if limit:
        q = q.limit(limit)
    with state.engine.connect() as con:
        return [_entry(r) for r in con.execute(q)]


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify(state: StateStore, batch: int = 5000) -> Verification:
    """Recompute the whole chain; name the first entry that does not fit, and why."""
    with state.engine.connect() as con:
        head = con.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one()
        prev, expected, n = GENESIS, 1, 0
        last = 0
        while True:
            rows = con.execute(
                select(audit_log)
                .where(audit_log.c.seq > last)
                .order_by(audit_log.c.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for r in rows:
                n += 1
                last = r.seq
                bad = _check(r, expected, prev)
                if bad is not None:
                    return Verification(False, n, head.seq, head.hash, bad[0], bad[1])
                prev, expected = r.hash, r.seq + 1
    if last != head.seq or prev != head.hash:
        return Verification(
            False,
            n,
            head.seq,
            head.hash,
            last + 1,
            f"the log ends at seq {last} but its head records seq {head.seq}: "
            "entries were removed from the end",
        )
    return Verification(True, n, head.seq, head.hash)


def _check(r: Any, expected: int, prev: str) -> tuple[int, str] | None:
    if r.seq != expected:
        return expected, f"seq {expected} is missing (the next entry is seq {r.seq})"
    if r.prev_hash != prev:
        return r.seq, f"prev_hash does not match the hash of seq {r.seq - 1}"
    try:
        evidence = json.loads(r.evidence)
    except ValueError:
        return r.seq, "evidence is not valid JSON"
    entry = {
        "seq": r.seq,
        "at": r.at,
        "actor": r.actor,
        "action": r.action,
        "subject": r.subject,
        "reason": r.reason,
        "evidence": evidence,
    }
    if entry_hash(r.prev_hash, entry) != r.hash:
        return r.seq, "the entry's content does not match its hash"
    return None


__all__ = [
    "GENESIS",
    "Entry",
    "Verification",
    "append",
    "audit_head",
    "audit_log",
    "canonical",
    "canonical_obj",
    "entries",
    "entry_hash",
    "iso",
    "record",
    "transaction",
    "verify",
]
