"""The safety checker an installation uses: the default patterns or the settings' rule file,
plus similarity to curated unsafe advice when an embedder that can judge it is given."""

from __future__ import annotations

import logging
from typing import Any

from modelwarden.safety.advice import AdviceSimilarity
from modelwarden.safety.checker import SafetyChecker
from modelwarden.settings import Settings

log = logging.getLogger(__name__)


def safety_checker(settings: Settings, embedder: Any = None) -> SafetyChecker:
    """Patterns always; with ``embedder`` (an :class:`~modelwarden.embed.base.Embedder`) the
    similarity part too, if that embedder has a threshold (MiniLM does, hashing does not: then
    a warning says the similarity part is off)."""
    similarity = AdviceSimilarity(embedder) if embedder is not None else None
    if similarity is not None and not similarity.available:
        log.warning("safety check: similarity to unsafe advice is %s", similarity.reason)
    if settings.safety_rules:
        base = SafetyChecker.from_file(settings.safety_rules)
        return SafetyChecker(base.patterns, negation=base.negation, similarity=similarity)
    return SafetyChecker(similarity=similarity)
