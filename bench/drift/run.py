"""Drift benchmark: ModelWarden's default suite against Evidently and Alibi Detect.

One command, from the repository root::

    python bench/drift/run.py            # everything, 100 seeds per scenario
    python bench/drift/run.py --quick    # 10 seeds, for a smoke run

It creates ``bench/drift/.venv`` (ignored by git) with ``evidently`` and ``alibi-detect[torch]``,
installed against the project's constraints file so that pip keeps the local CPU build of torch.
ModelWarden runs in the project's own environment from ``src``. Every job runs in a subprocess
under an address-space limit, so an anchor that runs out of memory is recorded as such, and the
Markdown is written to the ``drift`` section of ``docs/benchmarks.md`` (the results behind it to
``docs/benchmarks-drift.json``, which ``--merge`` reads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import write_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
VENV = os.path.join(HERE, ".venv")
ANCHOR_PACKAGES = ["evidently", "alibi-detect[torch]"]
CONSTRAINTS = os.path.join(ROOT, "constraints.txt")

TOOLS = {
    "modelwarden": "ModelWarden `DriftSuite()` (default)",
    "modelwarden_1t": "ModelWarden `DriftSuite()`, BLAS on 1 thread (timing only)",
    "evidently_model": "Evidently embeddings drift, `model` (domain classifier)",
    "evidently_distance": "Evidently embeddings drift, `distance` (euclidean)",
    "evidently_mmd": "Evidently embeddings drift, `mmd`",
    "evidently_ratio": "Evidently embeddings drift, `ratio` (share of drifted components)",
    "alibi_mmd": "Alibi Detect `MMDDrift` (pytorch)",
    "alibi_classifier": "Alibi Detect `ClassifierDrift` (pytorch, linear, 5 folds)",
}
SCENARIOS = {
    "a": ["drift", "control"],
    "b": ["grow30", "grow15", "control"],
    "c": ["grow30", "grow15", "control"],
}
CASE_TITLES = {
    "a": "(a) seed example: 100 vs 50 rows, 768-d, `randn*0.1+0.5` vs `+0.8` (control `+0.5`)",
    "b": "(b) 10 topics, L2-normalised 384-d, 5,000 vs 1,000 rows",
    "c": "(c) 10 topics, L2-normalised 768-d, 50,000 vs 10,000 rows",
}
SCENARIO_TITLES = {
    "drift": "drift",
    "control": "control (false alarms)",
    "grow30": "topic 10%→30%",
    "grow15": "topic 10%→15%",
}


@dataclass
class JobResult:
    tool: str
    case: str
    scenario: str
    seeds: int
    decisions: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    data_rss_mb: float | None = None
    gflops: list[float] = field(default_factory=list)
    error: str | None = None
    wall: float = 0.0
    when: str = ""
    load: float = 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=100, help="seeds per scenario (default 100)")
    ap.add_argument(
        "--seeds-large",
        type=int,
        default=40,
        help="seeds per scenario of case (c), whose windows take seconds per test (default 40)",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the stored results (docs/benchmarks-drift.json) of the tools and cases "
        "not run this time, e.g. to re-time ModelWarden on a quiet machine",
    )
    ap.add_argument(
        "--anchor-budget",
        type=float,
        default=600.0,
        help="seconds of tests per anchor scenario; slower anchors run fewer seeds",
    )
    ap.add_argument(
        "--probe-timeout",
        type=float,
        default=1800.0,
        help="seconds the one-seed probe of a tool and case may take",
    )
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument(
        "--mem-limit-gb",
        type=float,
        default=8.0,
        help="address-space limit per job, so no job can exhaust the machine",
    )
    ap.add_argument("--skip-install", action="store_true", help="use bench/drift/.venv as is")
    ap.add_argument("--quick", action="store_true", help="10 seeds, for a smoke run")
    ap.add_argument(
        "--out",
        help="write the Markdown to this file (default: the drift section of docs/benchmarks.md)",
    )
    args = ap.parse_args()
    seeds = 10 if args.quick else args.seeds
    cases = [c for c in args.cases.split(",") if c]
    tools = [t for t in args.tools.split(",") if t]
    started = time.time()
    load_before = os.getloadavg()

    install_error = None
    if any(not is_ours(t) for t in tools):
        install_error = ensure_anchor_venv(args.skip_install)

    results: list[JobResult] = []
    footprints: dict[tuple[str, str], JobResult] = {}
    store = (
        os.path.splitext(args.out)[0] + ".json"
        if args.out
        else os.path.join(ROOT, "docs", "benchmarks-drift.json")
    )
    if args.merge and os.path.exists(store):
        with open(store, encoding="utf-8") as fh:
            kept = json.load(fh)
        rerun = {(t, c) for t in tools for c in cases}
        results += [JobResult(**r) for r in kept["results"] if (r["tool"], r["case"]) not in rerun]
        footprints.update(
            {
                (r["tool"], r["case"]): JobResult(**r)
                for r in kept["footprints"]
                if (r["tool"], r["case"]) not in rerun
            }
        )

    def write() -> None:
        doc = render(results, footprints, seeds, install_error, started, load_before, args)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(doc)
        else:
            write_section("drift", doc)
        with open(store, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "results": [r.__dict__ for r in results],
                    "footprints": [r.__dict__ for r in footprints.values()],
                },
                fh,
            )

    # Case by case, ModelWarden first within a case, so that the cheaper figures exist even if
    # a slow anchor on the largest case is cut short; the document is rewritten after every job.
    order = [t for t in tools if is_ours(t)] + [t for t in tools if not is_ours(t)]
    for case in cases:
        for tool in order:
            if not is_ours(tool) and install_error:
                continue
            # One seed in a fresh process first: its peak RSS is the footprint of one test,
            # and its time decides how many seeds a slow anchor can afford.
            probe = run_job(
                tool, case, SCENARIOS[case][0], 1, 900_000, args, timeout=args.probe_timeout
            )
            footprints[(tool, case)] = probe
            if probe.error:
                results.extend(
                    JobResult(tool, case, s, 0, error=probe.error) for s in SCENARIOS[case]
                )
                print(f"{tool:20s} case {case} probe failed: {probe.error}", flush=True)
                write()
                continue
            per_test = max(statistics.median(probe.seconds), 1e-3)
            n = min(seeds, args.seeds_large) if case == "c" else seeds
            if tool == "modelwarden_1t":
                n = min(seeds, 10)
            elif not is_ours(tool):
                n = max(1, min(n, int(args.anchor_budget / per_test)))
            for scenario in SCENARIOS[case]:
                timeout = max(900.0, 5 * n * per_test + 300)
                res = run_job(tool, case, scenario, n, 0, args, timeout=timeout)
                results.append(res)
                print(
                    f"{tool:20s} case {case} {scenario:8s} seeds={res.seeds:4d} "
                    f"alarm={rate(res.decisions):.3f} median={median(res.seconds):.3f}s "
                    f"{res.error or ''}",
                    flush=True,
                )
                write()
    write()
    print(f"wrote {args.out or 'docs/benchmarks.md (drift section)'}")


def ensure_anchor_venv(skip_install: bool) -> str | None:
    """Create the anchors' environment; the pip error, verbatim, if it cannot be done."""
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        if skip_install:
            return "bench/drift/.venv does not exist and --skip-install was given"
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if skip_install:
        return None
    cmd = [
        py,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        "-c",
        CONSTRAINTS,
        *ANCHOR_PACKAGES,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WARNING: Location")]
        return "`" + " ".join(cmd[1:]) + "` failed:\n\n```\n" + "\n".join(lines[-25:]) + "\n```"
    return None


def is_ours(tool: str) -> bool:
    return tool.startswith("modelwarden")


def python_for(tool: str) -> str:
    if is_ours(tool):
        own = os.path.join(ROOT, ".venv", "bin", "python")
        return own if os.path.exists(own) else sys.executable
    return os.path.join(VENV, "bin", "python")


def run_job(
    tool: str,
    case: str,
    scenario: str,
    seeds: int,
    seed_start: int,
    args: argparse.Namespace,
    timeout: float,
) -> JobResult:
    job = {
        "tool": tool,
        "case": case,
        "scenario": scenario,
        "seeds": seeds,
        "seed_start": seed_start,
    }
    limit = int(args.mem_limit_gb * 2**30)

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.nice(5)

    threads = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env = {
        **os.environ,
        **(threads if tool.endswith("_1t") else {}),
        "PYTHONPATH": os.path.join(ROOT, "src"),
        "PYTHONHASHSEED": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    res = JobResult(tool, case, scenario, seeds)
    res.when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    res.load = os.getloadavg()[0]
    t0 = time.time()
    try:
        proc = subprocess.run(
            [python_for(tool), os.path.join(HERE, "worker.py"), json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=limits,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        res.error = f"timed out after {timeout:.0f} s"
        res.wall = time.time() - t0
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        for line in reversed(out.strip().splitlines()):
            try:
                partial = json.loads(line)
            except json.JSONDecodeError:
                continue
            res.decisions, res.seconds = partial["decisions"], partial["seconds"]
            res.seeds = len(res.decisions)
            break
        return res
    res.wall = time.time() - t0
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        data = json.loads(last)
    except json.JSONDecodeError:
        tail = proc.stderr.strip().splitlines()[-3:]
        killed = proc.returncode < 0 or "MemoryError" in proc.stderr or "bad_alloc" in proc.stderr
        res.error = ("out of memory or killed" if killed else "crashed") + (
            f" (exit {proc.returncode}): " + " | ".join(tail)
        )[:400]
        return res
    res.decisions = data["decisions"]
    res.seconds = data["seconds"]
    res.peak_rss_mb = data.get("peak_rss_mb")
    res.gflops = data.get("sgemm_gflops", [])
    res.data_rss_mb = data.get("data_rss_mb")
    res.error = data.get("error")
    res.seeds = len(res.decisions)
    return res


def rate(xs: list[bool]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def fmt_rate(res: JobResult | None) -> str:
    if res is None:
        return "–"
    if res.error and not res.decisions:
        return "error"
    k, n = sum(res.decisions), len(res.decisions)
    lo, hi = wilson(k, n)
    return f"{k / n:.2f} ({lo:.2f}–{hi:.2f}), n={n}"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(fh.readline().split()[1])
            ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
    }


_VERSIONS = """
import importlib.metadata as m, json
out = {}
for p in ["numpy", "scipy", "scikit-learn", "torch", "evidently", "alibi-detect"]:
    try:
        out[p] = m.version(p)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def versions() -> dict[str, str]:
    out = {}
    for label, py in (("project", python_for("modelwarden")), ("anchors", python_for("anchor"))):
        if not os.path.exists(py):
            continue
        proc = subprocess.run([py, "-c", _VERSIONS], capture_output=True, text=True)
        try:
            found = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            continue
        out[label] = ", ".join(f"{k} {v}" for k, v in found.items())
    return out


def render(
    results: list[JobResult],
    footprints: dict[tuple[str, str], JobResult],
    seeds: int,
    install_error: str | None,
    started: float,
    load_before: tuple[float, ...],
    args: argparse.Namespace,
) -> str:
    m = machine()
    by = {(r.tool, r.case, r.scenario): r for r in results}
    lines = [
        "## Drift detection",
        "",
        f"Measured {dt.date.today().isoformat()} with `python bench/drift/run.py`"
        f"{' --quick' if args.quick else ''} on {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, "
        f"Python {m['python']}; load average {load_before[0]:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (the machine is shared, so times are upper bounds). "
        f"Total run {(time.time() - started) / 60:.0f} min.",
        "",
    ]
    for label, vs in versions().items():
        lines.append(f"- {label} environment: {vs}")
    lines += [
        "",
        "Every number is the alert rate over independent seeds at alpha = 0.05, with its 95% "
        "Wilson interval. In the topic cases the baseline gives each of 10 topics 10% of the "
        "traffic; the current window gives topic 0 either 30% or 15% (the other nine share the "
        "rest), and the control keeps 10%. Topic counts are drawn at random, as in real traffic. "
        "Data come from `modelwarden.drift.synthetic` with the same seeds for every tool. "
        "Time is the median wall time of one `fit` + `test` (imports and first-call set-up "
        "excluded); peak RSS is that of a fresh process running one test, data included "
        "(the RSS with the data alone in brackets). The machine is shared: *sgemm GFLOPS* is "
        "the float32 matrix-product throughput measured inside each job before and after its "
        "tests (about 280 on these two cores when they are idle, half that on one thread), so a low figure "
        "means the times were taken on busy cores. The 1-thread ModelWarden row reruns a few "
        "seeds with BLAS limited to one thread, which is what a busy machine rewards.",
        "",
    ]
    for case in ("a", "b", "c"):
        if not any(r.case == case for r in results):
            continue
        scen = SCENARIOS[case]
        lines += [
            f"### {CASE_TITLES[case]}",
            "",
            "| tool | "
            + " | ".join(SCENARIO_TITLES[s] for s in scen)
            + " | time / test | peak RSS | sgemm GFLOPS | measured (load average) |",
            "|---" * (len(scen) + 5) + "|",
        ]
        for tool in TOOLS:
            rows = [by.get((tool, case, s)) for s in scen]
            if all(r is None for r in rows):
                continue
            fp = footprints.get((tool, case))
            secs = [x for r in rows if r for x in r.seconds]
            t = f"{median(secs):.3f} s" if secs else "–"
            mem = "–"
            if fp and fp.peak_rss_mb and not fp.error:
                mem = f"{fp.peak_rss_mb:,.0f} MB ({fp.data_rss_mb or 0:,.0f})"
            elif fp and fp.error:
                mem = "see note"
            flops = [x for r in rows if r for x in r.gflops]
            g = f"{median(flops):.0f}" if flops else "–"
            ran = [r for r in rows if r and r.when]
            when = (
                f"{ran[0].when} ({min(r.load for r in ran):.1f}–{max(r.load for r in ran):.1f})"
                if ran
                else "–"
            )
            lines.append(
                f"| {TOOLS[tool]} | "
                + " | ".join(fmt_rate(r) for r in rows)
                + f" | {t} | {mem} | {g} | {when} |"
            )
        lines.append("")
    notes = []
    if install_error:
        notes.append("The anchors could not be installed: " + install_error)
    for (tool, case), fp in footprints.items():
        if fp.error:
            notes.append(f"{TOOLS[tool]}, case ({case}): {fp.error}")
    for r in results:
        if r.error and r.decisions:
            notes.append(
                f"{TOOLS[r.tool]}, case ({r.case}) {r.scenario}: stopped after "
                f"{len(r.decisions)} seeds: {r.error}"
            )
        wanted = min(seeds, args.seeds_large) if r.case == "c" else seeds
        if not is_ours(r.tool) and r.decisions and len(r.decisions) < wanted:
            notes.append(
                f"{TOOLS[r.tool]}, case ({r.case}) {r.scenario}: {len(r.decisions)} "
                f"seeds instead of {wanted}, to stay within the per-job time budget."
            )
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]
    lines += goals(by, footprints)
    return "\n".join(lines) + "\n"


def goals(
    by: dict[tuple[str, str, str], JobResult], footprints: dict[tuple[str, str], JobResult]
) -> list[str]:
    out = ["Goals for ModelWarden's default suite:", ""]

    def check(label: str, ok: bool | None, value: str) -> None:
        mark = "n/a" if ok is None else ("met" if ok else "NOT met")
        out.append(f"- {label}: {value} — {mark}")

    for case in ("a", "b", "c"):
        ctrl = by.get(("modelwarden", case, "control"))
        if ctrl and ctrl.decisions:
            k, n = sum(ctrl.decisions), len(ctrl.decisions)
            lo, _ = wilson(k, n)
            check(f"false alarms <= alpha, case ({case})", lo <= 0.05, f"{k}/{n}")
    for case in ("b", "c"):
        r = by.get(("modelwarden", case, "grow15"))
        if r and r.decisions:
            check(
                f"power >= 0.95 on 10%→15%, case ({case})",
                rate(r.decisions) >= 0.95,
                f"{rate(r.decisions):.2f}",
            )
    r = by.get(("modelwarden", "a", "drift"))
    if r and r.decisions:
        check("seed example alerts", rate(r.decisions) == 1.0, f"{rate(r.decisions):.2f}")
    secs_b = [
        x
        for s in SCENARIOS["b"]
        for x in (by.get(("modelwarden", "b", s)) or JobResult("", "", "", 0)).seconds
    ]
    one_b = [
        x
        for s in SCENARIOS["b"]
        for x in (by.get(("modelwarden_1t", "b", s)) or JobResult("", "", "", 0)).seconds
    ]
    if secs_b:
        extra = f" (1 BLAS thread: {median(one_b):.3f} s)" if one_b else ""
        check("case (b) <= 0.5 s", median(secs_b) <= 0.5, f"{median(secs_b):.3f} s{extra}")
    secs_c = [
        x
        for s in SCENARIOS["c"]
        for x in (by.get(("modelwarden", "c", s)) or JobResult("", "", "", 0)).seconds
    ]
    fp = footprints.get(("modelwarden", "c"))
    one_c = [
        x
        for s in SCENARIOS["c"]
        for x in (by.get(("modelwarden_1t", "c", s)) or JobResult("", "", "", 0)).seconds
    ]
    if secs_c:
        extra = f" (1 BLAS thread: {median(one_c):.2f} s)" if one_c else ""
        check("case (c) <= 5 s", median(secs_c) <= 5.0, f"{median(secs_c):.2f} s{extra}")
    if fp and fp.peak_rss_mb:
        check("case (c) <= 2 GB", fp.peak_rss_mb <= 2048, f"{fp.peak_rss_mb:,.0f} MB peak RSS")
    return [*out, ""]


if __name__ == "__main__":
    main()
