"""Embedding throughput of the default embedder (all-MiniLM-L6-v2) at batch 1, 32 and 128.

.venv/bin/python bench/embed/run.py [--n 1024] [--threads 1,2]

Each thread count runs in its own process (torch fixes its thread pool once per process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Timer, machine, table, write_section

from modelwarden.embed.minilm import MiniLMEmbedder
from modelwarden.simulate.corpus import TOPICS


def measure(n_max: int, threads: int) -> list[dict[str, object]]:
    texts = [q for t in TOPICS for qa in t.items for q in qa.questions]
    texts = (texts * (n_max // len(texts) + 1))[:n_max]
    emb = MiniLMEmbedder(threads=threads)
    emb.embed(texts[:64], batch_size=32)  # load and warm up
    rows: list[dict[str, object]] = []
    for batch in (1, 32, 128):
        n = min(n_max, 256) if batch == 1 else n_max
        with Timer() as t:
            emb.embed(texts[:n], batch_size=batch)
        rows.append(
            {
                "torch threads": threads,
                "batch size": batch,
                "sentences": n,
                "seconds": f"{t.seconds:.2f}",
                "sentences/s": f"{n / t.seconds:.0f}",
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--side", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(measure(args.n, args.side)))
        return
    head = machine()
    rows: list[dict[str, object]] = []
    for threads in (int(x) for x in args.threads.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--n", str(args.n), "--side", str(threads)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows += json.loads(out.strip().splitlines()[-1])
        for r in rows[-3:]:
            print(r, flush=True)
    md = (
        f"## Embedding throughput (`bench/embed/run.py`)\n\n{head}; corpus prompts (about 12 "
        "words each), all-MiniLM-L6-v2 on the CPU build of torch. `MODELWARDEN_EMBED_THREADS` "
        "sets torch's thread count (default: one per core); on a machine whose cores are busy with other "
        "work, one thread is faster than two.\n\n"
        + table(rows, ["torch threads", "batch size", "sentences", "seconds", "sentences/s"])
    )
    write_section("embed", md)
    print(md)


if __name__ == "__main__":
    main()
