"""Detectors by method name, as the CLI and the policy rules refer to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
