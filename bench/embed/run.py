"""Embedding throughput of the default embedder (all-MiniLM-L6-v2) at batch 1, 32 and 128.

.venv/bin/python bench/embed/run.py [--n 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Timer, machine, table, write_section

from modelwarden.embed.minilm import MiniLMEmbedder
from modelwarden.simulate.corpus import TOPICS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    texts = [q for t in TOPICS for qa in t.items for q in qa.questions]
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    emb = MiniLMEmbedder(threads=args.threads)
    emb.embed(texts[:64], batch_size=32)  # load and warm up
    rows = []
    for batch in (1, 32, 128):
        n = min(args.n, 256) if batch == 1 else args.n
        with Timer() as t:
            emb.embed(texts[:n], batch_size=batch)
        rows.append(
            {
                "batch size": batch,
                "sentences": n,
                "seconds": f"{t.seconds:.2f}",
                "sentences/s": f"{n / t.seconds:.0f}",
            }
        )
        print(rows[-1], flush=True)
    md = (
        f"## Embedding throughput (`bench/embed/run.py`)\n\n{machine()}; "
        f"{args.threads} torch threads, corpus prompts (about 12 words each).\n\n"
        + table(rows, ["batch size", "sentences", "seconds", "sentences/s"])
    )
    write_section("embed", md)


if __name__ == "__main__":
    main()
