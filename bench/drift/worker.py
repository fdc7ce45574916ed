"""One benchmark job in its own process: one tool, one case, one scenario, a range of seeds.

Prints one JSON object: per-seed decisions, per-test wall times and the process's peak RSS.
Run by ``run.py``; by hand: ``python worker.py '{"tool": "modelwarden", "case": "b", ...}'``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src"))

from modelwarden.drift.synthetic import (  # noqa: E402
    mixture_weights,
    topic_centres,
    topic_mixture,
)

CASES: dict[str, dict[str, Any]] = {
    "a": {"kind": "seed", "dim": 768, "n_baseline": 100, "n_current": 50},
    "b": {"kind": "topics", "dim": 384, "n_baseline": 5000, "n_current": 1000, "topics": 10},
    "c": {"kind": "topics", "dim": 768, "n_baseline": 50000, "n_current": 10000, "topics": 10},
}

# scenario -> share of topic 0 in the current window (the baseline always has 10%)
SHARES = {"control": 0.10, "grow15": 0.15, "grow30": 0.30}


def windows(case: str, scenario: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    spec = CASES[case]
    if spec["kind"] == "seed":
        # The notebook's arrays: randn * 0.1 + 0.5 against randn * 0.1 + 0.8 (or + 0.5).
        rng = np.random.default_rng(seed)
        shift = 0.8 if scenario == "drift" else 0.5
        baseline = rng.standard_normal((spec["n_baseline"], spec["dim"])) * 0.1 + 0.5
        current = rng.standard_normal((spec["n_current"], spec["dim"])) * 0.1 + shift
        return baseline, current
    centres = topic_centres(spec["topics"], spec["dim"], seed=10_000 + seed)
    rng = np.random.default_rng(seed)
    baseline, _ = topic_mixture(
        centres, mixture_weights(spec["topics"], 0, 0.10), spec["n_baseline"], seed=rng
    )
    current, _ = topic_mixture(
        centres, mixture_weights(spec["topics"], 0, SHARES[scenario]), spec["n_current"], seed=rng
    )
    return baseline, current


# -- tools: each returns a function (baseline, current) -> drifted -------------------------------


def modelwarden_suite() -> Callable[[np.ndarray, np.ndarray], bool]:
    from modelwarden.drift import DriftSuite

    def run(baseline: np.ndarray, current: np.ndarray) -> bool:
        return bool(DriftSuite().fit(baseline).test(current).drifted)

    return run


def evidently_method(method: str) -> Callable[[np.ndarray, np.ndarray], bool]:
    import pandas as pd

    try:  # Evidently >= 0.6 keeps the embedding drift metric in its legacy namespace
        from evidently.legacy.metrics import EmbeddingsDriftMetric
        from evidently.legacy.metrics.data_drift import embedding_drift_methods as methods
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report
    except ImportError:
        from evidently import ColumnMapping
        from evidently.metrics import EmbeddingsDriftMetric
        from evidently.metrics.data_drift import embedding_drift_methods as methods
        from evidently.report import Report

    factory = getattr(methods, method)

    def run(baseline: np.ndarray, current: np.ndarray) -> bool:
        cols = [f"e{i}" for i in range(baseline.shape[1])]
        ref = pd.DataFrame(baseline, columns=cols)
        cur = pd.DataFrame(current, columns=cols)
        report = Report(metrics=[EmbeddingsDriftMetric("emb", drift_method=factory())])
        report.run(
            reference_data=ref,
            current_data=cur,
            column_mapping=ColumnMapping(embeddings={"emb": cols}),
        )
        result = report.as_dict()["metrics"][0]["result"]
        return bool(result["drift_detected"])

    return run


def alibi_mmd() -> Callable[[np.ndarray, np.ndarray], bool]:
    from alibi_detect.cd import MMDDrift

    def run(baseline: np.ndarray, current: np.ndarray) -> bool:
        det = MMDDrift(baseline.astype(np.float32), backend="pytorch", p_val=0.05, device="cpu")
        return bool(det.predict(current.astype(np.float32))["data"]["is_drift"])

    return run


def alibi_classifier() -> Callable[[np.ndarray, np.ndarray], bool]:
    import torch
    from alibi_detect.cd import ClassifierDrift

    def run(baseline: np.ndarray, current: np.ndarray) -> bool:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(baseline.shape[1], 2))
        det = ClassifierDrift(
            baseline.astype(np.float32),
            model,
            backend="pytorch",
            p_val=0.05,
            n_folds=5,
            epochs=3,
            batch_size=256,
            device="cpu",
            verbose=0,
        )
        return bool(det.predict(current.astype(np.float32))["data"]["is_drift"])

    return run


TOOLS: dict[str, Callable[[], Callable[[np.ndarray, np.ndarray], bool]]] = {
    "modelwarden": modelwarden_suite,
    "modelwarden_1t": modelwarden_suite,
    "evidently_model": lambda: evidently_method("model"),
    "evidently_distance": lambda: evidently_method("distance"),
    "evidently_mmd": lambda: evidently_method("mmd"),
    "evidently_ratio": lambda: evidently_method("ratio"),
    "alibi_mmd": alibi_mmd,
    "alibi_classifier": alibi_classifier,
}


def sgemm_gflops() -> float:
    """Single-precision matrix product throughput right now: how busy the cores are."""
    a = np.ones((200, 20000), dtype=np.float32)
    b = np.ones((20000, 384), dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 200 * 20000 * 384 / best / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    job = json.loads(sys.argv[1])
    out: dict[str, Any] = {"job": job, "decisions": [], "seconds": [], "error": None}
    try:
        run = TOOLS[job["tool"]]()
        # Imports and first-call set-up are not part of a test's cost.
        warm_b, warm_c = windows("a", "control", 10**6)
        run(warm_b, warm_c)
        out["sgemm_gflops"] = [sgemm_gflops()]
        for seed in range(job["seed_start"], job["seed_start"] + job["seeds"]):
            baseline, current = windows(job["case"], job["scenario"], seed)
            out["data_rss_mb"] = max(out.get("data_rss_mb", 0.0), peak_rss_mb())
            t0 = time.perf_counter()
            out["decisions"].append(run(baseline, current))
            out["seconds"].append(time.perf_counter() - t0)
            # A partial record per seed, so that a job stopped by its time limit still counts.
            print(
                json.dumps(
                    {"partial": True, "decisions": out["decisions"], "seconds": out["seconds"]}
                ),
                flush=True,
            )
            del baseline, current
        out["sgemm_gflops"].append(sgemm_gflops())
    except MemoryError:
        out["error"] = "out of memory (MemoryError under the job's address-space limit)"
    except Exception as exc:  # a failing anchor is a result, not a crash of the benchmark
        out["error"] = f"{type(exc).__name__}: {exc}".strip()[:400]
        out["traceback"] = traceback.format_exc()[-2000:]
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
