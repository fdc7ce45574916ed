"""Evaluation: golden sets, metrics, and the comparison of two runs with a release gate.

- :mod:`~modelwarden.evals.golden`: the versioned JSONL format, ``load_golden``, ``starter_set``;
- :mod:`~modelwarden.evals.metrics`: BLEU, chrF, ROUGE, semantic similarity, required facts,
  forbidden content and safety per item (``Evaluator``, ``TextMetrics``);
- :mod:`~modelwarden.evals.compare`: ``compare_runs`` and ``GateSpec``;
- :mod:`~modelwarden.evals.runner`: ``run_eval`` against any OpenAI-compatible endpoint, with
  bounded concurrency, retries and a generation cache;
- :mod:`~modelwarden.evals.store`: runs, items, cached generations and comparisons in the state
  store (``compare_stored`` compares two stored runs);
- :mod:`~modelwarden.governance.scorecard`: ``scorecard`` of a model version and the default gate.

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
    "RunOptions": "runner",
    "RunResult": "runner",
    "UpstreamError": "runner",
    "run_eval": "runner",
    "compare_stored": "store",
    "get_run": "store",
    "latest_run": "store",
    "list_runs": "store",
    "run_scores": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
