"""Two gateway instances on one PostgreSQL state: added latency, and route-change propagation.

    .venv/bin/python bench/cluster/run.py [--rate 200] [--duration 10] [--rounds 3]
                                          [--changes 20] [--no-write]

A PostgreSQL server of its own (``initdb``/``pg_ctl`` on a temporary directory, as the tests'),
one fake upstream per model version (no added latency), and two ``modelwarden serve`` instances
A and B on that one database, each with its own data directory (its own spool) and one shared log
root. Measured in one run, rounds interleaved, the median of the rounds reported:

* **added latency** at ``--rate`` requests/s per instance, open loop (request *i* is due at
  *i*/rate s and its latency runs from then): the upstream called directly; instance A alone
  (B up and idle); and A and B together, each at the rate. Added latency is an instance's
  percentile minus the direct call's in the same round;
* **route-change propagation**: ``PUT /v1/routes`` on A switches the stable version between two
  upstreams while a client sends chat requests to B back to back; the time from A's answer (the
  new table committed) to the send time of B's first answer from the new version, ``--changes``
  times. Nothing is pushed: each instance re-reads the route table from the state store when
  its route cache (0.5 s) expires, so this is bounded by that time plus one read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "gateway"))
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from common import machine, table, write_section  # noqa: E402
from pgserver import USER, PgServer, pg_bin  # noqa: E402
from run import CLI, fixed_rate, free_port, open_loop, process, request_bytes, wait_ready  # noqa: E402

V1, V2 = "sop-assistant-v1.1", "sop-assistant-v1.2"
PROMPT = "What torque for the M12 flange bolts?"
BODY = {"model": V1, "user": "operator-17", "messages": [{"role": "user", "content": PROMPT}]}
HEADERS = {"X-Plant-Id": "Plant_B"}


def _cli(data: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [CLI, "--data", str(data), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout


def both_at(port_a: int, port_b: int, rate: float, duration: float) -> list[dict[str, float]]:
    """A and B at ``rate`` each, at the same time, from one event loop."""
    raw = json.dumps(BODY).encode()

    async def go() -> list[tuple[list[float], int]]:
        return list(
            await asyncio.gather(
                open_loop(port_a, request_bytes(port_a, "/v1/chat/completions", raw, HEADERS),
                          rate, duration),
                open_loop(port_b, request_bytes(port_b, "/v1/chat/completions", raw, HEADERS),
                          rate, duration),
            )
        )  # fmt: skip

    asyncio.run(go())  # warm-up
    out = []
    for lat, errors in asyncio.run(go()):
        ms = np.asarray(lat) * 1000
        out.append(
            {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
             "n": len(lat), "errors": errors}
        )  # fmt: skip
    return out


def propagation(url_a: str, url_b: str, admin: str, ups: dict[str, int], n: int) -> list[float]:
    """Seconds from a route change answered by A to B's first request served by it."""
    seen: list[tuple[float, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                t = time.monotonic()
                r = c.post(f"{url_b}/v1/chat/completions", json=BODY, headers=HEADERS)
                if r.status_code == 200:
                    seen.append((t, r.json()["model"]))

    th = threading.Thread(target=hammer, daemon=True)
    th.start()
    out = []
    try:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {admin}"}) as c:
            current = V1
            for _ in range(n):
                time.sleep(0.5)
                new = V2 if current == V1 else V1
                r = c.put(
                    f"{url_a}/v1/routes",
                    json={"stable": {"version": new, "url": f"http://127.0.0.1:{ups[new]}/v1"}},
                )
                r.raise_for_status()
                t_set = time.monotonic()
                deadline = t_set + 10
                while time.monotonic() < deadline:
                    hit = next((t for t, m in list(seen) if t >= t_set and m == new), None)
                    if hit is not None:
                        out.append(hit - t_set)
                        break
                    time.sleep(0.002)
                else:
                    raise RuntimeError(f"B did not serve {new} within 10 s of the change")
                current = new
    finally:
        stop.set()
        th.join(15)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s per instance")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    args = ap.parse_args()
    bin_dir = pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (scripts/system-deps.sh, or set PG_BIN)")
    info = machine()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    pg = PgServer.start(bin_dir)
    try:
        pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", USER, "bench")
        env = {
            "MODELWARDEN_STATE_URL": pg.url("bench"),
            "MODELWARDEN_SECRETS": str(work / "secrets"),
            "MODELWARDEN_EMBEDDER": "hashing",
        }
        (work / "log").mkdir()
        for d in ("a", "b"):
            (work / d).mkdir()
            (work / d / "log").symlink_to(work / "log")
        a, b = work / "a", work / "b"
        _cli(a, env, "db", "upgrade")
        admin = json.loads(_cli(a, env, "keys", "create", "--role", "admin", "--format", "json"))
        ups = {V1: free_port(), V2: free_port()}
        pa, pb = free_port(), free_port()
        _cli(a, env, "routes", "set", "--stable", f"{V1}=http://127.0.0.1:{ups[V1]}/v1")
        with contextlib.ExitStack() as stack:
            for v, port in ups.items():
                stack.enter_context(process(
                    [CLI, "fake-upstream", "--port", str(port), "--version", v,
                     "--latency-ms", "0"]))  # fmt: skip
            for d, port in ((a, pa), (b, pb)):
                stack.enter_context(process(
                    [CLI, "--data", str(d), "serve", "--port", str(port), "--log-level", "warning"],
                    env={**env, "MODELWARDEN_INSTANCE": d.name}, log=work / f"{d.name}.log"))  # fmt: skip
            wait_ready(f"http://127.0.0.1:{ups[V1]}/v1/chat/completions", BODY, {})
            for port in (pa, pb):
                wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions", BODY, HEADERS)
            runs: dict[str, list[dict[str, float]]] = {"direct": [], "one": [], "two A": [],
                                                       "two B": []}  # fmt: skip
            loads = [os.getloadavg()[0]]
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", flush=True)
                runs["direct"].append(fixed_rate(ups[V1], "/v1/chat/completions", BODY, {},
                                                 args.rate, args.duration))  # fmt: skip
                runs["one"].append(fixed_rate(pa, "/v1/chat/completions", BODY, HEADERS,
                                              args.rate, args.duration))  # fmt: skip
                ra, rb = both_at(pa, pb, args.rate, args.duration)
                runs["two A"].append(ra)
                runs["two B"].append(rb)
                loads.append(os.getloadavg()[0])
            print("route changes", flush=True)
            prop = propagation(f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}",
                               admin["key"], ups, args.changes)  # fmt: skip
            loads.append(os.getloadavg()[0])
    finally:
        pg.destroy()

    def med(name: str, q: str) -> float:
        return statistics.median(x[q] for x in runs[name])

    rows = []
    for name, label in (("one", "one instance (A alone)"), ("two A", "two instances: A"),
                        ("two B", "two instances: B")):  # fmt: skip
        rows.append({
            "target": label,
            "rate/s": f"{args.rate:.0f}",
            "p50 ms": f"{med(name, 'p50'):.2f}",
            "p99 ms": f"{med(name, 'p99'):.2f}",
            "added p50 ms": f"{med(name, 'p50') - med('direct', 'p50'):.2f}",
            "added p99 ms": f"{med(name, 'p99') - med('direct', 'p99'):.2f}",
            "errors": sum(int(x["errors"]) for x in runs[name]),
        })  # fmt: skip
    rows.insert(0, {"target": "upstream direct", "rate/s": f"{args.rate:.0f}",
                    "p50 ms": f"{med('direct', 'p50'):.2f}",
                    "p99 ms": f"{med('direct', 'p99'):.2f}", "added p50 ms": "—",
                    "added p99 ms": "—",
                    "errors": sum(int(x["errors"]) for x in runs["direct"])})  # fmt: skip
    prop_ms = sorted(p * 1000 for p in prop)
    per_round = "; ".join(
        f"{k}: " + ", ".join(f"{x['p50']:.1f}/{x['p99']:.1f}" for x in v) for k, v in runs.items()
    )
    md = (
        "## Two gateway instances on one PostgreSQL (`bench/cluster/run.py`)\n\n"
        f"{info}.\n\n"
        f"Open loop at {args.rate:.0f} requests/s per instance for {args.duration:.0f} s, "
        f"{args.rounds} interleaved rounds, medians of the rounds; the fake upstream adds no "
        "latency. *one instance*: A alone while B is up and idle; *two instances*: A and B each "
        f"at {args.rate:.0f}/s at the same time (the one client process sends both). Load "
        f"average during the run: {min(loads):.1f} to {max(loads):.1f} (`uptime`): the two "
        "cores were shared with other engineers' builds and tests, and the client, both "
        "instances, both upstreams and PostgreSQL ran on them too, so the figures are for this "
        "machine under that load only.\n\n"
        + table(rows, list(rows[0]))
        + f"\nPer round (p50/p99 ms): {per_round}.\n\n"
        f"Route-change propagation, {len(prop_ms)} changes made with `PUT /v1/routes` on A, "
        "measured at B (from A's answer to the send time of B's first request served by the new "
        f"version; B's client sends back to back): median {statistics.median(prop_ms):.0f} ms, "
        f"max {prop_ms[-1]:.0f} ms, min {prop_ms[0]:.0f} ms. Goal: under 1 s.\n"
    )
    if not args.no_write:
        write_section("cluster", md)
    print(md)


if __name__ == "__main__":
    main()
