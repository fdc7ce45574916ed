"""Start-up time of the ``modelwarden`` command: the median of N runs of ``--help`` and friends.

    .venv/bin/python bench/cli/run.py [--runs 10] [--no-write]

Each run is a fresh interpreter running this tree's ``modelwarden`` (what the console script runs,
with ``src/`` first on the path), timed from spawn to exit with its output discarded; one warm-up
run first fills the OS file cache and writes the bytecode, as an installed package has it. ``python -c pass`` is measured the same way, so the share that is
ModelWarden's own can be told apart from the interpreter's start-up. CPU time (user + system) is
reported beside wall time: on shared cores it is the steadier figure. Goal: ``--help`` under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common import ROOT, machine, table, write_section  # noqa: E402

GOAL_S = 0.3
# What the console script runs: import the entry point, call it.
RUN = ["-c", "import sys; from modelwarden.cli import main; sys.argv[0] = 'modelwarden'; main()"]
CASES = [
    ("python -c pass (interpreter only)", ["-c", "pass"]),
    ("modelwarden --version", [*RUN, "--version"]),
    ("modelwarden --help", [*RUN, "--help"]),
    ("modelwarden drift --help", [*RUN, "drift", "--help"]),
    ("modelwarden eval --help", [*RUN, "eval", "--help"]),
]


def _env(src: str = str(ROOT / "src")) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else ""), "COLUMNS": "100"}
    # An installed package has its bytecode compiled; the warm-up run writes it for this tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_runs(
    args: list[str], runs: int, src: str | None = None
) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system) of each run."""
    env = _env(src) if src else _env()
    cmd = [sys.executable, *args]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="Print only; leave the docs alone.")
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="Also time the same commands from another tree's src/ (an older checkout), interleaved.",
    )
    args = ap.parse_args()

    where = machine()
    rows = []
    trees = [("", str(ROOT / "src"))] + ([(" (before)", args.before)] if args.before else [])
    for (label, argv), (tag, src) in [(c, t) for c in CASES for t in trees]:
        if tag and (argv[-1] in ("pass", "--version")):
            continue  # the interpreter is the same; the older code has no --version
        times, cpu = time_runs(argv, args.runs, src)
        label = label + tag
        rows.append(
            {
                "command": f"`{label}`",
                "median s": f"{statistics.median(times):.3f}",
                "min s": f"{min(times):.3f}",
                "max s": f"{max(times):.3f}",
                "median CPU s": f"{statistics.median(cpu):.3f}",
            }
        )
        print(
            f"{label}: median {statistics.median(times):.3f} s wall, "
            f"{statistics.median(cpu):.3f} s CPU over {args.runs} runs",
            flush=True,
        )
    load_end = os.getloadavg()[0]
    helps = [
        float(r["median s"])
        for r in rows
        if "--help" in r["command"] and "before" not in r["command"]
    ]
    verdict = "met" if max(helps) < GOAL_S else "not met on this machine at this load"
    md = (
        "## Command start-up (`bench/cli/run.py`)\n\n"
        f"{where}.\n\n"
        f"Median of {args.runs} runs per command (after one warm-up), each a fresh interpreter "
        "with its output discarded; load average "
        f"{load_end:.1f} at the end (above 1, other work shared the cores and the wall-clock "
        "figures vary with it); the "
        "interpreter-only row shows the floor, rows marked (before) run the code before the "
        "start-up work (given with --before), and the CPU column (user + system time of the "
        "process) is the figure least disturbed by the other work. Goal: every `--help` under "
        f"{GOAL_S} s. Result: slowest `--help` median {max(helps):.3f} s ({verdict}).\n\n"
        + table(rows, ["command", "median s", "min s", "max s", "median CPU s"])
    )
    if not args.no_write:
        write_section("cli", md)
    print(md)


if __name__ == "__main__":
    main()
