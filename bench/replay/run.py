"""Replay of a spool backlog against the steady flush rate, measured in the same run.

    .venv/bin/python bench/replay/run.py [--records 1000000] [--per-segment 850]
                                         [--steady-records 100000] [--no-write]

A server killed with a backlog leaves sealed spool segments of acknowledged records; the next
server's flusher stores them before anything else. This benchmark writes such a backlog (segments
of ``--per-segment`` records, lines of 100 records, as the gateway spools them), then:

* **steady**: the flusher stores segments one at a time as a server flushing once a second
  would, merging as it goes (the flusher child's own code: ``Flusher`` with
  ``LogStore.maintain`` after each batch);
* **replay**: the same flusher is handed the whole backlog at once, into the same store.

Goal: replay at no less than half the steady rate, and a bounded number of part files per
directory at the end.
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

from common import Timer, machine, peak_rss_mb, table, write_section  # noqa: E402

LINE_RECORDS = 100


def write_segments(spool: Path, start: int, n: int, per_segment: int, day: datetime) -> int:
    """Segments numbered from ``start`` holding ``n`` records; returns the last number."""
    from modelwarden.store.spool import SpoolBatch

    spool.mkdir(parents=True, exist_ok=True)
    seq = start
    i = 0
    while i < n:
        lines = []
        seg_end = min(n, i + per_segment)
        while i < seg_end:
            hi = min(seg_end, i + LINE_RECORDS)
            items = []
            for j in range(i, hi):
                ts = day + timedelta(milliseconds=j * 37 % 86_400_000)
                items.append(
                    (
                        f"gateway {start}-{j}",
                        {
                            "request_id": f"req-{start}-{j:09d}",
                            "timestamp": ts.isoformat(),
                            "plant_id": f"Plant_{'ABCD'[j % 4]}",
                            "model_version": "sop-assistant-v1.1",
                            "user_prompt": "What torque for the M12 flange bolts?",
                            "generated_response": "85 Nm in a star pattern, in three passes.",
                            "latency_ms": 180.0 + j % 97,
                            "route": "stable",
                            "prompt_tokens": 12,
                            "completion_tokens": 14,
                        },
                    )
                )
            lines.append(SpoolBatch("requests", "gateway", items).to_line())
            i = hi
        (spool / f"seg-{seq:012d}.jsonl").write_bytes(b"".join(lines))
        seq += 1
    return seq - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--per-segment", type=int, default=850)
    ap.add_argument("--steady-records", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    args = ap.parse_args()

    from modelwarden.ingest.core import Ingestor
    from modelwarden.ingest.spool_store import SpoolStore
    from modelwarden.store.logstore import LogStore
    from modelwarden.store.spool import Flusher, SealedSegments

    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="mw-bench-replay-"))
    try:
        store = LogStore(tmp / "log", threads=1)
        target = SpoolStore(store, Ingestor(store))
        spool = tmp / "spool"
        segments = SealedSegments(spool, fsync=True)
        stored = [0]
        flusher = Flusher(
            segments,
            target.store_batch,
            on_unstorable=target.unstorable,
            on_stored=lambda n: stored.__setitem__(0, stored[0] + n),
            on_batch=lambda: store.maintain(budget_s=2.0),
        )
        day1 = datetime(2026, 11, 2, tzinfo=UTC)
        day2 = day1 + timedelta(days=1)

        print(f"writing {args.steady_records:,} steady records", flush=True)
        last = write_segments(spool, 1, args.steady_records, args.per_segment, day1)
        with Timer() as steady:
            for seq in range(1, last + 1):
                segments.upto = seq
                flusher.flush_once()
        steady_n = stored[0]
        steady_rate = steady_n / steady.seconds
        print(f"steady: {steady_n:,} in {steady.seconds:.1f} s = {steady_rate:,.0f}/s", flush=True)

        print(f"writing a backlog of {args.records:,} records", flush=True)
        first = last + 1
        last = write_segments(spool, first, args.records, args.per_segment, day2)
        n_segments = last - first + 1
        stored[0] = 0
        segments.upto = last
        with Timer() as replay:
            flusher.flush_once()
            while store.dirty:  # what the slices left
                store.maintain(budget_s=2.0)
        replay_n = stored[0]
        replay_rate = replay_n / replay.seconds
        print(f"replay: {replay_n:,} in {replay.seconds:.1f} s = {replay_rate:,.0f}/s", flush=True)
        per_dir = {Path(f).parent.name: 0 for f in store.files("requests")}
        for f in store.files("requests"):
            per_dir[Path(f).parent.name] += 1
        count = store.count("requests")
        assert count == steady_n + replay_n == args.steady_records + args.records, count
        assert not list(spool.glob("seg-*.jsonl"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio = replay_rate / steady_rate
    rows = [
        {
            "phase": "steady (one segment per flush)",
            "records": f"{steady_n:,}",
            "seconds": f"{steady.seconds:.1f}",
            "records/s": f"{steady_rate:,.0f}",
        },
        {
            "phase": f"replay of {n_segments:,} segments",
            "records": f"{replay_n:,}",
            "seconds": f"{replay.seconds:.1f}",
            "records/s": f"{replay_rate:,.0f}",
        },
    ]
    md = (
        "## Replay (`bench/replay/run.py`)\n\n"
        f"{info}.\n\n"
        f"A backlog of {args.records:,} acknowledged records in {n_segments:,} sealed spool "
        f"segments ({args.per_segment} records each) stored by the flusher's own code, against "
        f"the steady rate of the same flusher storing {args.steady_records:,} records one "
        "segment per flush, into the same store, with merging as it goes. Goal: replay at no "
        f"less than half the steady rate. Result: **{ratio:.2f}×** the steady rate "
        f"({'met' if ratio >= 0.5 else 'not met'}); part files per day directory at the end: "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(per_dir.items()))}; peak memory "
        f"{peak_rss_mb():,.0f} MiB.\n\n" + table(rows, list(rows[0]))
    )
    if not args.no_write:
        write_section("replay", md)
    print(md)
    print(json.dumps({"ratio": ratio, "steady": steady_rate, "replay": replay_rate}))


if __name__ == "__main__":
    main()
