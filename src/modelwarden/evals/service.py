"""Evaluation service: stored runs and comparisons as the HTTP API and the console read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from modelwarden.errors import InputError
from modelwarden.evals import store
from modelwarden.evals.golden import GoldenSet, dump_golden, load_golden, starter_set
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

if TYPE_CHECKING:
    from modelwarden.evals.compare import Comparison
    from modelwarden.evals.runner import RunResult

#: Bootstrap resamples of an interval unless asked otherwise: a comparison's, and a scorecard's
#: wherever it is shown (``eval scorecard``, the HTTP API, the console).
BOOTSTRAP_RESAMPLES = 1000

# The gate (SciPy) and the runner (the metric libraries) are imported by the functions that use
# them: listing or showing runs, here and in the HTTP API, starts without them.


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


def _write_new(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path} exists; add --force to overwrite it", field="out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_starter_set(out: Path, force: bool = False) -> GoldenSet:
    """Write the starter golden set (one item per question of the built-in corpus) to ``out``.

    An existing file is kept unless ``force``.
    """
    gs = starter_set()
    _write_new(out, dump_golden(gs), force)
    return gs


def write_default_gate(out: Path, force: bool = False) -> Path:
    """Write the default release gate (floors, non-inferiority margins, hard gates) to ``out``."""
    from modelwarden.evals.compare import DEFAULT_GATE_YAML, default_gate  # lazy: see the top

    default_gate()  # the text must stay a valid gate
    _write_new(out, DEFAULT_GATE_YAML, force)
    return out


def run_golden(
    settings: Settings,
    golden: Path,
    *,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[GoldenSet], None] | None = None,
    **options: Any,
) -> RunResult:
    """Load a golden set, ask the model for every item, score the answers and store the run.

    ``options`` are :class:`RunOptions` fields (``model``, ``endpoint``, ``concurrency``…);
    ``None`` means the default. ``on_start`` hears the loaded set before the first request.
    """
    from modelwarden.evals.runner import RunOptions, run_eval  # lazy: see the top

    gs = load_golden(golden)
    opts = RunOptions.build(**options)
    state = StateStore.of(settings)
    try:
        if on_start:
            on_start(gs)
        return run_eval(settings, gs, opts, state=state, progress=progress)
    finally:
        state.close()


def run_detail(settings: Settings, ref: str, items: bool = True) -> dict[str, Any]:
    """One run (id or name) with, if ``items``, every item's answer, metrics and violations."""
    state = StateStore.of(settings)
    try:
        r = store.get_run(state, ref)
        return {**r, "items": store.item_rows(state, r["id"])} if items else r
    finally:
        state.close()


@dataclass
class GateComparison:
    """A comparison of two stored runs under a gate, and where the gate came from."""

    comparison: Comparison
    gate_source: str


def compare(
    settings: Settings,
    run_a: str,
    run_b: str,
    gate: Path | None = None,
    slices: list[str] | None = None,
    *,
    seed: int = 0,
    n_boot: int = BOOTSTRAP_RESAMPLES,
) -> GateComparison:
    """Compare candidate ``run_b`` with baseline ``run_a`` item by item and judge the gate.

    Without ``gate`` the default gate (what ``write_default_gate`` writes) judges the metrics.
    ``slices`` are tag names, each entry possibly a comma list. The comparison is stored.
    """
    from modelwarden.evals.compare import GateSpec, default_gate  # lazy: see the top

    spec = GateSpec.load(gate) if gate is not None else default_gate()
    source = (
        f"from {gate}"
        if gate is not None
        else "the default gate, as modelwarden eval gate-init writes it"
    )
    names = [x for part in (slices or []) for x in part.split(",") if x.strip()]
    state = StateStore.of(settings)
    try:
        cmp, _ = store.compare_stored(state, run_a, run_b, spec, names, seed=seed, n_boot=n_boot)
    finally:
        state.close()
    return GateComparison(cmp, source)


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "GateComparison",
    "compare",
    "comparisons",
    "run",
    "run_detail",
    "run_golden",
    "runs",
    "write_default_gate",
    "write_starter_set",
]
