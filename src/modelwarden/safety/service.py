"""The safety checker an installation uses: the default patterns or the settings' rule file."""

from __future__ import annotations

from modelwarden.safety.checker import SafetyChecker
from modelwarden.settings import Settings


def safety_checker(settings: Settings) -> SafetyChecker:
    return (
        SafetyChecker.from_file(settings.safety_rules) if settings.safety_rules else SafetyChecker()
    )
