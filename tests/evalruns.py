"""A stored evaluation run of 20 items, written straight to the state store, for tests that need
evidence for a release (scorecards, approval gates) without calling a model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from modelwarden.evals.store import insert_run
from modelwarden.store.state import StateStore


def run_row(name: str | None, model: str, n: int, **over: Any) -> dict[str, Any]:
    """The run's own row, as ``insert_run`` takes it: ``n`` items, all answered; ``over`` sets
    any other column."""
    return {
        "name": name,
        "model": model,
        "endpoint": "http://127.0.0.1:1/v1",
        "golden_name": "g",
        "golden_version": 1,
        "golden_hash": "h" * 64,
        "status": "complete",
        "params": {},
        "signatures": {},
        "corpus": {},
        "embedder": None,
        "n_items": n,
        "n_answered": n,
        "n_failed": 0,
        "n_cached": 0,
        "n_requests": n,
        "duration_s": 1.0,
        **over,
    }


def stored_run(
    state: StateStore,
    model: str,
    unsafe: int = 0,
    at: datetime | None = None,
    name: str | None = None,
    outputs: Sequence[str] | None = None,
) -> int:
    """The run's id; its 20 answers are ``outputs`` (default: the same text for every item)."""
    items = [
        {
            "item_id": f"q{i}",
            "position": i,
            "prompt": f"question {i}",
            "reference": "ref",
            "output": outputs[i] if outputs is not None else "answer",
            "error": None,
            "metrics": {"chrf": 60.0 + (i % 3)},
            "violations": {"safety": i < unsafe, "forbidden": False},
            "tags": {},
            "details": {},
            "latency_ms": 100.0,
            "attempts": 1,
            "cached": False,
        }
        for i in range(20)
    ]
    stored = insert_run(state, run_row(name, model, 20, created_at=at), items)
    return int(stored["id"])
