"""ModelWarden keeps fine-tuned LLM assistants safe in production.

The public Python API; everything the ``modelwarden`` command does is one of these calls first.
Names are imported on first use, so ``import modelwarden`` stays cheap for the command line.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "check_drift": "modelwarden.drift.centroid",
    "Settings": "modelwarden.settings",
    "WardenError": "modelwarden.errors",
}

__all__ = ["Settings", "WardenError", "__version__", "check_drift"]

if TYPE_CHECKING:
    from modelwarden.drift.centroid import check_drift
    from modelwarden.errors import WardenError
    from modelwarden.settings import Settings


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelwarden' has no attribute {name!r}")
