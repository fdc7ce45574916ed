"""Setting the SOP policy in force: a new version in the state store, audited.

Every instance on one state store enforces the newest stored version
(:func:`modelwarden.policy.service.resolve`); this module writes versions. ``policy set`` with
no file stores the data directory's ``policy.yaml`` (or the built-in policy when there is none),
which is how an installation that kept its policy in the file moves it into the state store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from modelwarden.errors import InputError
from modelwarden.governance import audit
from modelwarden.policy import store as policy_service
from modelwarden.policy.spec import Policy, default_policy, policy_path
from modelwarden.policy.store import StoredPolicy
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore


def set_policy(
    settings: Settings,
    state: StateStore,
    actor: str,
    *,
    path: Path | None = None,
    text: str | None = None,
    reason: str = "",
) -> tuple[StoredPolicy, bool]:
    """Store a policy as the one in force: YAML ``text`` (the HTTP API), else the file ``path``,
    else ``DATA/policy.yaml``, else the built-in policy. Returns (the version in force, whether
    it is new): a policy equal to the one in force stores nothing and is not audited again."""
    if text is not None:
        policy, source = Policy.from_yaml(text, "policy"), "api"
    elif path is not None:
        policy, source = Policy.load(path), str(path)
    else:
        file = policy_path(settings.data_dir)
        policy, source = (
            (Policy.load(file), str(file)) if file.exists() else (default_policy(), "built-in")
        )
    return store(state, policy, source, actor, reason)


def store(
    state: StateStore, policy: Policy, source: str, actor: str, reason: str = ""
) -> tuple[StoredPolicy, bool]:
    """Store ``policy`` as a new version unless it equals the one in force; audit the change."""
    if len(reason) > 2000:
        raise InputError("the reason is limited to 2000 characters", field="reason")
    with audit.transaction(state) as con:
        prev = policy_service.stored_in(con)
        if prev is not None and prev.digest == policy_service.digest(policy):
            return prev, False
        new = policy_service.insert_in(
            con, policy, source, actor, reason or f"policy from {source}", datetime.now(UTC)
        )
        audit.append(
            con,
            actor,
            "policy.set",
            policy.sop_id,
            new.reason,
            {
                "version": new.version,
                "digest": new.digest,
                "source": source,
                "previous_version": prev.version if prev else None,
                "rules": [r.id for r in policy.rules],
            },
        )
    return new, True


__all__ = ["set_policy", "store"]
