"""Evaluation commands: eval init | run | list | show | compare | gate-init | scorecard."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from modelwarden.cli.app import (
    FORMAT_OPTION,
    Format,
    app,
    console,
    err_console,
    handle_errors,
    print_json,
    print_table,
    settings,
    state_store,
)
from modelwarden.cli.render import stage_bar
from modelwarden.errors import EXIT_CHECK_FAILED

# The evaluation service is imported inside each command body: keeps --help fast.

eval_app = typer.Typer(
    help="Golden-set evaluation: run a model, compare two runs against a gate, scorecards.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

# Metrics shown in run tables, in this order, when the run has them.
SUMMARY_METRICS = ("must_include", "semantic", "rougeL", "chrf", "bleu", "latency_ms")


# ---- init --------------------------------------------------------------------------------------
@eval_app.command("init")
@handle_errors
def eval_init(
    out: Path = typer.Option(Path("golden.jsonl"), "--out", "-o", help="Where to write it."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the starter golden set: one item per question of the built-in plant corpus."""
    from modelwarden.evals import service  # imported here: keeps --help fast

    gs = service.write_starter_set(out, force)
    console.print(
        f"wrote {out}: golden set {gs.name!r} v{gs.version}, {len(gs)} items, "
        f"content hash {gs.content_hash[:12]}"
    )


# ---- run ---------------------------------------------------------------------------------------
def _run_row(r: dict[str, Any]) -> dict[str, Any]:
    corpus = r.get("corpus") or {}
    row: dict[str, Any] = {
        "id": r["id"],
        "name": r["name"],
        "model": r["model"],
        "golden set": f"{r['golden_name']} v{r['golden_version']}",
        "items": r["n_items"],
        "answered": r["n_answered"],
        "failed": r["n_failed"],
    }
    for m in SUMMARY_METRICS:
        if corpus.get(m) is not None:
            row[m] = corpus[m]
    row["safety"] = int(corpus.get("safety_violations") or 0)
    row["forbidden"] = int(corpus.get("forbidden_violations") or 0)
    row["created"] = f"{r['created_at']:%Y-%m-%d %H:%M:%S}"
    return row


@eval_app.command("run")
@handle_errors
def eval_run(
    golden: Path = typer.Option(..., "--golden", "-g", help="Golden set JSONL (eval init)."),
    model: str = typer.Option(..., "--model", "-m", help="Model version, sent as `model`."),
    endpoint: str = typer.Option(
        None, "--endpoint", help="OpenAI-compatible base URL [default: http://127.0.0.1:8400/v1]."
    ),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, max=256),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1),
    retries: int = typer.Option(3, "--retries", min=0, max=20),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per request."),
    backoff: float = typer.Option(0.5, "--backoff", help="Seconds before the first retry."),
    name: str = typer.Option(None, "--name", help="A name for the run [default: MODEL-ID]."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Ask the model again instead of reusing cached answers."
    ),
    api_key: str = typer.Option(
        None, "--api-key", envvar="MODELWARDEN_EVAL_API_KEY", help="Bearer key for the endpoint."
    ),
    format: Format = FORMAT_OPTION,
) -> None:
    """Generate answers for a golden set, score them and store the run.

    Exit 0 when every item was answered, 1 when the run was stored but some items failed,
    2 on bad input or when the endpoint answered nothing.
    """
    from modelwarden.evals import service  # imported here: keeps --help fast

    with stage_bar(model, enabled=format == Format.table) as bar:

        def started(gs: Any) -> None:
            bar.stage(f"{model}: {gs.name} v{gs.version}")
            bar.total(len(gs))

        result = service.run_golden(
            settings(),
            golden,
            progress=bar.advance,
            on_start=started,
            model=model,
            endpoint=endpoint,
            concurrency=concurrency,
            temperature=temperature,
            max_tokens=max_tokens,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            use_cache=not no_cache,
            name=name,
            api_key=api_key,
        )
    run = result.run
    failed = result.failed
    if format == Format.json:
        print_json({**run, "failures": [{"item_id": g.item_id, "error": g.error} for g in failed]})
    else:
        print_table([_run_row(run)], title=f"Run {run['id']} ({run['name']})")
        console.print(
            f"{run['n_answered']} of {run['n_items']} items answered, {run['n_cached']} from the "
            f"cache, {run['n_requests']} HTTP request(s) in {run['duration_s']:.1f} s"
        )
        if run["n_cached"]:
            console.print(
                f"{run['n_cached']} of {run['n_answered']} answers came from the cache (asked "
                f"of {run['endpoint']} with the same decoding before; the oldest at "
                f"{run['params'].get('oldest_answer_at') or 'an unknown time'}); "
                "--no-cache asks again"
            )
        if failed:
            print_table(
                [
                    {"item": g.item_id, "attempts": g.attempts, "error": g.error}
                    for g in failed[:10]
                ],
                title=f"{len(failed)} item(s) got no answer",
            )
    if failed:
        err_console.print(
            f"[bold yellow]warning[/]: {len(failed)} item(s) got no answer; the run is stored as "
            "partial and a comparison will leave them out"
        )
        raise typer.Exit(EXIT_CHECK_FAILED)


# ---- list / show -------------------------------------------------------------------------------
@eval_app.command("list")
@handle_errors
def eval_list(
    model: str = typer.Option(None, "--model", "-m", help="Only runs of this model."),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    format: Format = FORMAT_OPTION,
) -> None:
    """Stored runs, newest first."""
    from modelwarden.evals import service  # imported here: keeps --help fast

    state = state_store()
    try:
        runs = service.runs(state, model=model, limit=limit)
    finally:
        state.close()
    if format == Format.json:
        print_json(runs)
    else:
        print_table([_run_row(r) for r in runs], title="Evaluation runs")


@eval_app.command("show")
@handle_errors
def eval_show(
    run: str = typer.Argument(..., help="Run id or name."),
    items: bool = typer.Option(True, "--items/--no-items", help="List every item."),
    format: Format = FORMAT_OPTION,
) -> None:
    """One run: its settings, corpus metrics and items."""
    from modelwarden.evals import service  # imported here: keeps --help fast

    r = service.run_detail(settings(), run, items)
    if format == Format.json:
        print_json(r)
        return
    rows = r.pop("items", [])
    info = [
        {"field": k, "value": v if not isinstance(v, dict) else json.dumps(v)}
        for k, v in r.items()
        if k not in ("corpus", "signatures")
    ]
    print_table(info, title=f"Run {r['id']} ({r['name']})")
    print_table(
        [{"metric": k, "value": v} for k, v in (r["corpus"] or {}).items()], title="Corpus metrics"
    )
    print_table(
        [{"metric": k, "signature": v} for k, v in (r["signatures"] or {}).items()],
        title="Metric signatures",
    )
    if items:
        print_table([_item_row(x) for x in rows], title="Items")


def _item_row(x: dict[str, Any]) -> dict[str, Any]:
    m = x["metrics"] or {}
    v = x["violations"] or {}
    return {
        "item": x["item_id"],
        "must_include": m.get("must_include"),
        "semantic": m.get("semantic"),
        "rougeL": m.get("rougeL"),
        "chrf": m.get("chrf"),
        "violations": ", ".join(k for k, bad in v.items() if bad) or "",
        "latency_ms": x["latency_ms"],
        "cached": x["cached"],
        "error": x["error"] or "",
    }


# ---- compare -----------------------------------------------------------------------------------
class CompareFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"
    junit = "junit"


def _fmt(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def _print_comparison(cmp: Any) -> None:
    a, b = cmp.labels
    if cmp.checks:
        print_table(
            [
                {"check": c.name, "verdict": "pass" if c.passed else "FAIL", "reason": c.reason}
                for c in cmp.checks
            ],
            title=f"Gate {cmp.gate.name}",
        )
    pct = f"{cmp.confidence * 100:g}% CI"
    print_table(
        [
            {
                "metric": m.metric,
                "slice": m.slice or "all",
                "n": m.n,
                a: _fmt(m.mean_a),
                b: _fmt(m.mean_b),
                "delta": _fmt(m.delta, signed=True),
                pct: f"[{_fmt(m.ci_low, True)}, {_fmt(m.ci_high, True)}]",
                "p (Holm)": _fmt(m.p_adjusted),
            }
            for m in cmp.metrics
        ],
        title=f"{b} vs {a}",
    )
    if cmp.outcomes:
        print_table(
            [
                {
                    "outcome": o.outcome,
                    "slice": o.slice or "all",
                    "n": o.n,
                    f"{a} pass": o.pass_a,
                    f"{b} pass": o.pass_b,
                    "regressions": o.regressions,
                    "improvements": o.improvements,
                    "p (Holm)": _fmt(o.p_adjusted),
                }
                for o in cmp.outcomes
            ],
            title="Pass/fail outcomes (McNemar)",
        )
    for w in cmp.warnings:
        err_console.print(f"[bold yellow]warning[/]: {w}")


@eval_app.command("compare")
@handle_errors
def eval_compare(
    run_a: str = typer.Argument(..., help="Baseline run (id or name)."),
    run_b: str = typer.Argument(..., help="Candidate run (id or name)."),
    gate: Path = typer.Option(
        None,
        "--gate",
        help="Gate YAML [default: the gate eval gate-init writes: floors, margins, hard gates].",
    ),
    slice: list[str] = typer.Option(
        None, "--slice", help="Break down by a tag, e.g. plant or topic (repeatable)."
    ),
    format: CompareFormat = typer.Option(CompareFormat.table, "--format", "-f"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the report here (table: Markdown)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and permutation draws."),
    n_boot: int = typer.Option(1000, "--n-boot", min=100, help="Bootstrap resamples."),
) -> None:
    """Compare candidate B with baseline A item by item and judge the gate.

    Exit 0 when the gate passes, 1 when it fails, 2 on bad input.
    """
    from modelwarden.evals import service  # imported here: keeps --help fast

    # Without --gate the metrics are still judged: the default gate is what gate-init writes.
    judged = service.compare(settings(), run_a, run_b, gate, slice, seed=seed, n_boot=n_boot)
    cmp, gate_source = judged.comparison, judged.gate_source
    rendered = {
        CompareFormat.json: lambda: json.dumps(cmp.to_dict(), indent=2, ensure_ascii=False),
        CompareFormat.markdown: cmp.to_markdown,
        CompareFormat.junit: cmp.to_junit_xml,
        CompareFormat.table: cmp.to_markdown,
    }[format]
    verdict = "PASSED" if cmp.passed else "FAILED"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rendered(), encoding="utf-8")
    if format == CompareFormat.table:
        _print_comparison(cmp)
    elif out is None:
        print(rendered())
    summary = (
        f"gate {cmp.gate.name} {verdict}: {cmp.labels[1]} vs {cmp.labels[0]}; "
        f"gate used: {gate_source}"
    )
    if out is not None:
        summary += f" (report written to {out})"
    failed = [c.name for c in cmp.checks if not c.passed]
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    err_console.print(summary, highlight=False)
    if not cmp.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@eval_app.command("gate-init")
@handle_errors
def eval_gate_init(
    out: Path = typer.Option(Path("gate.yaml"), "--out", "-o"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a default release gate: floors, non-inferiority margins and hard gates."""
    from modelwarden.evals import service  # imported here: keeps --help fast

    service.write_default_gate(out, force)
    console.print(f"wrote {out}")


# ---- scorecard ---------------------------------------------------------------------------------
class ScorecardFormat(StrEnum):
    md = "md"
    json = "json"


@eval_app.command("scorecard")
@handle_errors
def eval_scorecard(
    version: str = typer.Argument(..., help="Model version."),
    format: ScorecardFormat = typer.Option(ScorecardFormat.md, "--format", "-f"),
    out: Path = typer.Option(None, "--out", "-o", help="Write it here instead of stdout."),
) -> None:
    """One page on a model version: metrics with 95% intervals, its gate, human review."""
    from modelwarden.governance.service import scorecard_text  # imported here: keeps --help fast

    text = scorecard_text(settings(), version, format.value)
    if out is None:
        print(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
        console.print(f"wrote {out}")
