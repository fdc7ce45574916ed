"""Evaluation runs in the state store: runs, their items, cached generations and comparisons.

A run is immutable once written: its row names the model, the endpoint, the golden set (name,
version and content hash), the metric signatures and the decoding parameters, so two runs can be
told apart and a comparison knows what it compared. Generations are cached by a key over the
endpoint, the model, the messages and the decoding parameters
(:func:`~modelwarden.evals.runner.cache_key`): a version served somewhere else is asked again.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.store.state import StateStore
from modelwarden.store.tables import (
    MAX_NAME_CHARS,
    eval_comparisons,
    eval_generations,
    eval_items,
    eval_runs,
)

if TYPE_CHECKING:
    from modelwarden.evals.metrics import ItemScores

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]*$")


def clean_json(v: Any) -> Any:
    """JSON has no NaN or infinity; they are stored as null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): clean_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [clean_json(x) for x in v]
    return v


def check_run_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_CHARS or not _NAME.match(name) or name.isdigit():
        raise InputError(
            f"run name {name!r} must start with a letter or digit, use only letters, digits and "
            "._:@+- , not be a number (numbers are run ids) and be at most "
            f"{MAX_NAME_CHARS} characters",
            field="name",
        )
    return name


# --------------------------------------------------------------------------- runs


def _run_dict(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def insert_run(
    state: StateStore, run: Mapping[str, Any], items: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Store a run and its items in one transaction; a missing name becomes ``MODEL-ID``."""
    values = clean_json(dict(run))
    name = values.pop("name", None)
    if name is not None:
        check_run_name(name)
    values["created_at"] = run.get("created_at") or datetime.now(UTC)
    with state.engine.begin() as con:
        if (
            name is not None
            and con.execute(select(eval_runs.c.id).where(eval_runs.c.name == name)).first()
        ):
            raise ConflictError(
                f"a run named {name!r} exists already; choose another --name", field="name"
            )
        # A placeholder keeps the column's uniqueness until the id is known.
        placeholder = name or f"~{uuid.uuid4().hex}"
        res = con.execute(insert(eval_runs).values(name=placeholder, **values))
        assert res.inserted_primary_key is not None
        run_id = int(res.inserted_primary_key[0])
        if name is None:
            name = _free_name(con, f"{run['model']}-{run_id}")
            con.execute(update(eval_runs).where(eval_runs.c.id == run_id).values(name=name))
        if items:
            con.execute(
                insert(eval_items), [{**clean_json(dict(it)), "run_id": run_id} for it in items]
            )
        row = con.execute(select(eval_runs).where(eval_runs.c.id == run_id)).one()
    return _run_dict(row)


def _free_name(con: Any, base: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._:@+-]", "-", base)[: MAX_NAME_CHARS - 8] or "run"
    name, n = base, 1
    while con.execute(select(eval_runs.c.id).where(eval_runs.c.name == name)).first():
        n += 1
        name = f"{base}.{n}"
    return name


def require_free_name(state: StateStore, name: str) -> None:
    check_run_name(name)
    with state.engine.connect() as con:
        taken = con.execute(select(eval_runs.c.id).where(eval_runs.c.name == name)).first()
    if taken:
        raise ConflictError(
            f"a run named {name!r} exists already; choose another --name", field="name"
        )


def get_run(state: StateStore, ref: str | int) -> dict[str, Any]:
    """A run by id (a number) or by name."""
    text = str(ref).strip()
    cond = eval_runs.c.id == int(text) if text.isdigit() else eval_runs.c.name == text
    with state.engine.connect() as con:
        row = con.execute(select(eval_runs).where(cond)).one_or_none()
    if row is None:
        raise NotFoundError(
            f"no evaluation run {text!r}; list them with: modelwarden eval list", field="run"
        )
    return _run_dict(row)


def list_runs(
    state: StateStore, model: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Runs, newest first."""
    q = select(eval_runs).order_by(eval_runs.c.created_at.desc(), eval_runs.c.id.desc())
    if model:
        q = q.where(eval_runs.c.model == model)
    if limit:
        q = q.limit(limit)
    with state.engine.connect() as con:
        return [_run_dict(r) for r in con.execute(q)]


def latest_run(state: StateStore, model: str) -> dict[str, Any] | None:
    """The newest run of ``model`` that answered at least one item."""
    q = (
        select(eval_runs)
        .where(eval_runs.c.model == model, eval_runs.c.n_answered > 0)
        .order_by(eval_runs.c.created_at.desc(), eval_runs.c.id.desc())
        .limit(1)
    )
    with state.engine.connect() as con:
        row = con.execute(q).one_or_none()
    return _run_dict(row) if row is not None else None


def item_rows(state: StateStore, run_id: int) -> list[dict[str, Any]]:
    with state.engine.connect() as con:
        rows = con.execute(
            select(eval_items).where(eval_items.c.run_id == run_id).order_by(eval_items.c.position)
        )
        return [dict(r._mapping) for r in rows]


def _metric_value(v: Any) -> float:
    return float("nan") if v is None else float(v)


def run_scores(state: StateStore, run_id: int) -> dict[str, ItemScores]:
    """The scored items of a run (those that got an answer), as :func:`compare_runs` takes them."""
    # The metric libraries load only when scores are needed, not whenever the state store opens.
    from modelwarden.evals.metrics import ItemScores

    out: dict[str, ItemScores] = {}
    for r in item_rows(state, run_id):
        if r["output"] is None:
            continue
        out[r["item_id"]] = ItemScores(
            item_id=r["item_id"],
            metrics={k: _metric_value(v) for k, v in (r["metrics"] or {}).items()},
            violations={k: bool(v) for k, v in (r["violations"] or {}).items()},
            tags=dict(r["tags"] or {}),
            details=dict(r["details"] or {}),
        )
    return out


def delete_run(state: StateStore, run_id: int) -> None:
    with state.engine.begin() as con:
        con.execute(
            delete(eval_comparisons).where(
                (eval_comparisons.c.run_a == run_id) | (eval_comparisons.c.run_b == run_id)
            )
        )
        con.execute(delete(eval_items).where(eval_items.c.run_id == run_id))
        con.execute(delete(eval_runs).where(eval_runs.c.id == run_id))


# --------------------------------------------------------------------------- generation cache


def cached_generations(state: StateStore, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(keys))
    out: dict[str, dict[str, Any]] = {}
    with state.engine.connect() as con:
        # SQLite limits the number of bound parameters in one statement.
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            for r in con.execute(select(eval_generations).where(eval_generations.c.key.in_(chunk))):
                out[r.key] = dict(r._mapping)
    return out


def store_generations(state: StateStore, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or replace cached generations (a run with the cache bypassed refreshes them)."""
    if not rows:
        return
    rows = list({r["key"]: r for r in rows}.values())  # one row per key, the last one wins
    keys = [r["key"] for r in rows]
    with state.engine.begin() as con:
        con.execute(delete(eval_generations).where(eval_generations.c.key.in_(keys)))
        con.execute(insert(eval_generations), [clean_json(dict(r)) for r in rows])


def count_generations(state: StateStore, model: str | None = None) -> int:
    q = select(func.count()).select_from(eval_generations)
    if model:
        q = q.where(eval_generations.c.model == model)
    with state.engine.connect() as con:
        return int(con.execute(q).scalar_one())


# --------------------------------------------------------------------------- comparisons


def insert_comparison(
    state: StateStore, run_a: int, run_b: int, gate_name: str, passed: bool, result: Any
) -> int:
    with state.engine.begin() as con:
        res = con.execute(
            insert(eval_comparisons).values(
                run_a=run_a,
                run_b=run_b,
                gate_name=gate_name,
                passed=passed,
                result=clean_json(result),
                created_at=datetime.now(UTC),
            )
        )
        assert res.inserted_primary_key is not None
        return int(res.inserted_primary_key[0])


def latest_comparison(state: StateStore, run_b: int) -> dict[str, Any] | None:
    """The newest comparison in which ``run_b`` was the candidate."""
    q = (
        select(eval_comparisons)
        .where(eval_comparisons.c.run_b == run_b)
        .order_by(eval_comparisons.c.id.desc())
        .limit(1)
    )
    with state.engine.connect() as con:
        row = con.execute(q).one_or_none()
    if row is None:
        return None
    return dict(row._mapping)


def compare_stored(
    state: StateStore,
    ref_a: str | int,
    ref_b: str | int,
    gate: Any = None,
    slices: Sequence[str] | None = None,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    record: bool = True,
) -> tuple[Any, int | None]:
    """Compare two stored runs (B the candidate) and keep the result for the scorecard.

    Returns the :class:`~modelwarden.evals.compare.Comparison` and the stored comparison's id.
    """
    # lazy: the comparison loads the metric libraries (sacrebleu, ROUGE), which the state store's
    # other readers (scorecards, the console) do not need
    from modelwarden.evals.compare import compare_runs

    a, b = get_run(state, ref_a), get_run(state, ref_b)
    warnings: list[str] = []
    if a["golden_hash"] != b["golden_hash"]:
        warnings.append(
            f"the runs used different golden sets ({a['golden_name']} v{a['golden_version']} "
            f"{a['golden_hash'][:12]} vs {b['golden_name']} v{b['golden_version']} "
            f"{b['golden_hash'][:12]}): items with the same id may not ask the same thing"
        )
    if a["embedder"] != b["embedder"]:
        warnings.append(
            f"semantic similarity came from different embedders ({a['embedder']} vs "
            f"{b['embedder']}) and is not comparable"
        )
    labels = (
        (a["name"], b["name"]) if a["id"] != b["id"] else (f"{a['name']} (A)", f"{b['name']} (B)")
    )
    cmp = compare_runs(
        run_scores(state, a["id"]),
        run_scores(state, b["id"]),
        slices=list(slices) if slices else None,
        gate=gate,
        seed=seed,
        n_boot=n_boot,
        labels=labels,
    )
    if warnings:
        cmp = dataclasses.replace(cmp, warnings=(*warnings, *cmp.warnings))
    comparison_id = None
    if record:
        result = {**cmp.to_dict(), "run_a": a["id"], "run_b": b["id"]}
        comparison_id = insert_comparison(
            state, a["id"], b["id"], cmp.gate.name, cmp.passed, result
        )
    return cmp, comparison_id


__all__ = [
    "cached_generations",
    "check_run_name",
    "clean_json",
    "compare_stored",
    "delete_run",
    "eval_comparisons",
    "eval_generations",
    "eval_items",
    "eval_runs",
    "get_run",
    "insert_comparison",
    "insert_run",
    "item_rows",
    "latest_comparison",
    "latest_run",
    "list_runs",
    "run_scores",
    "store_generations",
]
