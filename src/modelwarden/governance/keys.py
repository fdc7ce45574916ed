"""API keys with roles, kept hashed in the state store.

A key is shown once, when it is created (``modelwarden keys create --role ROLE``); the store keeps
only its SHA-256. A fast hash is enough because keys are 256 random bits, not passwords: there is
nothing to guess from a dictionary.

Roles and what they may do over HTTP:

==========  ===========================================================================
ingest      send logs, feedback, escalations and traces; chat through the gateway
operator    everything ``ingest`` may; change the gateway's routes; register, promote and
            quarantine versions; run rollouts; resolve incidents; ask for a release
reviewer    send feedback and escalations; review
approver    send feedback and escalations; ask for and approve a release (never its own)
admin       everything but approving a release (that needs the approver role)
==========  ===========================================================================

Reads (KPIs, drift, reports, routes, metrics) need no key; the server binds to loopback unless
told otherwise. Every request that writes needs a key, with one exception: the chat gateway
serves without a key until the first key exists, so that pointing a client at it is the whole
setup on a single machine; once any key exists, it requires one with role ``ingest``,
``operator`` or ``admin``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from modelwarden.errors import InputError, NotFoundError, WardenError
from modelwarden.store.state import StateStore
from modelwarden.store.tables import api_keys

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
}


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


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str | None
    role: str
    plant_id: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "plant_id": self.plant_id,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _row(r: Any) -> ApiKey:
    return ApiKey(
        id=r.id,
        name=r.name,
        role=r.role,
        plant_id=r.plant_id,
        prefix=r.prefix,
        created_at=r.created_at,
        revoked_at=r.revoked_at,
    )


def create_key(
    state: StateStore, role: str, name: str | None = None, plant: str | None = None
) -> tuple[str, ApiKey]:
    """A new key: returns the secret (shown once) and its stored description."""
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}", field="role")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with state.engine.begin() as con:
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
        row = con.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
    return secret, _row(row)


def list_keys(state: StateStore) -> list[ApiKey]:
    with state.engine.connect() as con:
        return [_row(r) for r in con.execute(select(api_keys).order_by(api_keys.c.id))]


def revoke_key(state: StateStore, key_id: int) -> ApiKey:
    with state.engine.begin() as con:
        res = con.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        row = con.execute(select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no API key with id {key_id}", field="id")
    if res.rowcount == 0 and row.revoked_at is None:
        raise NotFoundError(f"no API key with id {key_id}", field="id")
    return _row(row)


class KeyRing:
    """Looks keys up by hash, caching answers for ``ttl`` seconds.

    A revoked key stops working within ``ttl``; a lookup per request would put the state store
    on the gateway's hot path.
    """

    MAX_CACHED = 10_000

    def __init__(self, state: StateStore, ttl: float = 1.0) -> None:
        self.state = state
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._any: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    def any_keys(self) -> bool:
        now = time.monotonic()
        expires, value = self._any
        if now < expires:
            return value
        with self.state.engine.connect() as con:
            value = con.execute(select(api_keys.c.id).limit(1)).first() is not None
        self._any = (now + self.ttl, value)
        return value

    def lookup(self, secret: str) -> ApiKey | None:
        digest = hash_key(secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1]
        with self.state.engine.connect() as con:
            row = con.execute(
                select(api_keys).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
                )
            ).one_or_none()
        key = _row(row) if row is not None else None
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
        with self.state.engine.connect() as con:
            row = con.execute(
                select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            ).one_or_none()
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

    def authorize(
        self, authorization: str | None, action: str, *, optional_without_keys: bool = False
    ) -> ApiKey | None:
        """The caller's key if its role may perform ``action``; else 401 or 403.

        With ``optional_without_keys``, every request is let through while no key exists at
        all (the gateway's single-machine setup).
        """
        if optional_without_keys and not self.any_keys():
            # OpenAI clients always send some key; with no keys issued there is nothing to check.
            return None
        secret = bearer(authorization)
        if secret is None:
            raise AuthError(
                "this request needs an API key: send 'Authorization: Bearer KEY' "
                f"(create one with: modelwarden keys create --role {SUGGESTED_ROLE[action]})"
            )
        key = self.lookup(secret)
        if key is None:
            raise AuthError("unknown or revoked API key")
        allowed = PERMISSIONS[action]
        if key.role not in allowed:
            raise ForbiddenError(
                f"a key with role {key.role!r} may not do this; it needs one of "
                f"{', '.join(sorted(allowed))}",
                role=key.role,
                allowed=sorted(allowed),
            )
        return key


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
    "ForbiddenError",
    "KeyRing",
    "create_key",
    "hash_key",
    "list_keys",
    "may",
    "revoke_key",
]
