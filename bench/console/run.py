"""Console page times on a store of 10M requests, with the daily KPI rollups.

    .venv/bin/python bench/console/run.py [--requests 10000000] [--repeat 5]

Builds a day-partitioned store with pyarrow (the requests of ``bench/kpis``, plus feedback
events on 10 % of them and confirmed and unconfirmed escalations), rebuilds the rollups
(``modelwarden rollups rebuild``), starts the real server on 127.0.0.1, signs in with an admin key
and times every console page over HTTP (wall time at the client over loopback: an upper bound
of the server's time). The overview is also timed once without rollups (the exact scan it
replaced). Goal: every page under 300 ms, the overview under 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import Timer, machine, table, write_section  # noqa: E402
from kpis.run import make_store  # noqa: E402

PAGES = ["/", "/rollouts", "/rollouts/live", "/registry", "/review", "/incidents", "/drift",
         "/reports", "/sop", "/audit"]  # fmt: skip


def make_events(root: Path, n_requests: int, seed: int = 1) -> tuple[int, int]:
    """Feedback events on 10 % of the requests and escalations on 0.2 % (half confirmed)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwarden.store.logstore import write_parquet_atomic
    from modelwarden.store.schema import ESCALATIONS, FEEDBACK

    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-10-26T00:00:00", "us")
    sizes = {}
    for kind, schema, share in (("feedback", FEEDBACK, 0.10), ("escalations", ESCALATIONS, 0.002)):
        m = int(n_requests * share)
        ids = rng.choice(n_requests, m, replace=False)
        ts = start + rng.integers(0, 28 * 86400 * 10**6, m).astype("timedelta64[us]")
        cols = {
            "event_id": pa.array(np.char.add(kind[0], np.arange(m).astype(str))),
            "request_id": pa.array(np.char.add("r", ids.astype(str))),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        }
        if kind == "feedback":
            cols["score"] = pa.array(rng.integers(1, 6, m).astype(np.int8))
        else:
            cols["reason"] = pa.array(["wrong torque value"] * m)
            cols["category"] = pa.array(["incorrect"] * m)
            cols["confirmed"] = pa.array(rng.random(m) < 0.5)
        t = pa.table(cols)
        full = pa.table(
            {f.name: t[f.name] if f.name in cols else pa.nulls(m, f.type) for f in schema},
            schema=schema,
        )
        days = pc.cast(full["timestamp"], pa.date32())
        for day in pc.unique(days).to_pylist():
            part = full.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            write_parquet_atomic(part, root / "log" / kind / f"date={day}" / "part-0.parquet")
        sizes[kind] = m
    return sizes["feedback"], sizes["escalations"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import httpx

    from modelwarden.governance.keys import create_key
    from modelwarden.governance.sessions import open_session
    from modelwarden.kpi import rollups
    from modelwarden.server.app import create_app
    from modelwarden.server.config import ServerConfig
    from modelwarden.server.deps import SESSION_COOKIE
    from modelwarden.server.runner import ServerThread
    from modelwarden.settings import Settings
    from modelwarden.store.reads import open_store
    from modelwarden.store.state import StateStore

    facts = machine()
    tmp = Path(tempfile.mkdtemp(prefix="mw-bench-console-"))
    try:
        print(f"building a store of {args.requests:,} requests", flush=True)
        with Timer() as t_build:
            make_store(tmp, args.requests)
            n_fb, n_esc = make_events(tmp, args.requests)
        settings = Settings(data_dir=tmp, embedder="hashing")
        with Timer() as t_rebuild:
            rep = rollups.rebuild(open_store(settings))
        print(f"store in {t_build.seconds:.0f} s; rollups rebuilt in {t_rebuild.seconds:.1f} s "
              f"({rep.rows} rows, {rep.latency_rows} latency buckets)", flush=True)  # fmt: skip
        state = StateStore.at(tmp)
        secret, _key = create_key(state, "admin", name="bench")
        sid, _session = open_session(state, secret)
        state.close()
        config = ServerConfig(run_controller=False, build_rollups=False)
        rows = []
        with ServerThread(create_app(settings, config)) as srv, httpx.Client(
            base_url=srv.url, cookies={SESSION_COOKIE: sid}, timeout=600
        ) as http:  # fmt: skip
            for page in PAGES:
                times = []
                for _ in range(args.repeat + 1):  # the first request warms caches
                    t0 = time.perf_counter()
                    res = http.get(page)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert res.status_code == 200, (page, res.status_code, res.text[:300])
                    if page == "/":
                        assert "From the daily rollups" in res.text
                warm = times[1:]
                goal = 1000 if page == "/" else 300
                rows.append(
                    {
                        "page": f"`{page}`",
                        "first ms": f"{times[0]:.0f}",
                        "median ms": f"{statistics.median(warm):.0f}",
                        "max ms": f"{max(warm):.0f}",
                        "goal ms": goal,
                        "met": "yes" if max(warm) < goal else "no",
                    }
                )
                print(rows[-1], flush=True)
        # The same overview without rollups: the scan per page view they replace.
        os.remove(rollups.path_of(open_store(settings)))
        with ServerThread(create_app(settings, config)) as srv, httpx.Client(
            base_url=srv.url, cookies={SESSION_COOKIE: sid}, timeout=600
        ) as http:  # fmt: skip
            t0 = time.perf_counter()
            res = http.get("/")
            exact_ms = (time.perf_counter() - t0) * 1000
            assert res.status_code == 200 and "Computed from every stored request" in res.text
        load = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    md = (
        f"## Console pages (`bench/console/run.py`)\n\n{facts}; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end. The cores are "
        "shared with other work, so the figures vary from run to run.\n\n"
        f"Store: {args.requests:,} requests over 28 days (4 plants, 2 versions), {n_fb:,} "
        f"feedback events, {n_esc:,} escalations; built with pyarrow in {t_build.seconds:.0f} s. "
        f"`modelwarden rollups rebuild`: {t_rebuild.seconds:.1f} s ({rep.rows:,} daily rows, "
        f"{rep.latency_rows:,} latency buckets). Times are wall times at the client over "
        f"loopback (an upper bound of the server's time), signed in as admin, {args.repeat} "
        "requests per page after a first one. The overview shows four weeks of KPIs per plant "
        "and version with week-over-week changes and the daily trend, read from the rollups "
        "(p95/p99 within 1 % of exact). The other pages read the state store only and hold "
        "little data here. Goal: every page under 300 ms, the overview under 1 s.\n\n"
        + table(rows, list(rows[0]))
        + f"\nThe same overview computed exactly from the {args.requests:,} requests (no rollups): "
        f"{exact_ms / 1000:.1f} s.\n"
    )
    write_section("console", md)
    print(md)


if __name__ == "__main__":
    main()
