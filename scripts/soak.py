"""Soak run: the gateway (with two fake upstreams), the ingest API and the rollout controller
working together for a given time, with memory, open files and latency recorded over time.

Everything listens on 127.0.0.1. The request loops are paced (``--chat-rps``, ``--ingest-rps``)
so that the run measures drift over time, not the machine's limit. Every ``--sample-s`` seconds a
CSV row records, for the server and for its flusher process, the resident memory and the open
file descriptors, and for the interval the chat and ingest latencies (p50, p99), the request and
error counts and the spool backlog. At the end the server is stopped cleanly and every ingest
record it acknowledged is looked up in the store.

Run through ``scripts/soak.sh MINUTES`` (or ``--minutes N``; default 30). The CSV goes to
``docs/soak-<N>min.csv`` and a summary of it (first and last minute, memory growth per minute
over the second half, errors, acknowledged versus stored) replaces the last one in
``docs/reliability.md``; ``--out`` and ``--no-write`` for trial runs. Linux only (reads
``/proc``).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelwarden.governance import registry
from modelwarden.governance.keys import create_key
from modelwarden.rollout import controller
from modelwarden.rollout.plan import Hold, Plan, Step
from modelwarden.server.runner import free_port
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
QUESTIONS = [
    "What PPE do I need to handle sulfuric acid?",
    "What is the lubrication schedule for the main conveyor?",
    "How do I lock out the press before maintenance?",
    "What coolant concentration should the CNC lathe run at?",
]
COLUMNS = [
    "at",
    "elapsed_s",
    "server_rss_mb",
    "server_fds",
    "server_threads",
    "flusher_rss_mb",
    "flusher_fds",
    "workers_rss_mb",
    "chat_n",
    "chat_errors",
    "chat_p50_ms",
    "chat_p99_ms",
    "ingest_batches",
    "ingest_errors",
    "ingest_p50_ms",
    "ingest_p99_ms",
    "ingest_acked_total",
    "spool_pending",
]


def proc_stats(pid: int) -> tuple[float, int, int]:
    """Resident memory (MB), open file descriptors and threads of ``pid``."""
    rss_kb, threads = 0, 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0.0, 0, 0
    return rss_kb / 1024, fds, threads


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (every thread's)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return sorted(set(out))


def is_flusher(pid: int) -> bool:
    try:
        return b"modelwarden.ingest.flusher" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Window:
    """Latencies and errors of one loop since the last sample."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: list[float] = []
        self.errors = 0
        self.acked = 0

    def add(self, seconds: float | None, acked: int = 0) -> None:
        with self.lock:
            if seconds is None:
                self.errors += 1
            else:
                self.lat.append(seconds * 1000)
                self.acked += acked

    def take(self) -> tuple[int, int, float | None, float | None]:
        with self.lock:
            lat, self.lat = self.lat, []
            errors, self.errors = self.errors, 0
        if not lat:
            return 0, errors, None, None
        a = np.asarray(lat)
        return len(lat), errors, float(np.percentile(a, 50)), float(np.percentile(a, 99))


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up in {timeout} s")


def paced(rate: float, stop: threading.Event, step: Any) -> None:
    """Call ``step(i)`` ``rate`` times a second until ``stop``; never faster, never bursting."""
    interval = 1.0 / rate
    nxt = time.monotonic()
    i = 0
    while not stop.is_set():
        step(i)
        i += 1
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            nxt = time.monotonic()  # behind: do not catch up in a burst


DOCS = Path(__file__).resolve().parent.parent / "docs"
RELIABILITY = DOCS / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def _num(v: str) -> float | None:
    return float(v) if v not in ("", "None") else None


def summarize(csv_path: Path, args: argparse.Namespace, acked: int, stored: int) -> str:
    """The run's summary for docs/reliability.md, from its CSV."""
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return "The run recorded no sample."
    t = np.asarray([float(r["elapsed_s"]) for r in rows])

    def col(name: str) -> np.ndarray:
        return np.asarray(
            [np.nan if _num(r.get(name) or "") is None else _num(r[name]) for r in rows]
        )

    first = t <= min(60.0, t[-1])
    last = t >= t[-1] - 60.0
    half = t >= t[-1] / 2

    def span(name: str, sel: np.ndarray) -> str:
        v = col(name)[sel]
        return f"{np.nanmin(v):.0f}–{np.nanmax(v):.0f}" if np.isfinite(v).any() else "–"

    def slope(name: str) -> str:
        v = col(name)
        ok = half & np.isfinite(v)
        if ok.sum() < 3:
            return "–"
        return f"{np.polyfit(t[ok] / 60.0, v[ok], 1)[0]:+.2f}"

    def p99(name: str, sel: np.ndarray) -> str:
        v = col(name)[sel]
        return (
            f"median {np.nanmedian(v):.0f}, max {np.nanmax(v):.0f}" if np.isfinite(v).any() else "–"
        )

    every = np.ones_like(t, dtype=bool)
    lines = [
        f"Last run: {rows[0]['at'][:10]}, {args.minutes:g} minutes (chat {args.chat_rps:g}/s, "
        f"ingest {args.ingest_rps:g} batches/s of {args.batch}), load average "
        f"{os.getloadavg()[0]:.1f} at the end; CSV in [{csv_path.name}]({csv_path.name}).",
        "",
        "| | first minute | last minute | whole run | MB/min over the second half |",
        "|---|---|---|---|---|",
    ]
    for label, name in (
        ("server RSS (MB)", "server_rss_mb"),
        ("flusher RSS (MB)", "flusher_rss_mb"),
        ("ingest workers RSS (MB)", "workers_rss_mb"),
    ):
        lines.append(
            f"| {label} | {span(name, first)} | {span(name, last)} | {span(name, every)} | "
            f"{slope(name)} |"
        )
    for label, name in (
        ("server open files", "server_fds"),
        ("flusher open files", "flusher_fds"),
        ("server threads", "server_threads"),
        ("spool backlog (records)", "spool_pending"),
    ):
        lines.append(
            f"| {label} | {span(name, first)} | {span(name, last)} | {span(name, every)} | |"
        )
    lines += [
        f"| chat p99 per {args.sample_s:g} s (ms) | {p99('chat_p99_ms', first)} | "
        f"{p99('chat_p99_ms', last)} | {p99('chat_p99_ms', every)} | |",
        f"| ingest p99 per {args.sample_s:g} s (ms) | {p99('ingest_p99_ms', first)} | "
        f"{p99('ingest_p99_ms', last)} | {p99('ingest_p99_ms', every)} | |",
        "",
        f"{int(col('chat_n').sum()):,} chat completions ({int(col('chat_errors').sum())} errors), "
        f"{int(col('ingest_batches').sum()):,} ingest batches "
        f"({int(col('ingest_errors').sum())} errors); {acked:,} ingest records acknowledged, "
        f"{stored:,} stored after the stop.",
    ]
    return "\n".join(lines)


def write_summary(summary: str) -> None:
    text = RELIABILITY.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = f"{head}{BEGIN}\n{summary}\n{END}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{summary}\n{END}\n"
    RELIABILITY.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("duration", nargs="?", type=float, help="minutes (same as --minutes)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--chat-rps", type=float, default=20.0)
    ap.add_argument("--ingest-rps", type=float, default=4.0, help="batches per second")
    ap.add_argument("--batch", type=int, default=100, help="records per ingest batch")
    ap.add_argument("--out", type=Path, default=None, help="CSV (default docs/soak-<N>min.csv)")
    ap.add_argument("--data", type=Path, default=None, help="data directory (default: temporary)")
    ap.add_argument("--no-write", action="store_true", help="leave docs/reliability.md as it is")
    args = ap.parse_args()
    if args.duration is not None:
        args.minutes = args.duration
    out = args.out or DOCS / f"soak-{args.minutes:g}min.csv"
    data = args.data or Path(tempfile.mkdtemp(prefix="modelwarden-soak-")) / "warden-data"
    cli = str(Path(sys.executable).parent / "modelwarden")
    env = {**os.environ, "MODELWARDEN_EMBEDDER": "hashing"}

    # The installation: keys, a stable and a canary version, a rollout the controller watches.
    state = StateStore.at(data)
    ingest_key = create_key(state, "ingest", name="soak ingest")[0]
    gateway_key = create_key(state, "operator", name="soak gateway")[0]
    ports = {"stable": free_port(), "canary": free_port(), "server": free_port()}
    registry.add(state, V11, f"http://127.0.0.1:{ports['stable']}", "soak", status="stable")
    registry.add(state, V12, f"http://127.0.0.1:{ports['canary']}", "soak")
    plan = Plan(name="soak", steps=[Step(weight=20, hold=Hold(duration="48h")), Step(weight=100)])
    controller.start(Settings(data_dir=data), V12, plan, "soak", state=state)
    state.close()

    procs: list[subprocess.Popen[bytes]] = []
    # The servers' output: beside a CSV named with --out, else in the temporary directory.
    log_path = (
        out.with_suffix(".log")
        if args.out
        else Path(tempfile.gettempdir()) / f"soak-{args.minutes:g}min.log"
    )
    print(f"server output: {log_path}")
    log = open(log_path, "ab")  # noqa: SIM115 - closed at the end
    for name, version in (("stable", V11), ("canary", V12)):
        procs.append(
            subprocess.Popen(
                [
                    *(cli, "fake-upstream", "--version", version),
                    *("--latency-ms", "5", "--port", str(ports[name])),
                ],
                stdout=log,
                stderr=log,
                env=env,
            )
        )
    server = subprocess.Popen(
        [
            *(cli, "--data", str(data), "serve", "--log-level", "warning", "--no-access-log"),
            *("--port", str(ports["server"])),
        ],
        stdout=log,
        stderr=log,
        env=env,
    )
    procs.append(server)
    url = f"http://127.0.0.1:{ports['server']}"
    try:
        for name in ("stable", "canary"):
            wait_healthy(f"http://127.0.0.1:{ports[name]}", procs[0 if name == "stable" else 1])
        wait_healthy(url, server)
    except SystemExit:
        # Nothing left running: the server (which stops its flusher on SIGTERM) and upstreams.
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise

    stop = threading.Event()
    chat, ingest = Window(), Window()
    acked_ids: list[str] = []
    acked_lock = threading.Lock()

    def chat_step(http: httpx.Client, n: int) -> None:
        body = {
            "model": "any",
            "user": f"op-{n % 500}",
            "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
        }
        t0 = time.perf_counter()
        try:
            ok = http.post("/v1/chat/completions", json=body).status_code == 200
        except httpx.HTTPError:
            ok = False
        chat.add(time.perf_counter() - t0 if ok else None)

    def ingest_step(http: httpx.Client, n: int) -> None:
        now = datetime.now(UTC).isoformat()
        ids = [f"soak-{n}-{i}" for i in range(args.batch)]
        batch = [
            {
                "request_id": rid,
                "timestamp": now,
                "plant_id": f"Plant_{'ABCD'[i % 4]}",
                "model_version": V11,
                "user_prompt": QUESTIONS[i % len(QUESTIONS)],
                "generated_response": "Follow the SOP and wear the listed PPE.",
                "latency_ms": 200 + i,
            }
            for i, rid in enumerate(ids)
        ]
        t0 = time.perf_counter()
        try:
            resp = http.post("/v1/logs", json=batch)
            ok = resp.status_code == 200 and resp.json()["accepted"] == len(batch)
        except httpx.HTTPError:
            ok = False
        ingest.add(time.perf_counter() - t0 if ok else None, len(batch) if ok else 0)
        if ok:
            with acked_lock:
                acked_ids.extend(ids)

    def loop(key: str, rate: float, step: Any) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            paced(rate, stop, lambda n: step(http, n))

    workers = [
        threading.Thread(target=loop, args=(gateway_key, args.chat_rps / 2, chat_step)),
        threading.Thread(
            target=loop,
            args=(gateway_key, args.chat_rps / 2, lambda h, n: chat_step(h, n + 10**9)),
        ),
        threading.Thread(target=loop, args=(ingest_key, args.ingest_rps, ingest_step)),
    ]
    for w in workers:
        w.start()

    t_start = time.monotonic()
    end = t_start + args.minutes * 60
    acked_total = 0
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        while time.monotonic() < end and server.poll() is None:
            stop.wait(min(args.sample_s, max(end - time.monotonic(), 0)))
            s_rss, s_fds, s_thr = proc_stats(server.pid)
            # The flusher, and the ingest workers (and multiprocessing's helper) apart.
            f_rss, f_fds, w_rss = 0.0, 0, 0.0
            for k in children(server.pid):
                r, f, _ = proc_stats(k)
                if is_flusher(k):
                    f_rss, f_fds = f_rss + r, f_fds + f
                else:
                    w_rss += r
            cn, ce, c50, c99 = chat.take()
            inn, ie, i50, i99 = ingest.take()
            with ingest.lock:
                acked_total = ingest.acked
            try:
                pending = httpx.get(f"{url}/healthz", timeout=5).json()["spool"]["pending_records"]
            except httpx.HTTPError:
                pending = None
            writer.writerow(
                [
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    round(time.monotonic() - t_start, 1),
                    round(s_rss, 1),
                    s_fds,
                    s_thr,
                    round(f_rss, 1),
                    f_fds,
                    round(w_rss, 1),
                    cn,
                    ce,
                    None if c50 is None else round(c50, 2),
                    None if c99 is None else round(c99, 2),
                    inn,
                    ie,
                    None if i50 is None else round(i50, 2),
                    None if i99 is None else round(i99, 2),
                    acked_total,
                    pending,
                ]
            )
            fh.flush()

    stop.set()
    for w in workers:
        w.join()
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(120)
    except subprocess.TimeoutExpired:
        server.kill()
        print("the server did not stop within 120 s", file=sys.stderr)
    for p in procs[:2]:
        p.terminate()
        p.wait(10)
    log.close()

    con = LogStore(data / "log").connect()
    stored = set(
        con.to_pyarrow(con.table("requests").select("request_id")).column("request_id").to_pylist()
    )
    lost = [i for i in acked_ids if i not in stored]
    print(f"CSV: {out}")
    print(f"ingest records acknowledged: {len(acked_ids)}, stored: {len(acked_ids) - len(lost)}")
    summary = summarize(out, args, len(acked_ids), len(acked_ids) - len(lost))
    print(summary)
    if not args.no_write:
        write_summary(summary)
        print(f"summary written to {RELIABILITY}")
    if args.data is None:
        shutil.rmtree(data.parent, ignore_errors=True)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
