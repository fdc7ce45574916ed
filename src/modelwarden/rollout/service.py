"""Rollout service: what the CLI, the HTTP API and the console call to move versions and traffic.

The registry knows versions; this layer knows rollouts too, so the rules that need both live here.
"""

from __future__ import annotations

from modelwarden.errors import ConflictError
from modelwarden.governance import registry
from modelwarden.governance.registry import VersionInfo
from modelwarden.rollout import store as rollout_store
from modelwarden.store.state import StateStore


def promote_version(
    state: StateStore, version: str, to: str, actor: str, reason: str = ""
) -> VersionInfo:
    """``registry promote``: refused while a rollout of the version is under way, since the
    rollout controller owns that version's traffic until it finishes."""
    active = rollout_store.active(state)
    if active is not None and active.version == version:
        raise ConflictError(
            f"a rollout of {version} is under way (step {active.step + 1}); advance it with "
            "modelwarden rollout promote",
            field="version",
        )
    return registry.promote(state, version, to, actor, reason)
