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

The hash chain alone proves only that nobody changed the log *without also recomputing every later
hash and the head*, which anyone who can write the database can do. So each entry also carries a
keyed MAC (``audit_mac``)::

    mac = HMAC-SHA256(audit_key, prev_link + "\n" + hash)

where ``prev_link`` is the previous entry's MAC (its hash for an entry written before MACs
existed, 64 zeros for the first). The key is a file outside the state store
(``SECRETS/audit.key``, 0600; :meth:`StateStore.secret`), so a chain recomputed without it
shows. A truncated tail is caught by *checkpoints*: :func:`checkpoint` signs the head (seq, hash,
MAC) with the same key and exports it to a file (``SECRETS/audit-checkpoints.jsonl`` by default)
and, when configured, the notification outbox; :func:`verify` compares the log with the last one.

Entries written before MACs existed verify by the hash rule alone and are reported as
``legacy_entries``; once one entry has a MAC, every later one must have one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
    update,
)

from modelwarden.store.state import StateStore
from modelwarden.store.tables import GENESIS, audit_head, audit_log, audit_mac

KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit-checkpoints.jsonl"
ENV_CHECKPOINTS = "MODELWARDEN_AUDIT_CHECKPOINTS"


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


def audit_key(state: StateStore) -> bytes:
    return state.secret(KEY_FILE)


def _state_of(con: Connection) -> StateStore:
    state: StateStore = con.engine.modelwarden_state  # type: ignore[attr-defined]
    return state


def entry_mac(key: bytes, prev_link: str, digest: str) -> str:
    return hmac.new(key, f"{prev_link}\n{digest}".encode(), hashlib.sha256).hexdigest()


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
    mac: str | None = None

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
    key = audit_key(_state_of(con))
    prev_mac = None
    if head.seq:
        prev_mac = con.execute(
            select(audit_mac.c.mac).where(audit_mac.c.seq == head.seq)
        ).scalar_one_or_none()
    mac = entry_mac(key, prev_mac or head.hash, digest)
    con.execute(
        insert(audit_log).values(
            **{**entry, "evidence": evidence_text}, prev_hash=head.hash, hash=digest
        )
    )
    con.execute(insert(audit_mac).values(seq=entry["seq"], mac=mac))
    con.execute(
        update(audit_head).where(audit_head.c.id == 1).values(seq=entry["seq"], hash=digest)
    )
    return Entry(prev_hash=head.hash, hash=digest, mac=mac, **entry)


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
        mac=getattr(r, "mac", None),
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
    q = select(audit_log, audit_mac.c.mac).outerjoin(audit_mac, audit_mac.c.seq == audit_log.c.seq)
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
    legacy_entries: int = 0
    checkpoint: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def checkpoint_path(state: StateStore, path: Path | None = None) -> Path:
    if path is not None:
        return path
    if os.environ.get(ENV_CHECKPOINTS):
        return Path(os.environ[ENV_CHECKPOINTS])
    if state.secrets_dir is None:
        raise OSError("no directory for secrets; set MODELWARDEN_SECRETS")
    return state.secrets_dir / CHECKPOINT_FILE


def _sign(key: bytes, body: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()


def checkpoint(
    state: StateStore, path: Path | None = None, at: datetime | None = None
) -> dict[str, Any]:
    """Sign the head (seq, hash, MAC) with the audit key and append it to the checkpoint file.

    Returns the checkpoint; :func:`modelwarden.governance.notify.enqueue_event` sends it to the
    notification channels as well when the caller has them.
    """
    with state.engine.connect() as con:
        head = con.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one()
        mac = con.execute(
            select(audit_mac.c.mac).where(audit_mac.c.seq == head.seq)
        ).scalar_one_or_none()
    body = {"seq": int(head.seq), "hash": head.hash, "mac": mac, "at": iso(at or datetime.now(UTC))}
    out = {**body, "signature": _sign(audit_key(state), body)}
    target = checkpoint_path(state, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(canonical(out) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return out


def last_checkpoint(
    state: StateStore, path: Path | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The last checkpoint whose signature holds, and a problem with the file if any."""
    try:
        target = checkpoint_path(state, path)
        lines = target.read_text(encoding="utf-8").splitlines() if target.exists() else []
    except OSError as exc:
        return None, f"cannot read the checkpoints ({exc})"
    key = audit_key(state)
    for line in reversed([ln for ln in lines if ln.strip()]):
        try:
            cp = json.loads(line)
            body = {k: cp[k] for k in ("seq", "hash", "mac", "at")}
        except (ValueError, KeyError, TypeError):
            return None, "the last checkpoint is not readable"
        if not hmac.compare_digest(_sign(key, body), str(cp.get("signature", ""))):
            return None, f"the checkpoint of seq {body['seq']} has a bad signature"
        return cp, None
    return None, None


def verify(state: StateStore, batch: int = 5000, checkpoints: Path | None = None) -> Verification:
    """Recompute the whole chain, hashes and MACs; compare it with the last checkpoint.

    Names the first entry that does not fit, and why: an edited entry (its hash), a chain
    recomputed without the key (its MAC), entries removed from the end (the head or the
    checkpoint).
    """
    key = audit_key(state)
    cp, cp_problem = last_checkpoint(state, checkpoints)
    notes: list[str] = []
    with state.engine.connect() as con:
        head = con.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).one()

        def fail(seq: int | None, problem: str) -> Verification:
            return Verification(False, n, head.seq, head.hash, seq, problem, legacy, cp, notes)

        prev, link, expected, n, legacy, last = GENESIS, GENESIS, 1, 0, 0, 0
        keyed = False
        cp_row: tuple[str, str | None] | None = None
        while True:
            rows = con.execute(
                select(audit_log, audit_mac.c.mac)
                .outerjoin(audit_mac, audit_mac.c.seq == audit_log.c.seq)
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
                    return fail(*bad)
                if r.mac is None:
                    if keyed:
                        return fail(
                            r.seq,
                            "the entry has no MAC although earlier entries do: it was written "
                            "without the audit key, or its MAC was removed",
                        )
                    legacy += 1
                    link = r.hash
                else:
                    keyed = True
                    if not hmac.compare_digest(entry_mac(key, link, r.hash), r.mac):
                        return fail(
                            r.seq,
                            "the entry's MAC does not match: the chain was recomputed without "
                            "the audit key (or the key is not this installation's)",
                        )
                    link = r.mac
                if cp is not None and r.seq == cp["seq"]:
                    cp_row = (r.hash, r.mac)
                prev, expected = r.hash, r.seq + 1
    if last != head.seq or prev != head.hash:
        return fail(
            last + 1,
            f"the log ends at seq {last} but its head records seq {head.seq}: "
            "entries were removed from the end",
        )
    if cp_problem is not None:
        return fail(None, cp_problem)
    if cp is not None:
        if cp["seq"] > last:
            return fail(
                last + 1,
                f"the log ends at seq {last} but the checkpoint of {cp['at']} records seq "
                f"{cp['seq']}: entries were removed from the end",
            )
        if cp["seq"] > 0 and cp_row != (cp["hash"], cp["mac"]):
            return fail(
                cp["seq"],
                f"seq {cp['seq']} differs from the checkpoint of {cp['at']}: the log was "
                "rewritten after it",
            )
    else:
        notes.append("no checkpoint yet: a truncated tail shows only against the head")
    if legacy:
        notes.append(
            f"{legacy} entr{'y' if legacy == 1 else 'ies'} written before MACs existed "
            "verified by the hash rule alone"
        )
    return Verification(True, n, head.seq, head.hash, None, None, legacy, cp, notes)


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
    "audit_key",
    "audit_log",
    "audit_mac",
    "canonical",
    "canonical_obj",
    "checkpoint",
    "entries",
    "entry_hash",
    "iso",
    "last_checkpoint",
    "record",
    "transaction",
    "verify",
]
