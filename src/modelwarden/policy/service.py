"""Policy service: the SOP policy in force and the SOP document rendered from it."""

from __future__ import annotations

from typing import Any

from modelwarden.policy.sop import render_sop
from modelwarden.policy.spec import Policy, policy_path
from modelwarden.settings import Settings


def current(settings: Settings) -> dict[str, Any]:
    """The policy the engine enforces, and where it comes from."""
    path = policy_path(settings.data_dir)
    pol = Policy.for_data(settings.data_dir)
    return {
        "source": str(path) if path.exists() else "built-in",
        "policy": pol.model_dump(mode="json"),
    }


def sop_markdown(settings: Settings) -> str:
    """The SOP document (Markdown) rendered from the policy in force."""
    return render_sop(Policy.for_data(settings.data_dir))


__all__ = ["current", "sop_markdown"]
