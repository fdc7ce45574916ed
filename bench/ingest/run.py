"""Ingest throughput: Parquet with 384-d embeddings against a raw DuckDB insert, and JSONL;
and the cost of one small append as the store grows.

    .venv/bin/python bench/ingest/run.py [--rows 1000000] [--jsonl-rows 100000]
                                         [--scale 1000000,10000000] [--with-50m] [--only-scale]
                                         [--data DIR] [--prepare-only]

The scale part fills a store through ``LogStore.append`` (1M-row batches over 28 days) and, at
each size in ``--scale`` (``--with-50m`` adds 50M), times appends of 100 records falling in one
day: new keys, and keys already stored. The idempotency check (the key index's reconciliation
and look-up) is timed on its own; goal: the same at 1M and at the largest size within 2×.
With ``--data DIR`` each size has a store of its own in ``DIR/ingest-scale/N``, filled once (by
``--prepare-only`` or the first run) and reused: a run adds its 4,000 new records under keys of
its own, so later runs measure the same store grown by that much.

The anchor reads the same Parquet file into Arrow and inserts it into an on-disk DuckDB table
(no validation, no idempotency, no partitioning). ModelWarden reads, validates every field,
computes nothing it was given, checks every key against the store and writes day-partitioned
Parquet with fsync. Each side runs in its own process so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import Timer, machine, peak_rss_mb, run_json, table, write_section  # noqa: E402

DIM = 384


def make_table(n: int, dim: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-10-26T00:00:00", "us")
    ts = start + rng.integers(0, 28 * 86400 * 10**6, size=n).astype("timedelta64[us]")
    vec = rng.standard_normal((n, dim), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    plants = np.array(["Plant_A", "Plant_B", "Plant_C", "Plant_D"])
    return pa.table(
        {
            "request_id": pa.array([f"req-{i:09d}" for i in range(n)]),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "plant_id": pa.array(plants[rng.integers(0, 4, n)]),
            "model_version": pa.array(["sop-assistant-v1.1"] * n),
            "user_prompt": pa.array(
                ["What is the lubrication schedule for the main conveyor?"] * n
            ),
            "generated_response": pa.array(
                ["The main conveyor requires lubrication every 200 operating hours."] * n
            ),
            "latency_ms": pa.array(rng.lognormal(5.6, 0.4, n)),
            "human_feedback_score": pa.array(rng.integers(1, 6, n).astype("int8")),
            "contains_safety_keyword": pa.array(rng.random(n) < 0.05),
            "prompt_embedding": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), dim),
        }
    )


def side_raw(parquet: str, workdir: str) -> dict:
    import duckdb
    import pyarrow.parquet as pq

    with Timer() as t:
        arrow = pq.read_table(parquet)
        con = duckdb.connect(str(Path(workdir) / "raw.duckdb"))
        con.execute("SET enable_progress_bar=false")
        con.register("arrow_tbl", arrow)
        con.execute("CREATE TABLE requests AS SELECT * FROM arrow_tbl")
        con.execute("CHECKPOINT")
        con.close()
    return {"rows": arrow.num_rows, "seconds": t.seconds, "peak_mb": peak_rss_mb()}


def side_warden(path: str, workdir: str) -> dict:
    from modelwarden.ingest.core import Ingestor
    from modelwarden.store.logstore import LogStore

    ing = Ingestor(LogStore(Path(workdir) / "log"))
    with Timer() as t:
        rep = ing.ingest_path(path, "requests")
    return {
        "rows": rep.accepted,
        "rejected": rep.rejected,
        "seconds": t.seconds,
        "embeddings": rep.embeddings_stored,
        "peak_mb": peak_rss_mb(),
    }


SCALE_DAYS = 28
SCALE_BATCH = 1_000_000
SMALL = 100
SMALL_APPENDS = 40


def _scale_table(lo: int, hi: int, day_of: object = None):  # type: ignore[no-untyped-def]
    import numpy as np
    import pyarrow as pa

    from modelwarden.store.schema import SCHEMAS

    n = hi - lo
    idx = np.arange(lo, hi)
    start = np.datetime64("2026-10-05T00:00:00", "us")
    days = idx % SCALE_DAYS if day_of is None else np.full(n, day_of)
    ts = start + (days * 86400 * 10**6 + (idx * 7919) % (86400 * 10**6)).astype("timedelta64[us]")
    ids = np.char.add("req-", idx.astype("U12"))
    cols = {
        "request_id": pa.array(ids),
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "plant_id": pa.array(np.array(["Plant_A", "Plant_B", "Plant_C", "Plant_D"])[idx % 4]),
        "model_version": pa.repeat(pa.scalar("sop-assistant-v1.1"), n),
        "user_prompt": pa.repeat(pa.scalar("What is the lubrication schedule?"), n),
        "generated_response": pa.repeat(pa.scalar("Every 200 operating hours."), n),
        "latency_ms": pa.array((idx % 500).astype("float64")),
    }
    schema = SCHEMAS["requests"]
    return pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


def fill_store(root: Path, target: int) -> float:
    """A store of its own of ``target`` requests under ``root``, filled once; the fill's seconds."""
    from modelwarden.store.logstore import LogStore

    done, progress = root / "filled.json", root / "filling.json"
    if done.exists():
        return float(json.loads(done.read_text())["fill_s"])
    store = LogStore(root / "log", threads=1)
    # A fill stopped midway resumes at its last whole batch (appends are idempotent by key).
    stored = min(target, store.count("requests") // SCALE_BATCH * SCALE_BATCH)
    spent = json.loads(progress.read_text())["fill_s"] if progress.exists() and stored else 0.0
    while stored < target:
        hi = min(target, stored + SCALE_BATCH)
        with Timer() as t:
            store.append("requests", _scale_table(stored, hi))
        stored, spent = hi, spent + t.seconds
        progress.write_text(json.dumps({"stored": stored, "fill_s": spent}))
        print(f"  {root.name}: {stored:,} stored", file=sys.stderr, flush=True)
    done.write_text(json.dumps({"stored": target, "fill_s": spent}))
    return spent


def side_scale(sizes: str, workdir: str, separate: bool = False) -> dict:
    import os

    import numpy as np

    from modelwarden.store.logstore import LogStore

    store = LogStore(Path(workdir) / "log", threads=1)
    rng = np.random.default_rng(0)
    stored = 0
    out = []
    for target in sorted(int(s) for s in sizes.split(",")):
        if separate:
            fill_s = fill_store(Path(workdir) / str(target), target)
            store = LogStore(Path(workdir) / str(target) / "log", threads=1)
        else:
            with Timer() as fill:
                while stored < target:
                    hi = min(target, stored + SCALE_BATCH)
                    store.append("requests", _scale_table(stored, hi))
                    stored = hi
            fill_s = fill.seconds
        fresh, dup = [], []
        # New keys of this run's own (a prepared store is measured again by later runs).
        next_id = 2 * 10**11 + int.from_bytes(os.urandom(4), "little") % 10**6 * 10**4
        for _ in range(SMALL_APPENDS):
            day = int(rng.integers(0, SCALE_DAYS))
            with Timer() as t:
                r = store.append("requests", _scale_table(next_id, next_id + SMALL, day))
            assert r.accepted == SMALL, r
            fresh.append((r.check_seconds, t.seconds))
            next_id += SMALL
            lo = int(rng.integers(0, target - SMALL * SCALE_DAYS))
            old = _scale_table(lo, lo + SMALL * SCALE_DAYS)
            old = old.filter(pa_equal_day(old, day))
            with Timer() as t:
                r = store.append("requests", old)
            assert r.accepted == 0 and r.duplicates == old.num_rows, r
            dup.append((r.check_seconds, t.seconds))
        out.append(
            {
                "stored": target,
                "fill_s": fill_s,
                "check_ms": float(np.median([c for c, _ in fresh]) * 1000),
                "append_ms": float(np.median([a for _, a in fresh]) * 1000),
                "dup_check_ms": float(np.median([c for c, _ in dup]) * 1000),
                "dup_append_ms": float(np.median([a for _, a in dup]) * 1000),
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return {"sizes": out, "peak_mb": peak_rss_mb()}


def pa_equal_day(table, day: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.compute as pc

    first = pa.scalar(datetime(2026, 10, 5, tzinfo=UTC) + timedelta(days=day))
    return pc.equal(pc.cast(table.column("timestamp"), pa.date32()), pc.cast(first, pa.date32()))


def run_scale(sizes: str, tmp: Path, write: bool, data: Path | None = None) -> None:
    work = data / "ingest-scale" if data else tmp / "scale"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--side", "scale", "--path", sizes, "--workdir", str(work)]
    r = run_json([*cmd, "--separate"] if data else cmd)
    rows = r["sizes"]
    base, top = rows[0], rows[-1]
    ratio = top["check_ms"] / base["check_ms"]
    md = (
        f"## Appends as the store grows (`bench/ingest/run.py --scale`)\n\n{machine()}.\n\n"
        f"A store filled through `LogStore.append` with 1M-row batches over {SCALE_DAYS} days; at "
        f"each size, {SMALL_APPENDS} appends of {SMALL} new records in one day, and as many of "
        f"{SMALL} records of one day that are stored already (medians). The check is the "
        "idempotency check alone (the day's key index reconciled and looked up); an append adds "
        "the Parquet write and its fsyncs. The all-stored appends each follow a write to the same day's index, and their check varies from run to run on a busy machine without a trend in the store's size; the goal is judged on new keys. Goal: the check at the largest size within 2× of "
        f"1M. Result: **{ratio:.2f}×** at {top['stored']:,} stored keys "
        f"({'met' if ratio <= 2 else 'not met'})."
        + (
            " Each size had a store of its own, filled ahead of the timed run (*fill s* is that "
            "earlier fill)."
            if data
            else ""
        )
        + "\n\n"
        + table(
            [
                {
                    "stored keys": f"{x['stored']:,}",
                    "check ms (new)": f"{x['check_ms']:.2f}",
                    "append ms (new)": f"{x['append_ms']:.1f}",
                    "check ms (all stored)": f"{x['dup_check_ms']:.2f}",
                    "append ms (all stored)": f"{x['dup_append_ms']:.1f}",
                    "fill s": f"{x['fill_s']:.0f}",
                }
                for x in rows
            ],
            [
                "stored keys",
                "check ms (new)",
                "append ms (new)",
                "check ms (all stored)",
                "append ms (all stored)",
                "fill s",
            ],
        )
    )
    if write:
        write_section("ingest-scale", md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--jsonl-rows", type=int, default=100_000)
    ap.add_argument("--scale", default="1000000,10000000", help="store sizes for small appends")
    ap.add_argument("--with-50m", action="store_true", help="add 50M stored keys (slow)")
    ap.add_argument("--only-scale", action="store_true", help="skip the throughput part")
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    ap.add_argument(
        "--data", help="Keep the scale part's stores in DIR/ingest-scale/N and reuse them."
    )
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="Fill the scale part's stores (--data) and stop.",
    )
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--separate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "scale":
        print(json.dumps(side_scale(args.path, args.workdir, args.separate)))
        return
    if args.side:
        fn = {"raw": side_raw, "warden": side_warden}[args.side]
        print(json.dumps(fn(args.path, args.workdir)))
        return
    sizes = args.scale + (",50000000" if args.with_50m else "")
    data = Path(args.data) if args.data else None
    if args.prepare_only:
        if data is None:
            raise SystemExit("--prepare-only needs --data DIR")
        for n in sorted(int(x) for x in sizes.split(",")):
            print(
                f"filling {n:,}: {fill_store(data / 'ingest-scale' / str(n), n):.0f} s", flush=True
            )
        return
    if args.only_scale:
        tmp = Path(tempfile.mkdtemp(prefix="mw-bench-ingest-"))
        try:
            run_scale(sizes, tmp, not args.no_write, data)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return

    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="mw-bench-ingest-"))
    try:
        print(f"generating {args.rows:,} rows with {DIM}-d embeddings in {tmp}", flush=True)
        tbl = make_table(args.rows, DIM)
        parquet = tmp / "requests.parquet"
        pq.write_table(tbl, parquet, compression="zstd", compression_level=1)
        small = make_table(args.jsonl_rows, DIM, seed=1)
        jsonl_emb, jsonl_plain = tmp / "emb.jsonl", tmp / "plain.jsonl"
        with open(jsonl_emb, "w") as fe, open(jsonl_plain, "w") as fp:
            for rec in small.to_pylist():
                rec["timestamp"] = rec["timestamp"].isoformat()
                fe.write(json.dumps(rec) + "\n")
                rec.pop("prompt_embedding")
                fp.write(json.dumps(rec) + "\n")
        del tbl, small
        me = [sys.executable, __file__]
        results = {}
        for name, side, path in (
            ("raw DuckDB insert (anchor)", "raw", parquet),
            ("ModelWarden ingest, Parquet", "warden", parquet),
            ("ModelWarden ingest, JSONL with embeddings", "warden", jsonl_emb),
            ("ModelWarden ingest, JSONL without embeddings", "warden", jsonl_plain),
        ):
            work = tmp / side / path.stem
            work.mkdir(parents=True)
            r = run_json([*me, "--side", side, "--path", str(path), "--workdir", str(work)])
            results[name] = r
            print(name, r, flush=True)
        anchor = results["raw DuckDB insert (anchor)"]
        anchor_rate = anchor["rows"] / anchor["seconds"]
        rows = []
        for name, r in results.items():
            rate = r["rows"] / r["seconds"]
            rows.append(
                {
                    "path": name,
                    "rows": f"{r['rows']:,}",
                    "seconds": f"{r['seconds']:.2f}",
                    "records/s": f"{rate:,.0f}",
                    "vs anchor": (
                        f"{rate / anchor_rate:.2f}×"
                        if "Parquet" in name or "anchor" in name
                        else "—"
                    ),
                    "peak MiB": f"{r['peak_mb']:,.0f}",
                }
            )
        ratio = (
            results["ModelWarden ingest, Parquet"]["rows"]
            / results["ModelWarden ingest, Parquet"]["seconds"]
            / anchor_rate
        )
        md = (
            f"## Ingest (`bench/ingest/run.py`)\n\n{machine()}.\n\n"
            f"{args.rows:,} requests with {DIM}-d prompt embeddings over 28 days; JSONL runs use "
            f"{args.jsonl_rows:,} records. Goal: Parquet ingest at least 50 % of the raw DuckDB "
            f"rate. Result: **{ratio * 100:.0f} %** of the raw rate "
            f"({'met' if ratio >= 0.5 else 'not met'}).\n\n"
            + table(rows, ["path", "rows", "seconds", "records/s", "vs anchor", "peak MiB"])
        )
        if not args.no_write:
            write_section("ingest", md)
        print(md)
        run_scale(sizes, tmp, not args.no_write, data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
