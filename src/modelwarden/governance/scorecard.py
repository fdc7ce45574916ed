"""Release gates by default, and the scorecard: one page on a model version.

The scorecard (:func:`scorecard`) gathers, for a version, the latest evaluation run of it with
95% bootstrap intervals of every automatic metric, the gate verdicts of the latest comparison in
which that run was the candidate, and the human review of its answers: the mean of each reliable
rubric dimension with its n and Krippendorff's alpha. Dimensions whose alpha is below the
reliability threshold are listed as excluded, never averaged: a number reviewers do not agree on
says more about the rubric than about the model.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelwarden.errors import NotFoundError

# The default gate is an evaluation rule; it is named here too, where scorecards were built first.
from modelwarden.evals.compare import DEFAULT_GATE_YAML as DEFAULT_GATE_YAML
from modelwarden.evals.compare import default_gate as default_gate
from modelwarden.evals.service import BOOTSTRAP_RESAMPLES
from modelwarden.evals.store import clean_json, get_run, latest_comparison, latest_run, run_scores
from modelwarden.review.queue import list_queues
from modelwarden.review.reliability import (
    PAIRWISE_KEY,
    RELIABILITY_THRESHOLD,
    pairwise_report,
    rating_tables,
)
from modelwarden.settings import Settings
from modelwarden.stats.agreement import krippendorff_alpha
from modelwarden.stats.bootstrap import bootstrap_mean
from modelwarden.stats.proportions import wilson
from modelwarden.store.state import StateStore

# --------------------------------------------------------------------------- scorecard

# Metrics in the order a reader looks for them; any other metric follows alphabetically.
METRIC_ORDER = (
    "must_include",
    "semantic",
    "rougeL",
    "rouge1",
    "rouge2",
    "rougeLsum",
    "chrf",
    "bleu",
    "latency_ms",
)
OUTCOMES = ("pass", "safety", "forbidden")


def _metric_rows(
    scores: dict[str, Any], n_boot: int, confidence: float, seed: int
) -> list[dict[str, Any]]:
    names = {m for s in scores.values() for m in s.metrics}
    ordered = [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))
    rows = []
    for i, name in enumerate(ordered):
        vals = np.array([s.metrics[name] for s in scores.values() if name in s.metrics], float)
        vals = vals[np.isfinite(vals)]
        # One stream per metric, so adding a metric does not move another's interval.
        rng = np.random.default_rng([seed, i])
        lo, hi = bootstrap_mean(vals, n_boot=n_boot, confidence=confidence, rng=rng)
        rows.append(
            {
                "metric": name,
                "mean": float(vals.mean()) if vals.size else None,
                "ci_low": lo,
                "ci_high": hi,
                "n": int(vals.size),
            }
        )
    return rows


def _outcome_rows(scores: dict[str, Any], confidence: float) -> list[dict[str, Any]]:
    rows = []
    for name in OUTCOMES:
        flags = [s.ok(name) for s in scores.values()]
        known = [f for f in flags if f is not None]
        if not known:
            continue
        # ``pass`` counts passing items; a violation counts the items that have it.
        count = sum(known) if name == "pass" else sum(not f for f in known)
        lo, hi = wilson(count, len(known), confidence)
        rows.append(
            {
                "outcome": name if name == "pass" else f"{name}_violations",
                "count": count,
                "n": len(known),
                "rate": count / len(known),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return rows


def _gate(state: StateStore, run: dict[str, Any]) -> dict[str, Any] | None:
    cmp = latest_comparison(state, run["id"])
    if cmp is None:
        return None
    result = cmp["result"] or {}
    try:
        baseline = get_run(state, cmp["run_a"])["name"]
    except NotFoundError:  # pragma: no cover - comparisons go with their runs
        baseline = str(cmp["run_a"])
    return {
        "comparison_id": cmp["id"],
        "gate": cmp["gate_name"],
        "passed": bool(cmp["passed"]),
        "baseline": baseline,
        "created_at": cmp["created_at"],
        "checks": result.get("checks", []),
        "warnings": result.get("warnings", []),
    }


def _human(
    state: StateStore, version: str, threshold: float, n_boot: int, confidence: float, seed: int
) -> dict[str, Any]:
    dims: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for q in list_queues(state):
        tables = rating_tables(state, q["name"])
        for key, t in tables.items():
            if key == PAIRWISE_KEY:
                continue
            mine = [i for i, v in enumerate(t.model_versions) if v == version]
            if not mine:
                continue
            alpha = krippendorff_alpha(t.matrix, t.level, values=t.values)
            base = {
                "queue": q["name"],
                "dimension": key,
                "level": t.level,
                "alpha": alpha if math.isfinite(alpha) else None,
            }
            if not (math.isfinite(alpha) and alpha >= threshold):
                excluded.append(
                    {
                        **base,
                        "reason": "undefined alpha"
                        if not math.isfinite(alpha)
                        else f"alpha below {threshold:g}",
                    }
                )
                continue
            sub = t.matrix[mine]
            present = sub[~np.isnan(sub)]
            row: dict[str, Any] = {
                **base,
                "type": t.dimension.type,
                "n": int(present.size),
                "items": len(mine),
            }
            if t.dimension.type == "categorical":
                labels = t.dimension.choices()
                counts = Counter(int(v) for v in present.tolist())
                row["distribution"] = {labels[k]: counts.get(k, 0) for k in range(len(labels))}
            else:
                # Items are the unit of resampling: one item's ratings move together.
                item_means = np.array([np.nanmean(r) for r in sub if np.isfinite(r).any()])
                rng = np.random.default_rng([seed, len(dims)])
                lo, hi = bootstrap_mean(item_means, n_boot=n_boot, confidence=confidence, rng=rng)
                row.update(mean=float(present.mean()), ci_low=lo, ci_high=hi)
            dims.append(row)
        report = pairwise_report(state, q["name"])
        for p in (report or {}).get("pairs", []):
            if version not in (p["a"], p["b"]):
                continue
            mine_a = p["a"] == version
            pairs.append(
                {
                    "queue": q["name"],
                    "versus": p["b"] if mine_a else p["a"],
                    "preferred": p["a_preferred"] if mine_a else p["b_preferred"],
                    "other_preferred": p["b_preferred"] if mine_a else p["a_preferred"],
                    "ties": p["ties"],
                    "n": p["n"],
                }
            )
    return {"threshold": threshold, "dimensions": dims, "excluded": excluded, "pairwise": pairs}


def scorecard(
    settings: Settings,
    version: str,
    *,
    state: StateStore | None = None,
    confidence: float = 0.95,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Any]:
    """One model version on one page, as JSON-able data (NaN as None)."""
    own = state is None
    st = state or StateStore.of(settings)
    try:
        run = latest_run(st, version)
        if run is None:
            raise NotFoundError(
                f"no evaluation run of {version!r}; run one with: modelwarden eval run "
                f"--golden FILE --model {version}",
                field="version",
            )
        scores = run_scores(st, run["id"])
        card = {
            "version": version,
            "generated_at": datetime.now(UTC),
            "confidence": confidence,
            "n_boot": n_boot,
            "seed": seed,
            "run": {
                "id": run["id"],
                "name": run["name"],
                "created_at": run["created_at"],
                "endpoint": run["endpoint"],
                "golden_set": {
                    "name": run["golden_name"],
                    "version": run["golden_version"],
                    "content_hash": run["golden_hash"],
                },
                "status": run["status"],
                "items": run["n_items"],
                "answered": run["n_answered"],
                "failed": run["n_failed"],
                "embedder": run["embedder"],
                "params": run["params"],
            },
            "metrics": _metric_rows(scores, n_boot, confidence, seed),
            "outcomes": _outcome_rows(scores, confidence),
            "gate": _gate(st, run),
            "human_review": _human(
                st,
                version,
                RELIABILITY_THRESHOLD if threshold is None else threshold,
                n_boot,
                confidence,
                seed,
            ),
        }
        return dict(clean_json(card))
    finally:
        if own:
            st.close()


# --------------------------------------------------------------------------- Markdown


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _when(v: Any) -> str:
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return v
    if isinstance(v, datetime):
        return f"{v.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return "–"


def render_markdown(card: dict[str, Any]) -> str:
    run = card["run"]
    gs = run["golden_set"]
    pct = f"{card['confidence'] * 100:g}%"
    lines = [
        f"# Scorecard: {card['version']}",
        "",
        f"Latest evaluation run **{_md(run['name'])}** (id {run['id']}, "
        f"{_when(run['created_at'])}): "
        f"golden set {_md(gs['name'])} v{gs['version']} (`{gs['content_hash'][:12]}`), "
        f"{run['answered']} of {run['items']} items answered"
        + (f", {run['failed']} failed" if run["failed"] else "")
        + f". Endpoint {_md(run['endpoint'])}; semantic similarity by "
        f"{_md(run['embedder'] or 'none')}.",
        "",
        "## Automatic metrics",
        "",
        f"Means with {pct} percentile-bootstrap intervals ({card['n_boot']} resamples, seed "
        f"{card['seed']}); rates with Wilson intervals.",
        "",
        f"| metric | mean | {pct} CI | n |",
        "|:--|--:|:--|--:|",
    ]
    for m in card["metrics"]:
        lines.append(
            f"| {m['metric']} | {_num(m['mean'])} | [{_num(m['ci_low'])}, {_num(m['ci_high'])}] "
            f"| {m['n']} |"
        )
    for o in card["outcomes"]:
        lines.append(
            f"| {o['outcome']} (rate) | {_num(o['rate'])} ({o['count']} of {o['n']}) | "
            f"[{_num(o['ci_low'])}, {_num(o['ci_high'])}] | {o['n']} |"
        )
    lines += ["", "## Release gate", ""]
    gate = card["gate"]
    if gate is None:
        lines.append(
            "No comparison with this run as the candidate yet "
            "(modelwarden eval compare BASELINE CANDIDATE --gate gate.yaml)."
        )
    else:
        verdict = "PASSED" if gate["passed"] else "FAILED"
        lines += [
            f"Gate `{_md(gate['gate'])}` **{verdict}** against baseline "
            f"**{_md(gate['baseline'])}** ({_when(gate['created_at'])}).",
            "",
            "| check | verdict | reason |",
            "|:--|:--|:--|",
        ]
        for c in gate["checks"]:
            mark = "pass" if c["passed"] else "**FAIL**"
            lines.append(f"| {_md(c['name'])} | {mark} | {_md(c['reason'])} |")
        if gate["warnings"]:
            lines.append("")
            lines += [f"- warning: {_md(w)}" for w in gate["warnings"]]
    human = card["human_review"]
    lines += ["", "## Human review"]
    if not human["dimensions"] and not human["excluded"] and not human["pairwise"]:
        lines += ["", "No human review of this version yet (modelwarden review sample)."]
    if human["dimensions"]:
        lines += [
            "",
            f"Reliable dimensions only (Krippendorff's alpha >= {human['threshold']:g}); alpha "
            "is the queue's, over all its reviewed items.",
            "",
            f"| queue | dimension | mean | {pct} CI | ratings | items | alpha |",
            "|:--|:--|--:|:--|--:|--:|--:|",
        ]
        for d in human["dimensions"]:
            if "distribution" in d:
                dist = ", ".join(f"{k} {v}" for k, v in d["distribution"].items() if v)
                value, ci = dist, "–"
            else:
                value = _num(d["mean"], 3)
                ci = f"[{_num(d['ci_low'], 3)}, {_num(d['ci_high'], 3)}]"
            lines.append(
                f"| {_md(d['queue'])} | {d['dimension']} | {_md(value)} | {ci} | {d['n']} | "
                f"{d['items']} | {_num(d['alpha'], 3)} |"
            )
    if human["excluded"]:
        lines += ["", "Left out as unreliable:"]
        for d in human["excluded"]:
            lines.append(
                f"- {_md(d['queue'])} / {d['dimension']}: alpha {_num(d['alpha'], 3)} "
                f"({d['reason']})"
            )
    if human["pairwise"]:
        lines += [
            "",
            "Blind pairs against other versions:",
            "",
            "| queue | versus | preferred | other preferred | ties | n |",
            "|:--|:--|--:|--:|--:|--:|",
        ]
        for p in human["pairwise"]:
            lines.append(
                f"| {_md(p['queue'])} | {_md(p['versus'])} | {p['preferred']} | "
                f"{p['other_preferred']} | {p['ties']} | {p['n']} |"
            )
    lines.append("")
    return "\n".join(lines)
