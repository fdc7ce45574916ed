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

from common import create_key, machine, table, write_section  # noqa: E402
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


def make_span_batches(n: int, batch: int, offset: int = 0) -> list[bytes]:
    """OTLP ExportTraceServiceRequests of GenAI chat spans (as an instrumented app exports)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    recs = make_records(n)
    out = []
    start = 1_793_610_000_000_000_000
    for i in range(0, n, batch):
        spans = []
        for j, r in enumerate(recs[i : i + batch]):
            k = offset + i + j
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.response.model": r["model_version"],
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": r["user_prompt"]}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": r["generated_response"]}],
                        }
                    ]
                ),
            }
            spans.append(
                Span(
                    trace_id=k.to_bytes(16, "big"),
                    span_id=(k + 1).to_bytes(8, "big"),
                    name="chat",
                    start_time_unix_nano=start + k * 1_000_000,
                    end_time_unix_nano=start + k * 1_000_000 + int(r["latency_ms"] * 1e6),
                    attributes=[
                        KeyValue(key=a, value=AnyValue(string_value=v)) for a, v in attrs.items()
                    ]
                    + [
                        KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=12)),
                        KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=40)),
                    ],
                )
            )
        resource = Resource(
            attributes=[
                KeyValue(key="modelwarden.plant_id", value=AnyValue(string_value=r["plant_id"]))
            ]
        )
        req = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
        )
        out.append(req.SerializeToString())
    return out


def send_spans(
    transport: str, port: int, grpc_port: int, key: str, batches: list[bytes], clients: int
) -> float:
    """Seconds to have every batch acknowledged over OTLP/HTTP protobuf or OTLP/gRPC."""
    import queue
    import threading

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    todo: queue.Queue[bytes] = queue.Queue()
    for b in batches:
        todo.put(b)
    errors: list[str] = []

    def worker() -> None:
        if transport == "grpc":
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        else:
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        try:
            while True:
                try:
                    body = todo.get_nowait()
                except queue.Empty:
                    return
                if transport == "grpc":
                    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    resp = stub.Export(req, metadata=[("x-api-key", key)], timeout=120)
                    if resp.partial_success.rejected_spans:
                        errors.append(resp.partial_success.error_message)
                else:
                    r = http.post(
                        "/v1/traces",
                        content=body,
                        headers={
                            "Authorization": f"Bearer {key}",
                            "content-type": "application/x-protobuf",
                        },
                    )
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}")
        finally:
            if transport == "grpc":
                channel.close()
            else:
                http.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{transport}: {errors[:3]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--spans", type=int, default=20_000, help="spans per OTLP transport")
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
    key = create_key(CLI, data, "ingest", env)
    port = free_port()
    grpc_port = free_port()
    serve = [CLI, "--data", str(data), "serve", "--port", str(port), "--log-level", "warning"]
    serve += ["--otlp-grpc-port", str(grpc_port)]
    # Distinct span ids per transport, so that each stores its own records.
    span_batches = {
        "http": make_span_batches(args.spans, args.batch),
        "grpc": make_span_batches(args.spans, args.batch, offset=args.spans),
    }
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
        otlp_rows = []
        for transport in ("http", "grpc"):
            seconds = send_spans(
                transport, port, grpc_port, key, span_batches[transport], args.clients
            )
            otlp_rows.append(
                {
                    "transport": "OTLP/HTTP protobuf" if transport == "http" else "OTLP/gRPC",
                    "spans": f"{args.spans:,}",
                    "batch": args.batch,
                    "clients": args.clients,
                    "acknowledged (fsync'd) records/s": f"{args.spans / seconds:,.0f}",
                }
            )
            print(otlp_rows[-1], flush=True)
    count = subprocess.run(
        [CLI, "--data", str(data), "status", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    n_stored = json.loads(count)["requests"]
    # The OTLP spans carry the same prompts under their own ids: 2 x --spans more records.
    if n_stored != len(recs) + 2 * args.spans:
        raise RuntimeError(f"stored {n_stored} of {len(recs) + 2 * args.spans} records")
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
        "checked afterwards).\n\n" + table(rows, list(rows[0])) + "\n"
        "OTLP spans (GenAI chat spans in `ExportTraceServiceRequest`s of "
        f"{args.batch}) to the same server in the same run, {args.clients} client threads per "
        "transport, one transport after the other; each export is answered after its records "
        "are fsync'd to the spool.\n\n" + table(otlp_rows, list(otlp_rows[0]))
    )
    write_section("ingest_api", md)
    print(md)


if __name__ == "__main__":
    main()
