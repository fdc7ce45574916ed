"""The client's cost on the application's thread: ``Client.log`` and the ``record_call`` decorator.

A real ``modelwarden serve`` (hashing embedder) takes the records; the application thread logs
records as fast as it can, in rounds, while the client's sender thread posts batches in the
background (sharing the interpreter, as it would in an application). Reported: the time per call
on the caller's thread (median of the rounds, and the slowest round), with ModelWarden up and
with ModelWarden down (the queue full, the oldest records dropped).

    PYTHONPATH=src python bench/client/run.py [--calls 20000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, table, write_section

from modelwarden.client import Client
from modelwarden.governance.keys import create_key
from modelwarden.server.runner import free_port
from modelwarden.store.state import StateStore

GOAL_US = 50.0


def record(i: int) -> dict:
    return {
        "plant_id": "Plant_A",
        "model_version": "sop-v1.3",
        "user_prompt": f"What torque for the M12 flange bolts on line {i % 7}?",
        "generated_response": "79 N·m in a star pattern, in three passes.",
        "latency_ms": 412.0,
    }


def per_call_us(fn, calls: int, rounds: int) -> tuple[float, float]:
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(calls // rounds):
            fn(r * calls + i)
        times.append((time.perf_counter() - t0) / (calls // rounds) * 1e6)
    return statistics.median(times), max(times)


@contextlib.contextmanager
def serve(data: Path) -> Iterator[str]:
    """``modelwarden serve`` in its own process, as an application would reach it."""
    import httpx

    port = free_port()
    cli = str(Path(sys.executable).parent / "modelwarden")
    proc = subprocess.Popen(
        [
            cli,
            "--data",
            str(data),
            "serve",
            "--port",
            str(port),
            "--otlp-grpc-port",
            "0",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "MODELWARDEN_EMBEDDER": "hashing"},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    facts = machine()
    import tempfile

    data = Path(tempfile.mkdtemp()) / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "admin")
    state.close()
    rows = []
    with serve(data) as url:
        mw = Client(url, key, batch_size=500, max_queue=100_000)
        med, worst = per_call_us(lambda i: mw.log(record(i)), args.calls, args.rounds)
        rows.append(("`log(record)`", "up", med, worst, mw))

        mw2 = Client(url, key, batch_size=500, max_queue=100_000)

        @mw2.record_call(plant_id="Plant_A", model_version="sop-v1.3")
        def ask(prompt: str) -> str:
            return "79 N·m in a star pattern, in three passes."

        med, worst = per_call_us(lambda i: ask(f"torque on line {i % 7}?"), args.calls, args.rounds)
        rows.append(("`@record_call` (a function that returns at once)", "up", med, worst, mw2))
        for _, _, _, _, c in rows:
            assert c.flush(120)
    down = Client(f"http://127.0.0.1:{free_port()}", key, max_queue=1_000, retry_for=1)
    med, worst = per_call_us(lambda i: down.log(record(i)), args.calls, args.rounds)
    rows.append(("`log(record)`", "down (queue full)", med, worst, down))
    out = []
    for name, state_, med, worst, c in rows:
        s = c.stats
        out.append(
            {
                "call": name,
                "ModelWarden": state_,
                "µs per call, median round": f"{med:.1f}",
                "µs per call, slowest round": f"{worst:.1f}",
                "sent": f"{s.sent:,}",
                "dropped": f"{s.dropped:,}",
            }
        )
        c.close(timeout=2)
    load = os.getloadavg()
    md = (
        "## Client overhead (`bench/client/run.py`)\n\n"
        f"{facts}; load average {load[0]:.1f} at the end. The cores are shared with other "
        "work, so figures vary from run to run.\n\n"
        f"{args.calls:,} calls per row in {args.rounds} rounds on the application's thread, "
        "against a real `modelwarden serve` (its own process) that the client's "
        "sender thread posts batches of 500 to meanwhile. Goal: under "
        f"{GOAL_US:.0f} µs per call.\n\n"
        + table(
            out,
            [
                "call",
                "ModelWarden",
                "µs per call, median round",
                "µs per call, slowest round",
                "sent",
                "dropped",
            ],
        )
    )
    print(md)
    if not args.no_doc:
        write_section("client", md)


if __name__ == "__main__":
    main()
