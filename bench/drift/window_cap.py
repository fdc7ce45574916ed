"""What testing a drift window on its capped sample (``drift_window_max``) does to the verdict.

    .venv/bin/python bench/drift/window_cap.py [--cap 50000] [--baseline 150000] [--current 100000]

Synthetic 384-d prompt vectors from 40 topics; the baseline and the current window are drawn
once, tested whole and on the sample a drift read keeps (the ``--cap`` lowest id hashes of each
window, :mod:`modelwarden.embed.sampling`), with no drift and with one topic gaining a point of
share. Prints the suite's verdict, p-value and the cluster member's effect for each; no timing.
"""

from __future__ import annotations

import argparse

import numpy as np

from modelwarden.drift.suite import DriftSuite
from modelwarden.embed.sampling import sample_mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cap", type=int, default=50_000)
    ap.add_argument("--baseline", type=int, default=150_000)
    ap.add_argument("--current", type=int, default=100_000)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    dim, k = 384, 40
    topics = rng.normal(size=(k, dim)).astype(np.float32)

    def draw(n: int, weights: np.ndarray) -> np.ndarray:
        x = topics[rng.choice(k, n, p=weights)] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    even = np.full(k, 1 / k)
    grown = even.copy()
    grown[0] += 0.01
    grown /= grown.sum()
    print("| drift | windows | n | status | p-value | clusters p | clusters effect |")
    print("|:---|:---|---:|:---|---:|---:|---:|")
    for label, weights in (("none", even), ("a topic +1 point", grown)):
        b, c = draw(args.baseline, even), draw(args.current, weights)
        kb = sample_mask([f"b{i}" for i in range(len(b))], args.cap)
        kc = sample_mask([f"c{i}" for i in range(len(c))], args.cap)
        for name, (x, y) in (("whole", (b, c)), ("capped", (b[kb], c[kc]))):
            r = DriftSuite().fit(x).test(y)
            cl = r.details["members"]["clusters"]
            print(
                f"| {label} | {name} | {len(x):,} / {len(y):,} | {r.status} | {r.p_value:.4f} "
                f"| {cl['p_value']:.4f} | {cl['details']['effect']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
