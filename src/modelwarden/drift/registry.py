"""Detectors by method name, as the CLI and the policy rules refer to them.

A new detector is a :class:`~modelwarden.drift.base.Detector` subclass; adding it to
:data:`EMBEDDING_DETECTORS` (or :data:`QUALITY_DETECTORS`) here, or calling
:func:`register_detector` at run time, makes ``get_detector(name)``, ``modelwarden drift
--method name`` and the drift service use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from modelwarden.drift.base import Detector
from modelwarden.drift.detectors import SUITE_MEMBERS, build_detector
from modelwarden.drift.distance import SeedCentroidDetector
from modelwarden.drift.quality import (
    BernoulliCusumDetector,
    CusumDetector,
    RateDriftDetector,
    ScoreDriftDetector,
)
from modelwarden.drift.suite import DriftSuite
from modelwarden.errors import ConflictError, InputError

EMBEDDING_DETECTORS: dict[str, Callable[..., Detector]] = {
    "suite": DriftSuite,
    **SUITE_MEMBERS,
    "seed": SeedCentroidDetector,
}

QUALITY_DETECTORS: dict[str, Callable[..., Detector]] = {
    "feedback_score": ScoreDriftDetector,
    "safety_rate": RateDriftDetector,
    "cusum": CusumDetector,
    "bernoulli_cusum": BernoulliCusumDetector,
}

DETECTORS: dict[str, Callable[..., Detector]] = {**EMBEDDING_DETECTORS, **QUALITY_DETECTORS}


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def get_detector(name: str, **params: Any) -> Detector:
    """A new detector of method ``name`` built with ``params``; bad names or params are InputError."""
    return build_detector(DETECTORS, name, **params)


def register_detector(
    name: str,
    factory: Callable[..., Detector],
    *,
    kind: Literal["embedding", "quality"] = "embedding",
) -> None:
    """Make ``factory`` (a Detector class) available as method ``name``; names are never reused."""
    if not name or not name.replace("_", "").isalnum():
        raise InputError("a detector name is letters, digits and underscores", field="name")
    if name in DETECTORS:
        raise ConflictError(f"drift method {name!r} already exists", field="name")
    if kind not in ("embedding", "quality"):
        raise InputError("kind must be embedding or quality", field="kind")
    (EMBEDDING_DETECTORS if kind == "embedding" else QUALITY_DETECTORS)[name] = factory
    DETECTORS[name] = factory
