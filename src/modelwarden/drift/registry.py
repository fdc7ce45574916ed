"""Detectors by method name, as the CLI and the policy rules refer to them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from modelwarden.drift.base import Detector
from modelwarden.drift.classifier import ClassifierDetector
from modelwarden.drift.clusters import ClusterShareDetector
from modelwarden.drift.distance import (
    CentroidCosineDetector,
    CentroidEuclideanDetector,
    SeedCentroidDetector,
)
from modelwarden.drift.mmd import MMDDetector
from modelwarden.drift.quality import (
    BernoulliCusumDetector,
    CusumDetector,
    RateDriftDetector,
    ScoreDriftDetector,
)
from modelwarden.drift.suite import DriftSuite
from modelwarden.errors import InputError

EMBEDDING_DETECTORS: dict[str, Callable[..., Detector]] = {
    "suite": DriftSuite,
    "centroid_cosine": CentroidCosineDetector,
    "centroid_euclidean": CentroidEuclideanDetector,
    "mmd": MMDDetector,
    "classifier": ClassifierDetector,
    "clusters": ClusterShareDetector,
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
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise InputError(
            f"unknown drift method {name!r}; choose from {available_detectors()}", field="method"
        ) from None
    accepted = _accepted_params(factory)
    unknown = sorted(set(params) - accepted) if accepted is not None else []
    if unknown:
        raise InputError(
            f"{name} does not take parameter(s) {unknown}; it takes {sorted(accepted or ())}",
            field=unknown[0],
        )
    return factory(**params)


def _accepted_params(factory: Callable[..., Detector]) -> set[str] | None:
    """Keyword names the factory accepts, following ``**kwargs`` up the class hierarchy."""
    if not isinstance(factory, type):
        return None
    names: set[str] = set()
    for cls in factory.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        sig = inspect.signature(init)
        names |= {
            p
            for p, v in sig.parameters.items()
            if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)
        }
        if not any(v.kind == v.VAR_KEYWORD for v in sig.parameters.values()):
            return names
    return names
