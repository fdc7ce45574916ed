"""Console sessions: an API key exchanged for a session, kept server side.

Signing in to the console with an API key opens a session: a random id (the cookie's value, kept
here only as its SHA-256), the key it stands for, a CSRF token every form must echo, and an
expiry. The key's role is looked up on every request, so revoking the key ends its sessions at
once; signing out deletes the session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select

from modelwarden.governance import audit
from modelwarden.governance.keys import ApiKey, AuthError, KeyRing, hash_key
from modelwarden.store.state import StateStore
from modelwarden.store.tables import console_sessions

DEFAULT_TTL = timedelta(hours=8)


@dataclass(frozen=True)
class Session:
    key: ApiKey
    csrf: str
    expires_at: datetime


def open_session(
    state: StateStore, secret: str, ttl: timedelta = DEFAULT_TTL
) -> tuple[str, Session]:
    """A new session for the key behind ``secret``: (cookie value, session); 401 if unknown."""
    key = KeyRing(state, ttl=0).lookup(secret.strip()) if secret.strip() else None
    if key is None:
        raise AuthError("unknown or revoked API key")
    sid = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    expires = now + ttl
    with audit.transaction(state) as con:
        con.execute(delete(console_sessions).where(console_sessions.c.expires_at < now))
        con.execute(
            insert(console_sessions).values(
                id_hash=hash_key(sid), key_id=key.id, csrf=csrf, created_at=now, expires_at=expires
            )
        )
        audit.append(
            con,
            f"key {key.id} ({key.name or key.role})",
            "console.sign_in",
            "console",
            "",
            {"key_id": key.id, "role": key.role, "expires_at": expires.isoformat()},
            at=now,
        )
    return sid, Session(key, csrf, expires)


def get_session(state: StateStore, sid: str | None, keys: KeyRing) -> Session | None:
    """The live session behind a cookie value, else None (expired, signed out, key revoked)."""
    if not sid:
        return None
    with state.engine.connect() as con:
        row = con.execute(
            select(console_sessions).where(console_sessions.c.id_hash == hash_key(sid))
        ).one_or_none()
    if row is None or row.expires_at <= datetime.now(UTC):
        return None
    key = keys.by_id(row.key_id)
    if key is None:
        return None
    return Session(key, row.csrf, row.expires_at)


def close_session(state: StateStore, sid: str | None) -> None:
    if not sid:
        return
    with state.engine.begin() as con:
        con.execute(delete(console_sessions).where(console_sessions.c.id_hash == hash_key(sid)))


__all__ = ["DEFAULT_TTL", "Session", "close_session", "get_session", "open_session"]
