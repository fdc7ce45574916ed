"""Evaluation: golden sets, metrics, and the comparison of two runs with a release gate.

- :mod:`~modelwarden.evals.golden`: the versioned JSONL format, ``load_golden``, ``starter_set``;
- :mod:`~modelwarden.evals.metrics`: BLEU, chrF, ROUGE, semantic similarity, required facts,
  forbidden content and safety per item (``Evaluator``, ``TextMetrics``);
- :mod:`~modelwarden.evals.compare`: ``compare_runs`` and ``GateSpec``.

Names are imported on first use, so loading a golden set does not load the metric libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GoldenItem": "golden",
    "GoldenSet": "golden",
    "Pattern": "golden",
    "load_golden": "golden",
    "parse_golden": "golden",
    "starter_set": "golden",
    "write_golden": "golden",
    "Evaluator": "metrics",
    "ItemScores": "metrics",
    "RunScores": "metrics",
    "TextMetrics": "metrics",
    "Comparison": "compare",
    "FloorCheck": "compare",
    "GateSpec": "compare",
    "HardGate": "compare",
    "NonInferiorityCheck": "compare",
    "compare_runs": "compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
