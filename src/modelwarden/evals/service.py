"""Evaluation service: stored runs and comparisons as the HTTP API and the console read them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from modelwarden.evals import store
from modelwarden.store.state import StateStore


def runs(state: StateStore, model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Evaluation runs, newest first."""
    return [store.clean_json(r) for r in store.list_runs(state, model, limit)]


def run(state: StateStore, ref: str) -> dict[str, Any]:
    """One run (by id or name) with its newest comparison as the candidate, if any."""
    r = store.get_run(state, int(ref) if ref.isdigit() else ref)
    cmp = store.latest_comparison(state, r["id"])
    return store.clean_json({**r, "comparison": cmp})


def comparisons(state: StateStore, limit: int = 50) -> list[dict[str, Any]]:
    """Stored comparisons of two runs under a gate, newest first."""
    t = store.eval_comparisons
    q = select(t).order_by(t.c.id.desc()).limit(limit)
    with state.engine.connect() as con:
        return [store.clean_json(dict(r._mapping)) for r in con.execute(q)]


__all__ = ["comparisons", "run", "runs"]
