"""Ingest throughput: Parquet with 384-d embeddings against a raw DuckDB insert, and JSONL.

    .venv/bin/python bench/ingest/run.py [--rows 1000000] [--jsonl-rows 100000]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--jsonl-rows", type=int, default=100_000)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        fn = {"raw": side_raw, "warden": side_warden}[args.side]
        print(json.dumps(fn(args.path, args.workdir)))
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
        write_section("ingest", md)
        print(md)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
