"""The weekly report on the demo's data: cold (first run) and warm (the same data again); and the
weekly report on a large store (scale mode).

    .venv/bin/python bench/report/run.py [--embedder minilm|hashing] [--runs 3]
    .venv/bin/python bench/report/run.py --store-requests 10000000 --week-requests 1000000 \
        [--data /work/bigdata/report-10m] [--prepare-only] [--engines duckdb,spark]

The data: the demo's four weeks (28 days, seed 7, drift and incident scenarios: 5,465 requests),
ingested and with prompt embeddings, as ``make demo`` leaves them. Each report runs in a fresh
process (``modelwarden report`` as a user runs it: imports, store, drift, rendering), so its wall
time and peak memory are its own. The first run computes the drift suite and embeds the answers;
later runs on the unchanged store reuse the kept drift rows (``modelwarden.report.cache``).
Goal: under 3 s warm.

Scale mode (``--store-requests N --week-requests M``): a store of N requests over N / M weeks
(M requests a week, the last week complete), written fast in the store's real layout (one Parquet
part per UTC day under ``requests/date=...``, the schema the store appends; vectorised with NumPy
and Arrow, not through ingest). Prompts and answers are drawn from the demo simulator's
(prompt, answer) pairs; each request carries the prompt and answer vectors of the ``hashing-384``
embedder (computed once per distinct text, stored as ``append_embeddings`` stores them: under
``embeddings/kind=.../embedder=hashing-384/date=...`` by the request's UTC day, registered in
``embedders.json``), so
the report embeds nothing and reads the stored vectors, as a store kept up to date by the
embedding worker would have them. ``--data DIR`` keeps the generated store there and reuses it
(a ``bench-scale.json`` in it records what was generated); ``--prepare-only`` generates and stops.
Each report runs in a fresh process (``modelwarden --engine E report``) after the report's cache
(``DATA/cache``) is removed, so every run computes the KPIs and the drift suite from the store.
Spark's session start-up is measured apart in a process of its own (``spark_session`` alone),
since the report starts it inside its own run. Goal (issue 13): under 60 s and 4 GB on two cores
on DuckDB at 10M requests with 1M in the week.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import machine, table, write_section  # noqa: E402

GOAL_WARM_S = 3.0
GOAL_SCALE_S = 60.0
GOAL_SCALE_MB = 4096
SCALE_EMBEDDER = "hashing"
# Monday 00:00 UTC of the store's first week.
SCALE_START = "2026-08-03T00:00:00"


def _prepare(data: Path, embedder: str) -> int:
    from modelwarden.embed.service import embed_missing
    from modelwarden.ingest.core import Ingestor
    from modelwarden.safety.service import safety_checker
    from modelwarden.settings import Settings
    from modelwarden.simulate.traffic import simulate
    from modelwarden.store.reads import open_store

    s = Settings(data_dir=data, embedder=embedder)
    sim = simulate(days=28, seed=7, scenarios=("drift", "incident"))
    ing = Ingestor(open_store(s), safety_checker(s))
    for kind, rows in (
        ("requests", sim.requests),
        ("feedback", sim.feedback),
        ("escalations", sim.escalations),
    ):
        ing.ingest_raw(kind, [(str(i), r) for i, r in enumerate(rows)], "bench")
    embed_missing(s, "prompt")
    return len(sim.requests)


def _text_pool() -> tuple[list[str], list[str]]:
    """(prompt, answer) pairs of the demo simulator, as its traffic draws them."""
    from modelwarden.simulate.traffic import simulate

    sim = simulate(days=28, seed=7, scenarios=("drift", "incident"))
    pairs = sorted({(r["user_prompt"], r["generated_response"]) for r in sim.requests})
    return [p for p, _ in pairs], [a for _, a in pairs]


def make_scale_store(data: Path, n: int, per_week: int, seed: int = 0) -> dict[str, object]:
    """N requests over N / per_week weeks, with stored hashing-384 prompt and answer vectors."""
    from datetime import date

    import numpy as np
    import pyarrow as pa

    from modelwarden.embed import get_embedder
    from modelwarden.store.logstore import LogStore, write_parquet_atomic
    from modelwarden.store.schema import REQUESTS, embedding_schema

    weeks = max(1, n // per_week)
    days = weeks * 7
    prompts, answers = _text_pool()
    emb = get_embedder(SCALE_EMBEDDER, 2)
    store = LogStore(data / "log")
    store.register_embedder(emb.name, emb.dim)
    uniq_p, inv_p = np.unique(np.asarray(prompts, dtype=object), return_inverse=True)
    uniq_a, inv_a = np.unique(np.asarray(answers, dtype=object), return_inverse=True)
    vec_p = emb.embed(list(uniq_p))
    vec_a = emb.embed(list(uniq_a))
    pool_p = pa.array(list(uniq_p), pa.string())
    pool_a = pa.array(list(uniq_a), pa.string())
    plants = np.array(["Plant_A", "Plant_B", "Plant_C", "Plant_D"])
    versions = np.array(["sop-assistant-v1.1", "sop-assistant-v1.2"])
    start = np.datetime64(SCALE_START, "us")
    done = data / ".days"  # outside log/: a generation stopped midway resumes at its day
    done.mkdir(parents=True, exist_ok=True)
    for d in range(days):
        written = n * d // days
        m = n * (d + 1) // days - written
        if (done / str(d)).exists():
            continue
        # A stream per day, so that any day can be (re)generated alone.
        rng = np.random.default_rng([seed, d])
        ts = np.sort(
            start
            + np.timedelta64(d, "D")
            + rng.integers(0, 86400 * 10**6, m).astype("timedelta64[us]")
        )
        pick = rng.integers(0, len(prompts), m)
        fb = rng.integers(1, 6, m).astype("float64")
        fb[rng.random(m) < 0.6] = np.nan
        ids = pa.array(np.char.add("r", np.arange(written, written + m).astype(str)))
        cols = {
            "request_id": ids,
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "plant_id": pa.array(plants[rng.integers(0, 4, m)]),
            "model_version": pa.array(versions[(rng.random(m) < 0.05).astype(int)]),
            "user_prompt": pool_p.take(pa.array(inv_p[pick])),
            "generated_response": pool_a.take(pa.array(inv_a[pick])),
            "latency_ms": pa.array(rng.lognormal(5.6, 0.4, m)),
            "human_feedback_score": pa.array(fb, pa.float64(), from_pandas=True).cast(pa.int8()),
            "contains_safety_keyword": pa.array(rng.random(m) < 0.02),
            "safety_computed": pa.array(np.ones(m, bool)),
            "route": pa.array(np.where(rng.random(m) < 0.05, "canary", "stable")),
        }
        full = pa.table(
            {f.name: (cols[f.name] if f.name in cols else pa.nulls(m, f.type)) for f in REQUESTS},
            schema=REQUESTS,
        )
        day = str(np.datetime64(SCALE_START, "D") + np.timedelta64(d, "D"))
        write_parquet_atomic(full, data / "log" / "requests" / f"date={day}" / "part-0.parquet")
        now = pa.repeat(pa.scalar(0, pa.timestamp("us", tz="UTC")), m)
        for kind, vecs, inv in (("prompt", vec_p, inv_p), ("response", vec_a, inv_a)):
            flat = pa.array(vecs[inv[pick]].reshape(-1), pa.float32())
            t = pa.table(
                {
                    "request_id": ids,
                    "vector": pa.FixedSizeListArray.from_arrays(flat, emb.dim),
                    "embedded_at": now,
                },
                schema=embedding_schema(emb.dim),
            )
            # Under the request's UTC day, as append_embeddings keeps them.
            target = store.embedding_dir(kind, emb.name, date.fromisoformat(day))
            write_parquet_atomic(t, target / "part-0.parquet")
        (done / str(d)).touch()
        if (d + 1) % 7 == 0:
            print(f"  week {(d + 1) // 7}/{weeks}: {written + m:,} requests", flush=True)
    return {
        "store_requests": n,
        "week_requests": per_week,
        "weeks": weeks,
        "start": SCALE_START,
        "embedder": emb.name,
        "distinct_prompts": len(uniq_p),
        "distinct_answers": len(uniq_a),
        "seed": seed,
    }


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and its descendants (the CLI, and Spark's JVM), in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            pages = int(Path(f"/proc/{d}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
        rss[int(d)] = pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _report(
    data: Path,
    embedder: str,
    engine: str | None = None,
    env: dict[str, str] | None = None,
    cap_mb: float | None = None,
    timeout_s: float | None = None,
) -> dict[str, float | str]:
    """One ``modelwarden report`` in a fresh process: wall, CPU, peak memory. With ``cap_mb`` the
    process tree is stopped when its resident memory passes it (the machine is shared)."""
    cli = str(Path(sys.executable).parent / "modelwarden")
    cmd = ["/usr/bin/time", "-f", "%e %M %U %S", cli, "--data", str(data), "--embedder", embedder]
    if engine:
        cmd += ["--engine", engine]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [*cmd, "report"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
            start_new_session=True,
        )
        tree_peak = 0.0
        while proc.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_mb(proc.pid))
            over_memory = bool(cap_mb and tree_peak > cap_mb)
            if over_memory or (timeout_s and time.perf_counter() - t0 > timeout_s):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return {
                    "seconds": f"stopped at {time.perf_counter() - t0:.0f}",
                    "peak_rss_mb": f"> {cap_mb:,.0f}" if over_memory else "—",
                    "tree_peak_mb": round(tree_peak),
                    "load_1min": round(os.getloadavg()[0], 1),
                }
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise RuntimeError(stderr[-3000:])
    _, rss_kb, user, system = stderr.strip().splitlines()[-1].split()
    return {
        "seconds": round(wall, 2),
        "cpu_seconds": round(float(user) + float(system), 2),
        "peak_rss_mb": round(int(rss_kb) / 1024),
        "tree_peak_mb": round(tree_peak),
        "load_1min": round(os.getloadavg()[0], 1),
    }


SPARK_START = r"""
import json, sys, time
t0 = time.perf_counter()
from modelwarden.store.engines import spark_session
spark_session(sys.argv[1])
print(json.dumps({"start_s": time.perf_counter() - t0}))
"""


def _spark_start(master: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SPARK_START, master], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["start_s"])


def scale(args: argparse.Namespace) -> None:
    import shutil

    n, per_week = args.store_requests, args.week_requests
    if not per_week or per_week > n:
        raise SystemExit("--week-requests must be given and at most --store-requests")
    where = machine()
    data = Path(args.data or tempfile.mkdtemp(prefix="mw-bench-report-"))
    marker = data / "bench-scale.json"
    # "layout": vectors by day; a store generated before (flat vectors) is generated again.
    want = {"store_requests": n, "week_requests": per_week, "layout": "embeddings-by-day"}
    meta = json.loads(marker.read_text()) if marker.exists() else None
    started = data / "bench-scale.partial.json"
    if meta is None or {k: meta.get(k) for k in want} != want:
        partial = json.loads(started.read_text()) if started.exists() else None
        if data.exists() and any(data.iterdir()) and partial != want:
            if meta is None and partial is None:
                raise SystemExit(f"{data} holds something else; give an empty or new directory")
            shutil.rmtree(data)
        data.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps(want))
        print(
            f"generating (or resuming) a store of {n:,} requests ({per_week:,} a week) in {data}",
            flush=True,
        )
        t0 = time.perf_counter()
        meta = make_scale_store(data, n, per_week)
        meta["layout"] = want["layout"]
        meta["generated_s"] = round(time.perf_counter() - t0)
        marker.write_text(json.dumps(meta, indent=2))
    else:
        print(f"reusing the store in {data}: {meta}", flush=True)
    if args.prepare_only:
        return
    rows = []
    failures: list[str] = []
    for engine in args.engines.split(","):
        env = {}
        start_s = None
        if engine == "spark":
            env["MODELWARDEN_SPARK_MASTER"] = args.spark_master
            start_s = _spark_start(args.spark_master)
        for i in range(args.runs):
            # Every run computes from the store: the report's kept rows are removed.
            shutil.rmtree(data / "cache", ignore_errors=True)
            try:
                r = _report(data, SCALE_EMBEDDER, engine, env, args.memory_cap_mb, args.timeout_s)
            except RuntimeError as exc:
                last = str(exc).strip().splitlines()[-1:] or ["(no message)"]
                r = {"seconds": "failed", "error": last[0][:200]}
                failures.append(f"{engine} run {i + 1}: {last[0][:200]}")
            row = {"engine": engine, "run": i + 1, **r}
            if start_s is not None:
                row["spark_start_s"] = round(start_s, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    duck = [r for r in rows if r["engine"] == "duckdb"]
    done = [r for r in duck if not isinstance(r["seconds"], str)]
    if duck and not done:
        verdict = (
            "NOT met: no DuckDB run finished (stopped at the memory cap or the time limit, or "
            f"failed: see the table; goal < {GOAL_SCALE_S:g} s and < {GOAL_SCALE_MB:,} MiB)"
        )
    elif done:
        best = min(done, key=lambda r: r["seconds"])
        ok = best["seconds"] < GOAL_SCALE_S and best["peak_rss_mb"] < GOAL_SCALE_MB
        verdict = (
            f"{'met' if ok else 'NOT met'}: best DuckDB run {best['seconds']:.1f} s, "
            f"{best['peak_rss_mb']:,} MiB peak (goal < {GOAL_SCALE_S:g} s and "
            f"< {GOAL_SCALE_MB:,} MiB on two cores)"
        )
    else:
        verdict = "not judged (no DuckDB run)"
    md = (
        "## Weekly report at scale (`bench/report/run.py --store-requests N --week-requests M`)"
        f"\n\nMachine: {where}.\n\n"
        f"`modelwarden --engine E report` on a store of {n:,} requests over {meta['weeks']} weeks "
        f"({per_week:,} in the reported week, the three weeks before it as the drift baseline), "
        "each run a fresh process with the report's cache removed first, so it computes the KPI "
        "tables and the drift suite (prompts and answers, overall and per plant; quality per "
        "plant and version) from the store. The store was generated in its on-disk layout (one "
        "Parquet part per UTC day); prompts and answers are the demo simulator's "
        f"({meta['distinct_prompts']:,} distinct prompts), and every request has stored prompt "
        f"and answer vectors of the `{meta['embedder']}` embedder (the fast hashing embedder, "
        "computed once per distinct text and written as `append_embeddings` writes them), so "
        "the report embeds nothing. *spark_start_s* is Spark's session start-up (JVM and "
        f"session, `{args.spark_master}`) measured alone in a process of its own; the Spark "
        "report's own time includes its start-up too.\n\n"
        + table(
            rows,
            [
                "engine",
                "run",
                "seconds",
                "cpu_seconds",
                "peak_rss_mb",
                "tree_peak_mb",
                "spark_start_s",
                "load_1min",
            ],
        )
        + f"\nGoal: {verdict}. *peak_rss_mb* is the peak resident memory of the `modelwarden` "
        "process (/usr/bin/time); *tree_peak_mb* that of its whole process tree, Spark's JVM "
        "included, sampled every 0.2 s. A run whose tree passed "
        f"{args.memory_cap_mb:,.0f} MiB was stopped there (the machine is shared), and its "
        "time is when it was stopped. *cpu_seconds* is user + system CPU time of the "
        "`modelwarden` process and its children that were waited for; *load_1min* is the load "
        f"average when the run ended. A run still going after {args.timeout_s:,.0f} s was "
        "stopped too.\n" + "".join(f"\n- Failed: {f}" for f in failures)
    )
    print(md)
    if not args.no_write:
        write_section(f"report-scale-{n}", md)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--store-requests", type=int, help="Scale mode: requests in the store.")
    ap.add_argument("--week-requests", type=int, help="Scale mode: requests in each week.")
    ap.add_argument("--data", help="Scale mode: keep (and reuse) the generated store here.")
    ap.add_argument("--prepare-only", action="store_true", help="Scale mode: generate, no runs.")
    ap.add_argument("--engines", default="duckdb,spark", help="Scale mode: engines to run.")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument(
        "--timeout-s",
        type=float,
        default=1800,
        help="Scale mode: stop a report still running after this many seconds (0: none).",
    )
    ap.add_argument(
        "--memory-cap-mb",
        type=float,
        default=12_000,
        help="Scale mode: stop a report whose process tree holds more than this (0: no cap).",
    )
    args = ap.parse_args()
    if args.store_requests:
        args.runs = args.runs or 2
        scale(args)
        return
    args.runs = args.runs or 3
    where = machine()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "warden-data"
        n = _prepare(data, args.embedder)
        rows = []
        for i in range(args.runs):
            r = _report(data, args.embedder)
            rows.append({"run": "cold" if i == 0 else f"warm {i}", **r})
            print(json.dumps(rows[-1]), flush=True)
    warm = [r["seconds"] for r in rows[1:]]
    best = min(warm) if warm else None
    verdict = (
        "no warm run"
        if best is None
        else f"{'met' if best < GOAL_WARM_S else 'NOT met'}: best warm {best:.2f} s "
        f"(goal < {GOAL_WARM_S:g} s)"
    )
    md = (
        "## Weekly report (`bench/report/run.py`)\n\n"
        f"Machine: {where}. The cores were shared with other work while this ran, so the "
        "figures are upper bounds.\n\n"
        f"`modelwarden report` on the demo's data ({n} requests, embedder {args.embedder}), "
        "each run a fresh process. The cold run computes the drift suite and embeds the answers; "
        "warm runs reuse the drift rows kept for the unchanged store.\n\n"
        + table(rows, ["run", "seconds", "cpu_seconds", "peak_rss_mb", "load_1min"])
        + f"\nGoal: {verdict}. *cpu_seconds* is the process's user + system CPU time, which the "
        "other work on the machine does not inflate; *load_1min* is the load average when the "
        "run ended.\n"
    )
    print(md)
    if not args.no_write:
        write_section("report", md)


if __name__ == "__main__":
    main()
