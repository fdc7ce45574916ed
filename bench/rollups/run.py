"""The cost of one KPI rollup update (what the flusher does after every stored batch) as the store
grows.

    .venv/bin/python bench/rollups/run.py [--sizes 100000,2000000] [--batch 100] [--repeat 5] [--write]

For each size, a store of that many requests over 28 days (4 plants, 2 versions; 10 % of the
requests with a feedback event, 0.5 % with an escalation, half of them confirmed) is written with
pyarrow and the rollups are built (``rollups.rebuild``, timed). Then, ``--repeat`` times, a batch of
``--batch`` new requests, a batch of feedback events about stored requests drawn from the whole
history and a batch of confirmed escalations likewise are appended to the store (not timed) and
folded into the rollups by ``rollups.update`` (timed, the median is reported). ``--write`` replaces
this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import Timer, machine, peak_rss_mb, table, write_section  # noqa: E402

DAYS = 28
START = "2026-10-26T00:00:00"
PLANTS = ("Plant_A", "Plant_B", "Plant_C", "Plant_D")
VERSIONS = ("sop-assistant-v1.1", "sop-assistant-v1.2")


def _write_days(root: Path, kind: str, table: object, name: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwarden.store.logstore import write_parquet_atomic

    days = pc.cast(table["timestamp"], pa.date32())  # type: ignore[index]
    for day in pc.unique(days).to_pylist():
        part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))  # type: ignore[attr-defined]
        write_parquet_atomic(part, root / kind / f"date={day}" / f"part-{name}.parquet")


def _full(cols: dict, schema: object, m: int) -> object:
    import pyarrow as pa

    return pa.table(
        {f.name: cols.get(f.name, pa.nulls(m, f.type)) for f in schema},  # type: ignore[attr-defined]
        schema=schema,
    )


def make_store(root: Path, n: int, seed: int = 0) -> list:
    """``n`` requests over 28 days with their feedback events and escalations; returns the
    request ids."""
    import numpy as np
    import pyarrow as pa

    from modelwarden.store.schema import ESCALATIONS, FEEDBACK, REQUESTS

    rng = np.random.default_rng(seed)
    chunk = 1_000_000
    out = []
    start = np.datetime64(START, "us")
    span = DAYS * 86400 * 10**6
    for c0 in range(0, n, chunk):
        m = min(chunk, n - c0)
        ts = np.sort(start + rng.integers(0, span, m).astype("timedelta64[us]"))
        # Random ids, like the UUIDs clients send (sequential ones would let Parquet's min/max
        # statistics skip every file a look-up by id reads).
        ids = np.char.mod("%016x", rng.integers(0, 2**63, m))
        score = rng.integers(1, 6, m).astype("float64")
        score[rng.random(m) < 0.6] = np.nan
        req = {
            "request_id": pa.array(ids),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "plant_id": pa.array(np.array(PLANTS)[rng.integers(0, 4, m)]),
            "model_version": pa.array(np.array(VERSIONS)[(rng.random(m) < 0.05).astype(int)]),
            "route": pa.array(["stable"] * m),
            "user_prompt": pa.array(["What is the lubrication schedule?"] * m),
            "generated_response": pa.array(["Every 200 operating hours."] * m),
            "latency_ms": pa.array(rng.lognormal(5.6, 0.4, m)),
            "human_feedback_score": pa.array(score, pa.float64(), from_pandas=True).cast(pa.int8()),
            "contains_safety_keyword": pa.array(rng.random(m) < 0.02),
        }
        _write_days(root, "requests", _full(req, REQUESTS, m), f"{c0:010d}")
        for kind, share, schema in (
            ("feedback", 0.10, FEEDBACK),
            ("escalations", 0.005, ESCALATIONS),
        ):
            pick = np.flatnonzero(rng.random(m) < share)
            k = len(pick)
            later = rng.integers(60, 6 * 3600, k).astype("timedelta64[s]").astype("timedelta64[us]")
            cols = {
                "event_id": pa.array(np.char.add(f"{kind[0]}", ids[pick])),
                "request_id": pa.array(ids[pick]),
                "timestamp": pa.array(ts[pick] + later, pa.timestamp("us", tz="UTC")),
            }
            if kind == "feedback":
                cols["score"] = pa.array(rng.integers(1, 6, k).astype("int8"))
            else:
                cols["reason"] = pa.array(["wrong answer"] * k)
                cols["category"] = pa.array(["incorrect"] * k)
                cols["confirmed"] = pa.array(rng.random(k) < 0.5)
            _write_days(root, kind, _full(cols, schema, k), f"{c0:010d}")
        out.append(ids)
    return out


def _batches(ids: object, batch: int, i: int, seed: int) -> dict[str, object]:
    """The i-th batch of each kind: new requests on the last day, events about stored ones."""
    import numpy as np
    import pyarrow as pa

    from modelwarden.store.schema import ESCALATIONS, FEEDBACK, REQUESTS

    rng = np.random.default_rng(seed + 1000 + i)
    last = np.datetime64(START, "us") + np.timedelta64(DAYS * 86400 - 3600, "s")
    ts = pa.array(np.full(batch, last), pa.timestamp("us", tz="UTC"))
    about = pa.array(ids[rng.integers(0, len(ids), batch)])  # type: ignore[index,arg-type]
    when = pa.array(np.full(batch, last + np.timedelta64(60, "s")), pa.timestamp("us", tz="UTC"))
    new = {
        "request_id": pa.array([f"new-{i}-{j}" for j in range(batch)]),
        "timestamp": ts,
        "plant_id": pa.array(np.array(PLANTS)[rng.integers(0, 4, batch)]),
        "model_version": pa.array([VERSIONS[0]] * batch),
        "route": pa.array(["stable"] * batch),
        "user_prompt": pa.array(["What is the lubrication schedule?"] * batch),
        "generated_response": pa.array(["Every 200 operating hours."] * batch),
        "latency_ms": pa.array(rng.lognormal(5.6, 0.4, batch)),
        "human_feedback_score": pa.array(rng.integers(1, 6, batch).astype("int8")),
        "contains_safety_keyword": pa.array([False] * batch),
    }
    fb = {
        "event_id": pa.array([f"fb-{i}-{j}" for j in range(batch)]),
        "request_id": about,
        "timestamp": when,
        "score": pa.array(rng.integers(1, 6, batch).astype("int8")),
    }
    esc = {
        "event_id": pa.array([f"esc-{i}-{j}" for j in range(batch)]),
        "request_id": about,
        "timestamp": when,
        "reason": pa.array(["wrong answer"] * batch),
        "category": pa.array(["incorrect"] * batch),
        "confirmed": pa.array([True] * batch),
    }
    return {
        "requests": _full(new, REQUESTS, batch),
        "feedback": _full(fb, FEEDBACK, batch),
        "escalations": _full(esc, ESCALATIONS, batch),
    }


def measure(n: int, batch: int, repeat: int, seed: int = 0) -> dict:
    import numpy as np

    from modelwarden.kpi import rollups
    from modelwarden.store.logstore import LogStore

    out: dict = {"requests_stored": n, "batch": batch}
    with tempfile.TemporaryDirectory(prefix="mw-rollups-") as tmp:
        root = Path(tmp) / "log"
        with Timer() as t:
            ids = np.concatenate(make_store(root, n, seed))
        out["make_s"] = round(t.seconds, 1)
        store = LogStore(root, threads=1)
        with Timer() as t:
            rollups.rebuild(store)
        out["rebuild_s"] = round(t.seconds, 1)
        out["rollups_mb"] = round(rollups.path_of(store).stat().st_size / 2**20, 1)
        times: dict[str, list[float]] = {k: [] for k in ("requests", "feedback", "escalations")}
        for i in range(repeat):
            for kind, tbl in _batches(ids, batch, i, seed).items():
                files = store.append(kind, tbl).files  # type: ignore[arg-type]
                with Timer() as t:
                    rollups.update(store, kind, files)
                times[kind].append(t.seconds)
        for kind, ts in times.items():
            out[f"{kind}_ms"] = round(statistics.median(ts) * 1000, 1)
    out["peak_mb"] = round(peak_rss_mb())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,2000000")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--write", action="store_true", help="replace the section of docs/benchmarks.md"
    )
    args = ap.parse_args()
    where = machine()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args.batch, args.repeat))
        print(json.dumps(rows[-1]), flush=True)
    if args.write:
        cols = [
            "requests_stored",
            "batch",
            "requests_ms",
            "feedback_ms",
            "escalations_ms",
            "rebuild_s",
            "rollups_mb",
        ]
        write_section(
            "rollups",
            "## KPI rollup updates as the store grows\n\n"
            f"Machine: {where}. `bench/rollups/run.py --sizes {args.sizes} --batch {args.batch} "
            f"--repeat {args.repeat}`: the median time of one `rollups.update` of a "
            f"{args.batch}-record batch of each kind (what the flusher does after each stored "
            "batch), the time of `rollups rebuild` and the size of `rollups.sqlite`.\n\n"
            + table(rows, cols),
        )


if __name__ == "__main__":
    main()
