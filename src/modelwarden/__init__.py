"""ModelWarden keeps fine-tuned LLM assistants safe in production.

The public Python API; everything the ``modelwarden`` command does is one of these calls first.
"""

from __future__ import annotations

from modelwarden.drift.centroid import check_drift
from modelwarden.errors import WardenError
from modelwarden.settings import Settings

__version__ = "0.1.0"

__all__ = ["Settings", "WardenError", "__version__", "check_drift"]
