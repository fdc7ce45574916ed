"""Ingest API throughput: records/s acknowledged by ``POST /v1/logs`` with the spool's fsync on.

    .venv/bin/python bench/ingest_api/run.py [--records 100000] [--batch 500] [--clients 4]

Starts ``modelwarden serve`` on a fresh data dir (hashing embedder, so that embedding does not
compete with the measurement), then ``--clients`` concurrent clients post the seed's records in
batches of ``--batch``. A batch is acknowledged only after it is fsync'd to the spool, so the
acknowledged rate is the durable rate. Then it waits until the flusher has moved every record into
the store and reports that rate too (acknowledged → queryable), and checks the count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from common import machine, table, write_section  # noqa: E402
from gateway.run import free_port, process  # noqa: E402

CLI = str(ROOT / ".venv" / "bin" / "modelwarden")


def make_records(n: int) -> list[dict]:
    from modelwarden.simulate.traffic import simulate

    recs: list[dict] = []
    seed = 0
    while len(recs) < n:
        for r in simulate(days=28, seed=seed, scale=20.0).requests:
            recs.append({**r, "request_id": f"bench-{len(recs):08d}"})
            if len(recs) == n:
                break
        seed += 1
    return recs


async def post_all(port: int, key: str, batches: list[bytes], clients: int) -> list[float]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                r = await c.post("/v1/logs", content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
                if r.json().get("rejected"):
                    raise RuntimeError(f"records rejected: {r.text[:300]}")

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    head = machine()
    print(f"simulating {args.records:,} records", flush=True)
    recs = make_records(args.records)
    batches = [
        json.dumps({"records": recs[i : i + args.batch]}, default=str).encode()
        for i in range(0, len(recs), args.batch)
    ]
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-api-"))
    data = work / "warden-data"
    env = {**os.environ, "MODELWARDEN_EMBEDDER": "hashing"}
    key = json.loads(
        subprocess.run(
            [CLI, "--data", str(data), "keys", "create", "--role", "ingest", "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    )["key"]
    port = free_port()
    serve = [CLI, "--data", str(data), "serve", "--port", str(port), "--log-level", "warning"]
    with process(serve, env={"MODELWARDEN_EMBEDDER": "hashing"}, log=work / "serve.log"):
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see " + str(work / "serve.log"))
            time.sleep(0.3)
        t0 = time.perf_counter()
        lat = asyncio.run(post_all(port, key, batches, args.clients))
        acked = time.perf_counter() - t0
        print(f"acknowledged {len(recs):,} records in {acked:.2f} s", flush=True)
        while True:
            spool = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["spool"]
            if spool["pending_records"] == 0:
                break
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"records still pending after 15 min: {spool}")
            time.sleep(0.1)
        in_store = time.perf_counter() - t0
    count = subprocess.run(
        [CLI, "--data", str(data), "status", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    n_stored = json.loads(count)["requests"]
    if n_stored != len(recs):
        raise RuntimeError(f"stored {n_stored} of {len(recs)} records")
    lat.sort()
    rows = [
        {
            "records": f"{len(recs):,}",
            "batch": args.batch,
            "clients": args.clients,
            "acknowledged (fsync'd) records/s": f"{len(recs) / acked:,.0f}",
            "batch p50 ms": f"{lat[len(lat) // 2] * 1000:.1f}",
            "batch p99 ms": f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f}",
            "in the store records/s": f"{len(recs) / in_store:,.0f}",
        }
    ]
    md = (
        f"## Ingest API (`bench/ingest_api/run.py`)\n\n{head}.\n\n"
        f"`POST /v1/logs` on `modelwarden serve` (hashing embedder, an `ingest` key): "
        f"{args.clients} clients post the simulator's records in batches of {args.batch}; each "
        "batch is answered after it is fsync'd to the spool. *In the store* is the rate until "
        "the flusher process has moved every record into the Parquet store (the count is "
        "checked afterwards).\n\n" + table(rows, list(rows[0]))
    )
    write_section("ingest_api", md)
    print(md)


if __name__ == "__main__":
    main()
