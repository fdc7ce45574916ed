"""Shared benchmark plumbing: machine facts, peak memory, anchor venvs, docs/benchmarks.md sections."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
CONSTRAINTS = ROOT / "constraints.txt"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, Python "
        f"{platform.python_version()}, load average {load:.1f} at start; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0


def run_json(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict:
    """Run a measurement in its own process (so its peak memory is its own); it prints JSON last."""
    out = subprocess.run(
        list(cmd), capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class TimedCli:
    """One ``modelwarden`` command run in its own process, as ``/usr/bin/time`` saw it."""

    stdout: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: int
    load_1min: float

    def figures(self, digits: int) -> dict[str, float]:
        """Wall and CPU seconds to ``digits`` places, peak memory and the load when it ended."""
        return {
            "seconds": round(self.seconds, digits),
            "cpu_seconds": round(self.cpu_seconds, digits),
            "peak_rss_mb": self.peak_rss_mb,
            "load_1min": self.load_1min,
        }


def timed_cli(args: Sequence[str]) -> TimedCli:
    """Run the venv's ``modelwarden`` with ``args`` under ``/usr/bin/time`` (no colour): its
    output, wall time, user + system CPU time and peak memory; its stderr's end if it fails."""
    cli = str(Path(sys.executable).parent / "modelwarden")
    t0 = time.perf_counter()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M %U %S", cli, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    _, rss_kb, user, system = out.stderr.strip().splitlines()[-1].split()
    return TimedCli(
        out.stdout,
        wall,
        float(user) + float(system),
        round(int(rss_kb) / 1024),
        round(os.getloadavg()[0], 1),
    )


def create_key(cli: str, data: Path, role: str, env: dict[str, str]) -> str:
    """A new API key of ``role`` in ``data``, made with ``modelwarden keys create`` (``env`` is the
    command's whole environment); returns its secret."""
    out = subprocess.run(
        [cli, "--data", str(data), "keys", "create", "--role", role, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return str(json.loads(out.stdout)["key"])


def anchor_venv(name: str, packages: Sequence[str]) -> Path:
    """A benchmark's own virtual environment for an anchor; the project never depends on it."""
    venv = ROOT / "bench" / name / ".venv"
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = " ".join(packages)
    if not stamp.exists() or stamp.read_text() != want:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), *packages], check=True
        )
        stamp.write_text(want)
    return py


def write_section(name: str, markdown: str) -> None:
    """Replace (or add) the section ``name`` of docs/benchmarks.md, between its markers."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = (
        DOC.read_text()
        if DOC.exists()
        else (
            "# Benchmarks\n\nEach section is written by its benchmark (`bench/NAME/run.py`), with the "
            "machine and date it ran on. Ratios compare against the named anchor measured in the "
            "same run.\n"
        )
    )
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text)


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    return head + "".join(
        "| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows
    )
