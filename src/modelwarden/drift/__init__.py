"""Drift detection: calibrated tests on prompt/response embeddings and on answer quality.

``check_drift`` is the seed notebook's function, kept for parity. Everything else answers in one
contract (:class:`DriftResult`) and is calibrated: a p-value with a known false-alarm rate rather
than a hand-picked threshold. :class:`DriftSuite` is the default check; :func:`explain_drift`
says which topics drifted.

Names are imported on first use, so that importing the seed's ``check_drift`` does not pull in
SciPy for a command that never runs a test.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "check_drift": "modelwarden.drift.centroid",
    "DriftResult": "modelwarden.drift.base",
    "Detector": "modelwarden.drift.base",
    "CentroidCosineDetector": "modelwarden.drift.distance",
    "CentroidEuclideanDetector": "modelwarden.drift.distance",
    "SeedCentroidDetector": "modelwarden.drift.distance",
    "MMDDetector": "modelwarden.drift.mmd",
    "ClassifierDetector": "modelwarden.drift.classifier",
    "ClusterShareDetector": "modelwarden.drift.clusters",
    "DriftSuite": "modelwarden.drift.suite",
    "explain_drift": "modelwarden.drift.explain",
    "DriftExplanation": "modelwarden.drift.explain",
    "ScoreDriftDetector": "modelwarden.drift.quality",
    "RateDriftDetector": "modelwarden.drift.quality",
    "CusumDetector": "modelwarden.drift.quality",
    "get_detector": "modelwarden.drift.registry",
    "available_detectors": "modelwarden.drift.registry",
}

__all__ = [
    "CentroidCosineDetector",
    "CentroidEuclideanDetector",
    "ClassifierDetector",
    "ClusterShareDetector",
    "CusumDetector",
    "Detector",
    "DriftExplanation",
    "DriftResult",
    "DriftSuite",
    "MMDDetector",
    "RateDriftDetector",
    "ScoreDriftDetector",
    "SeedCentroidDetector",
    "available_detectors",
    "check_drift",
    "explain_drift",
    "get_detector",
]

if TYPE_CHECKING:
    from modelwarden.drift.base import Detector, DriftResult
    from modelwarden.drift.centroid import check_drift
    from modelwarden.drift.classifier import ClassifierDetector
    from modelwarden.drift.clusters import ClusterShareDetector
    from modelwarden.drift.distance import (
        CentroidCosineDetector,
        CentroidEuclideanDetector,
        SeedCentroidDetector,
    )
    from modelwarden.drift.explain import DriftExplanation, explain_drift
    from modelwarden.drift.mmd import MMDDetector
    from modelwarden.drift.quality import CusumDetector, RateDriftDetector, ScoreDriftDetector
    from modelwarden.drift.registry import available_detectors, get_detector
    from modelwarden.drift.suite import DriftSuite


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelwarden.drift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
