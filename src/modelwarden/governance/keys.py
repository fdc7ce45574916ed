"""API keys with roles, kept hashed in the state store.

A key is shown once, when it is created (``modelwarden keys create --role ROLE``); the store keeps
only its SHA-256. A fast hash is enough because keys are 256 random bits, not passwords: there is
nothing to guess from a dictionary.

Roles and what they may do:

==========  ===========================================================================
ingest      send logs, feedback, escalations and traces; chat through the gateway
operator    everything ``ingest`` may; change the gateway's routes; register, promote and
            quarantine versions; run rollouts; resolve incidents; ask for a release
reviewer    send feedback and escalations; submit reviews as itself (its ``--name``)
approver    send feedback and escalations; ask for and approve a release (never its own)
admin       everything but approving a release (that needs the approver role),
            including creating and revoking keys
==========  ===========================================================================

A key bound to a plant (``--plant``) writes that plant's records only: a request record for
another plant is rejected (field ``plant_id``) and the valid records beside it are stored.

Bootstrap: the first admin key is created from the CLI on the machine that holds the data
directory (``modelwarden keys create --role admin``), which needs no key while no admin key
exists. From then on, creating or revoking a key of any role above ``ingest`` needs an admin key
(``--key`` or ``MODELWARDEN_KEY``).

Refusals are audited (``http.refused`` by the server's error handler; ``auth.refused`` for the
gateway and for records of another plant; ``auth.rate_limited``, ``auth.budget_spent``). Repeated failed authentication
from one client address or with one key prefix is answered 429 with ``Retry-After`` for a while
(:class:`AuthThrottle`), and a key may carry a request budget per minute and per hour
(``keys create --per-minute N --per-hour N``), counted by each server process.

Reads (KPIs, drift, reports, routes, metrics) need no key; the server binds to loopback unless
told otherwise. Every request that writes needs a key, with one exception: the chat gateway
follows the ``gateway_auth`` setting. ``off`` (the default) answers any client, so that pointing a
client at it is the whole setup on a single machine (a known key still binds its plant);
``required`` asks every chat request for a key with role ``ingest``, ``operator`` or ``admin``.
Issuing a key never changes this by itself; ``serve`` warns when keys exist and it is ``off``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from modelwarden.errors import InputError, NotFoundError, WardenError
from modelwarden.governance import audit
from modelwarden.store.state import UNREACHABLE, StateStore, unavailable
from modelwarden.store.tables import api_key_budgets, api_keys

log = logging.getLogger("modelwarden.governance.keys")

ROLES: tuple[str, ...] = ("ingest", "operator", "reviewer", "approver", "admin")
KEY_PREFIX = "mw_"

# Which roles may perform each kind of write.
PERMISSIONS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest", "operator", "admin"}),
    "events": frozenset({"ingest", "operator", "reviewer", "approver", "admin"}),
    "routes": frozenset({"operator", "admin"}),
    "gateway": frozenset({"ingest", "operator", "admin"}),
    "registry": frozenset({"operator", "admin"}),
    "release": frozenset({"operator", "approver", "admin"}),
    "approve": frozenset({"approver"}),
    "rollout": frozenset({"operator", "admin"}),
    "incidents": frozenset({"operator", "admin"}),
    "review": frozenset({"reviewer", "approver", "operator", "admin"}),
    "keys": frozenset({"admin"}),
}
SUGGESTED_ROLE = {
    "ingest": "ingest",
    "events": "ingest",
    "routes": "operator",
    "gateway": "ingest",
    "registry": "operator",
    "release": "operator",
    "approve": "approver",
    "rollout": "operator",
    "incidents": "operator",
    "review": "reviewer",
    "keys": "admin",
}
# Roles that act as one person: their key's name is who they are.
PERSONAL_ROLES = frozenset({"reviewer", "approver"})


def may(role: str, action: str) -> bool:
    """Whether a key with ``role`` may perform ``action`` (what the console shows and allows)."""
    return role in PERMISSIONS[action]


class AuthError(WardenError):
    code = "unauthorized"
    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(WardenError):
    code = "forbidden"
    http_status = 403


class RateLimited(WardenError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: float, **details: Any) -> None:
        super().__init__(message, retry_after_s=math.ceil(retry_after), **details)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str | None
    role: str
    plant_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    per_minute: int | None = None
    per_hour: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "plant_id": self.plant_id,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "per_minute": self.per_minute,
            "per_hour": self.per_hour,
        }

    @property
    def actor(self) -> str:
        return f"key {self.id} ({self.name or self.role})"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(r: Any, budget: Any = None) -> ApiKey:
    return ApiKey(
        id=r.id,
        name=r.name,
        role=r.role,
        plant_id=r.plant_id,
        prefix=r.prefix,
        created_at=r.created_at,
        revoked_at=r.revoked_at,
        per_minute=budget.per_minute if budget is not None else None,
        per_hour=budget.per_hour if budget is not None else None,
    )


def _with_budget(con: Any, r: Any) -> ApiKey:
    budget = con.execute(
        select(api_key_budgets).where(api_key_budgets.c.key_id == r.id)
    ).one_or_none()
    return _row(r, budget)


def admin_exists(state: StateStore) -> bool:
    with state.engine.connect() as con:
        q = select(api_keys.c.id).where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
        return con.execute(q.limit(1)).first() is not None


def lookup_secret(state: StateStore, secret: str) -> ApiKey | None:
    """The active key behind ``secret``, or None."""
    with state.engine.connect() as con:
        row = con.execute(
            select(api_keys).where(
                api_keys.c.key_hash == hash_key(secret.strip()), api_keys.c.revoked_at.is_(None)
            )
        ).one_or_none()
        return _with_budget(con, row) if row is not None else None


def _admin_check(state: StateStore, by: str | None, what: str, role: str | None) -> str:
    """The actor allowed to change keys, or an audited refusal.

    While no admin key exists, the CLI on the machine may create keys (the bootstrap); after
    that, anything above ``ingest`` needs an admin key.
    """
    needs_admin = admin_exists(state) and (role is None or role != "ingest")
    key = lookup_secret(state, by) if by else None
    if by and key is None:
        audit.record(state, "cli", "auth.refused", what, "unknown or revoked API key")
        raise AuthError("unknown or revoked API key")
    if needs_admin and (key is None or key.role != "admin"):
        reason = (
            "an admin key exists, so this needs one: --key KEY or MODELWARDEN_KEY with role admin"
        )
        audit.record(
            state,
            key.actor if key else "cli",
            "auth.refused",
            what,
            reason,
            {"role": key.role if key else None},
        )
        raise ForbiddenError(reason, field="key")
    return key.actor if key else "cli"


def require(state: StateStore, secret: str | None, action: str, subject: str) -> ApiKey:
    """The key behind ``secret`` if its role may ``action`` (for commands run on the machine);
    otherwise an audited refusal."""
    key = lookup_secret(state, secret) if secret else None
    allowed = PERMISSIONS[action]
    if key is not None and key.role in allowed:
        return key
    if not secret:
        exc: WardenError = AuthError(
            "this needs an API key: --key KEY or MODELWARDEN_KEY (create one with: "
            f"modelwarden keys create --role {SUGGESTED_ROLE[action]})"
        )
    elif key is None:
        exc = AuthError("unknown or revoked API key")
    else:
        exc = ForbiddenError(
            f"a key with role {key.role!r} may not do this; it needs one of "
            f"{', '.join(sorted(allowed))}",
            role=key.role,
            allowed=sorted(allowed),
        )
    exc.field = "key"
    audit.record(
        state,
        key.actor if key else "cli",
        "auth.refused",
        subject,
        exc.message,
        {"action": action, "prefix": key.prefix if key else None},
    )
    raise exc


def create_key(
    state: StateStore,
    role: str,
    name: str | None = None,
    plant: str | None = None,
    *,
    by: str | None = None,
    per_minute: int | None = None,
    per_hour: int | None = None,
) -> tuple[str, ApiKey]:
    """A new key: returns the secret (shown once) and its stored description.

    ``by`` is the secret of the key that asks; once an admin key exists, every role above
    ``ingest`` needs an admin key's.
    """
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
    for field_name, v in (("per_minute", per_minute), ("per_hour", per_hour)):
        if v is not None and v < 1:
            raise InputError(f"{field_name} must be at least 1", field=field_name)
    actor = _admin_check(state, by, "keys.create", role)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with audit.transaction(state) as con:
        res = con.execute(
            insert(api_keys).values(
                name=name,
                role=role,
                plant_id=plant,
                key_hash=hash_key(secret),
                prefix=secret[: len(KEY_PREFIX) + 6],
                created_at=datetime.now(UTC),
            )
        )
        assert res.inserted_primary_key is not None
        key_id = res.inserted_primary_key[0]
        if per_minute is not None or per_hour is not None:
            con.execute(
                insert(api_key_budgets).values(
                    key_id=key_id, per_minute=per_minute, per_hour=per_hour
                )
            )
        key = _with_budget(con, con.execute(select(api_keys).where(api_keys.c.id == key_id)).one())
        audit.append(
            con,
            actor,
            "keys.create",
            f"key {key.id}",
            "",
            {"role": role, "name": name, "plant_id": plant, "prefix": key.prefix},
        )
    return secret, key


def list_keys(state: StateStore) -> list[ApiKey]:
    with state.engine.connect() as con:
        rows = con.execute(select(api_keys).order_by(api_keys.c.id)).all()
        return [_with_budget(con, r) for r in rows]


def revoke_key(state: StateStore, key_id: int, *, by: str | None = None) -> ApiKey:
    actor = _admin_check(state, by, "keys.revoke", None)
    with audit.transaction(state) as con:
        res = con.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        row = con.execute(select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
        if row is None or (res.rowcount == 0 and row.revoked_at is None):
            raise NotFoundError(f"no API key with id {key_id}", field="id")
        if res.rowcount:
            audit.append(con, actor, "keys.revoke", f"key {key_id}", "", {"role": row.role})
    return _row(row)


class AuthThrottle:
    """Failed authentication counted per client address and per key prefix.

    After ``max_failures`` failures within ``window_s`` seconds, that address (or prefix) is
    answered 429 with ``Retry-After`` until ``block_s`` seconds have passed, key or no key: a
    guessing client learns nothing more. Counts live in the server process.
    """

    MAX_TRACKED = 20_000

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, block_s: float = 60.0):
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, *subjects: str | None, now: float | None = None) -> None:
        if not self._blocked:
            return
        now = time.monotonic() if now is None else now
        for subject in subjects:
            if subject is None:
                continue
            until = self._blocked.get(subject)
            if until is not None:
                if now < until:
                    raise RateLimited(
                        "too many failed authentication attempts; try again later",
                        until - now,
                        subject=subject.split(":", 1)[0],
                    )
                with self._lock:
                    self._blocked.pop(subject, None)

    def _bound(self, now: float) -> None:
        """Forget what no longer counts once more than MAX_TRACKED clients are tracked, so that
        clients spraying from ever new addresses cannot grow the counts without bound."""
        if len(self._failures) > self.MAX_TRACKED:
            self._failures = {
                k: q for k, q in self._failures.items() if q and q[-1] > now - self.window_s
            }
            if len(self._failures) > self.MAX_TRACKED:
                self._failures.clear()
        if len(self._blocked) > self.MAX_TRACKED:
            # Blocks run out by themselves; only a still-running block is kept.
            self._blocked = {k: until for k, until in self._blocked.items() if until > now}

    def tracked(self) -> tuple[int, int]:
        """Clients with failures counted, and clients blocked (expired blocks included)."""
        with self._lock:
            return len(self._failures), len(self._blocked)

    def fail(self, *subjects: str | None, now: float | None = None) -> list[str]:
        """Count one failure; returns the subjects that are blocked from now on."""
        now = time.monotonic() if now is None else now
        newly: list[str] = []
        with self._lock:
            self._bound(now)
            for subject in subjects:
                if subject is None:
                    continue
                q = self._failures.setdefault(subject, deque())
                q.append(now)
                while q and q[0] <= now - self.window_s:
                    q.popleft()
                if len(q) >= self.max_failures and subject not in self._blocked:
                    self._blocked[subject] = now + self.block_s
                    self._failures.pop(subject, None)
                    newly.append(subject)
        return newly


class Budgets:
    """Requests per key in fixed minute and hour windows, for keys that carry a budget."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str, int], int] = {}
        self._lock = threading.Lock()

    def spend(self, key: ApiKey, now: float | None = None) -> bool:
        """Count one request; raises :class:`RateLimited` past the budget. True on the first
        refusal of a window (worth an audit entry)."""
        if key.per_minute is None and key.per_hour is None:
            return False
        now = time.time() if now is None else now
        with self._lock:
            for unit, seconds, limit in (
                ("minute", 60, key.per_minute),
                ("hour", 3600, key.per_hour),
            ):
                if limit is None:
                    continue
                window = int(now // seconds)
                slot = (key.id, unit, window)
                used = self._counts.get(slot, 0)
                if used >= limit:
                    self._counts[slot] = used + 1
                    raise RateLimited(
                        f"this key's budget of {limit} requests per {unit} is spent",
                        (window + 1) * seconds - now,
                        budget=unit,
                        limit=limit,
                    )
            for unit, seconds, limit in (
                ("minute", 60, key.per_minute),
                ("hour", 3600, key.per_hour),
            ):
                if limit is None:
                    continue
                slot = (key.id, unit, int(now // seconds))
                self._counts[slot] = self._counts.get(slot, 0) + 1
            if len(self._counts) > 100_000:
                self._counts = {
                    k: v for k, v in self._counts.items() if k[2] >= int(now // 3600) - 1
                }
        return False


class RefusalLog:
    """Audit entries for refusals, written by a background thread so the request is not held."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._queue: queue.Queue[tuple[str, str, str, str, dict[str, Any]]] = queue.Queue(10_000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(
        self, actor: str, action: str, subject: str, reason: str, evidence: dict[str, Any]
    ) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="refusal-audit", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((actor, action, subject, reason, evidence))
        except queue.Full:
            log.warning("refusal audit queue full; dropped: %s %s %s", action, subject, reason)

    def flush(self) -> None:
        """Wait until every queued refusal is written."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                audit.record(self.state, *item)
            except Exception:  # the refusal stands; the log says why its entry is missing
                log.exception("could not audit a refusal")
            finally:
                self._queue.task_done()


class KeyRing:
    """Looks keys up by hash, caching answers for ``ttl`` seconds.

    A revoked key stops working within ``ttl``; a lookup per request would put the state store
    on the gateway's hot path. Also counts failed authentication (:class:`AuthThrottle`), spends
    key budgets (:class:`Budgets`) and audits every refusal (:class:`RefusalLog`).
    """

    MAX_CACHED = 10_000

    def __init__(
        self, state: StateStore, ttl: float = 1.0, throttle: AuthThrottle | None = None
    ) -> None:
        self.state = state
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()
        self.throttle = throttle or AuthThrottle()
        self.budgets = Budgets()
        self.refusals = RefusalLog(state)

    def any_keys(self) -> bool:
        now = time.monotonic()
        expires, value = self._any
        if now < expires:
            return value
        try:
            with self.state.engine.connect() as con:
                value = con.execute(select(api_keys.c.id).limit(1)).first() is not None
        except UNREACHABLE as exc:
            if expires == 0.0:
                raise unavailable(self.state.engine, exc) from exc
            return value  # the last answer stands while the state store is away
        self._any = (now + self.ttl, value)
        return value

    def lookup(self, secret: str) -> ApiKey | None:
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1]
        try:
            with self.state.engine.connect() as con:
                row = con.execute(
                    select(api_keys).where(
                        api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                    )
                ).one_or_none()
                key = _with_budget(con, row) if row is not None else None
        except UNREACHABLE as exc:
            # While the state store is away, a key seen before keeps its last answer, so that
            # ingest and the gateway go on; one never seen cannot be checked.
            if hit is None:
                raise unavailable(self.state.engine, exc) from exc
            return hit[1]
        with self._lock:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, key)
        return key

    def by_id(self, key_id: int) -> ApiKey | None:
        """A live (not revoked) key by its id, cached like :meth:`lookup`."""
        now = time.monotonic()
        tag = f"id:{key_id}"
        hit = self._cache.get(tag)
        if hit is not None and now < hit[0]:
            return hit[1]
        try:
            with self.state.engine.connect() as con:
                row = con.execute(
                    select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                ).one_or_none()
        except UNREACHABLE as exc:
            if hit is None:
                raise unavailable(self.state.engine, exc) from exc
            return hit[1]
        key = _row(row) if row is not None else None
        with self._lock:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[tag] = (now + self.ttl, key)
        return key

    @staticmethod
    def may(role: str, action: str) -> bool:
        return may(role, action)

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._any = (0.0, False)

    def _refuse(
        self, exc: WardenError, action: str, client: str | None, prefix: str | None
    ) -> WardenError:
        subjects = (f"addr:{client}" if client else None, f"prefix:{prefix}" if prefix else None)
        evidence = {"client": client, "prefix": prefix, "status": exc.http_status}
        if action == "gateway":
            # The gateway answers ahead of the app's error handler, which audits the others.
            self.refusals.add(
                f"client {client or 'unknown'}", "auth.refused", action, exc.message, evidence
            )
        for subject in self.throttle.fail(*subjects):
            self.refusals.add(
                f"client {client or 'unknown'}",
                "auth.rate_limited",
                subject,
                f"{self.throttle.max_failures} failed authentications within "
                f"{self.throttle.window_s:g} s; refused for {self.throttle.block_s:g} s",
                evidence,
            )
        return exc

    def authorize(
        self,
        authorization: str | None,
        action: str,
        *,
        optional: bool = False,
        client: str | None = None,
    ) -> ApiKey | None:
        """The caller's key if its role may perform ``action``; else 401, 403 or 429.

        With ``optional`` (the chat gateway with ``gateway_auth: off``) every request is let
        through: a known key is still returned, so its plant binding applies, and a missing or
        unknown one (OpenAI clients always send some key) gives None. ``client`` is the
        caller's address, for counting failed attempts.
        """
        secret = bearer(authorization)
        if optional:
            return self.lookup(secret) if secret else None
        prefix = secret[: len(KEY_PREFIX) + 6] if secret else None
        self.throttle.check(
            f"addr:{client}" if client else None, f"prefix:{prefix}" if prefix else None
        )
        if secret is None:
            raise self._refuse(
                AuthError(
                    "this request needs an API key: send 'Authorization: Bearer KEY' "
                    f"(create one with: modelwarden keys create --role {SUGGESTED_ROLE[action]})"
                ),
                action,
                client,
                None,
            )
        key = self.lookup(secret)
        if key is None:
            raise self._refuse(AuthError("unknown or revoked API key"), action, client, prefix)
        allowed = PERMISSIONS[action]
        if key.role not in allowed:
            raise self._refuse(
                ForbiddenError(
                    f"a key with role {key.role!r} may not do this; it needs one of "
                    f"{', '.join(sorted(allowed))}",
                    role=key.role,
                    allowed=sorted(allowed),
                ),
                action,
                client,
                prefix,
            )
        try:
            self.budgets.spend(key)
        except RateLimited as exc:
            self.refusals.add(
                key.actor, "auth.budget_spent", action, exc.message, {"client": client}
            )
            raise
        return key

    def refuse(
        self, exc: WardenError, key: ApiKey | None, action: str, client: str | None
    ) -> WardenError:
        """Audit a refusal decided after authorization (a plant or identity mismatch)."""
        self.refusals.add(
            key.actor if key else f"client {client or 'unknown'}",
            "auth.refused",
            action,
            exc.message,
            {"client": client, "prefix": key.prefix if key else None, "status": exc.http_status},
        )
        return exc


def gateway_auth_warning(state: StateStore, gateway_auth: str) -> str | None:
    """What ``serve`` says at start when API keys exist but the chat gateway does not ask for
    one (so keys are only checked on the rest of the API)."""
    if gateway_auth != "off":
        return None
    with state.engine.connect() as con:
        n = con.execute(
            select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
        ).scalar_one()
    if not n:
        return None
    return (
        f"{n} API key(s) exist but gateway auth is off: /v1/chat/completions answers any "
        "client. Require a key with --gateway-auth required (or MODELWARDEN_GATEWAY_AUTH=required)."
    )


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


__all__ = [
    "PERMISSIONS",
    "ROLES",
    "ApiKey",
    "AuthError",
    "AuthThrottle",
    "Budgets",
    "ForbiddenError",
    "KeyRing",
    "RateLimited",
    "admin_exists",
    "create_key",
    "gateway_auth_warning",
    "hash_key",
    "list_keys",
    "lookup_secret",
    "may",
    "require",
    "revoke_key",
]
