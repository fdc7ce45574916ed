"""The policy in force: stored versions in the state store, else ``DATA/policy.yaml``, else the
built-in SOP-MLOPS-003 (see :mod:`modelwarden.policy.service`), and the SOP document rendered
from it.

Kept apart from the history checks of :mod:`~modelwarden.policy.service` so that what only needs
the policy (the notifier, the registry commands) does not load the engine's SciPy or Ibis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select

from modelwarden.errors import InputError
from modelwarden.policy.sop import render_sop
from modelwarden.policy.spec import Policy, default_policy, policy_path
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.store.tables import policies


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
