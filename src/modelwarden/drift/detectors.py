"""Building a detector from its method name and parameters, with clear errors for bad ones.

The suite builds its members here, and :mod:`modelwarden.drift.registry` every detector.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from modelwarden.drift.base import Detector
from modelwarden.drift.classifier import ClassifierDetector
from modelwarden.drift.clusters import ClusterShareDetector
from modelwarden.drift.distance import CentroidCosineDetector, CentroidEuclideanDetector
from modelwarden.drift.mmd import MMDDetector
from modelwarden.errors import InputError

Factory = Callable[..., Detector]

# The embedding detectors a suite can combine.
SUITE_MEMBERS: dict[str, Factory] = {
    "centroid_cosine": CentroidCosineDetector,
    "centroid_euclidean": CentroidEuclideanDetector,
    "mmd": MMDDetector,
    "classifier": ClassifierDetector,
    "clusters": ClusterShareDetector,
}


def build_detector(table: Mapping[str, Factory], name: str, **params: Any) -> Detector:
    """A new detector of method ``name`` from ``table``; bad names or params are InputError."""
    try:
        factory = table[name]
    except KeyError:
        raise InputError(
            f"unknown drift method {name!r}; choose from {sorted(table)}", field="method"
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
