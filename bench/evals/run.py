"""Evaluation metrics and run comparison on 10k items: ModelWarden against the reference libraries.

    .venv/bin/python bench/evals/run.py [--pairs 10000] [--repeats 5]

Metrics: ROUGE-1/2/L (F1, Porter stemmer), sentence BLEU and sentence chrF on synthetic answer /
reference pairs of about 25 words. The anchor is what a team would write with the reference
libraries: Google's ``rouge-score`` ``RougeScorer.score`` and sacrebleu's ``sentence_score`` per
pair, metric objects built once. It runs in this benchmark's own virtual environment
(``bench/evals/.venv``); ModelWarden runs in the project's. Both score the same pairs in the same
run and their scores are compared value for value.

Comparison: a paired bootstrap with 1,000 resamples over 10k items (the draw-count matrix and one
matrix product, as ``compare_runs`` does it) against plain numpy fancy indexing, and the whole
``compare_runs`` (3 metrics, intervals, sign-flip p-values with 10,000 patterns, McNemar, Holm,
a gate) with and without per-plant slices.

Writes the ``evals`` section of ``docs/benchmarks.md``. Timings are the best of ``--repeats`` runs (the median is
shown too): the machine is shared, and the best run is the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from common import anchor_venv, machine, write_section  # noqa: E402

ANCHOR_PACKAGES = ["rouge-score", "sacrebleu", "numpy"]
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]

_TEXT = (
    "the main conveyor requires lubrication every 200 operating hours use ISO VG 46 oil on drive "
    "chain and wipe off excess so it does not collect dust apply lockout tagout before clearing "
    "a jam verify zero energy at the isolator check hydraulic pressure 180 bar replace the return "
    "filter weekly torque flange bolts to 45 Nm in a star pattern inspect the guard interlock "
    "report any leak to maintenance wear safety glasses and gloves when handling coolant "
    "calibrate the torque wrench monthly record readings in the CMMS shift log"
)
VOCAB = _TEXT.split()
PUNCT = [".", ",", ";", ":", "(", ")", "-", "'s", "%"]

ANCHOR = r"""
import json, sys, time
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

data = json.load(open(sys.argv[1]))
hyps, refs, repeats = data["hyps"], data["refs"], data["repeats"]
scorer = rouge_scorer.RougeScorer(data["rouge_types"], use_stemmer=True)
bleu, chrf = BLEU(effective_order=True), CHRF()
times = {"rouge": [], "bleu": [], "chrf": []}
def clock():
    return time.perf_counter(), time.process_time()
def since(t):
    return [time.perf_counter() - t[0], time.process_time() - t[1]]
for _ in range(repeats):
    t = clock()
    rouge = [scorer.score(r, h) for h, r in zip(hyps, refs)]
    times["rouge"].append(since(t)); t = clock()
    b = [bleu.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]
    times["bleu"].append(since(t)); t = clock()
    c = [chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs)]
    times["chrf"].append(since(t))
scores = {t: [s[t].fmeasure for s in rouge] for t in data["rouge_types"]}
scores["bleu"], scores["chrf"] = b, c
json.dump(scores, open(sys.argv[2], "w"))
print(json.dumps({"times": times}))
"""

OURS = r"""
import json, os, sys, time
from modelwarden.evals.metrics import TextMetrics

data = json.load(open(sys.argv[1]))
hyps, refs, repeats = data["hyps"], data["refs"], data["repeats"]
refs_lists = [[r] for r in refs]
tm = TextMetrics(rouge_types=data["rouge_types"], use_stemmer=True)
parts = {
    "rouge": TextMetrics(rouge_types=data["rouge_types"], bleu=False, chrf=False),
    "bleu": TextMetrics(rouge_types=(), chrf=False),
    "chrf": TextMetrics(rouge_types=(), bleu=False),
}
times = {"total": [], "rouge": [], "bleu": [], "chrf": []}
def clock():
    return time.perf_counter(), time.process_time()
def since(t):
    return [time.perf_counter() - t[0], time.process_time() - t[1]]
for _ in range(repeats):
    t = clock()
    out = tm.score(hyps, refs_lists)
    times["total"].append(since(t))
    for name, metric in parts.items():
        t = clock()
        metric.score(hyps, refs_lists)
        times[name].append(since(t))
json.dump({k: v.tolist() for k, v in out.per_item.items()}, open(sys.argv[2], "w"))
print(json.dumps({"times": times, "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "all")}))
"""

COMPARE = r"""
import json, sys, time
import numpy as np
from modelwarden.evals.compare import (
    GateSpec, NonInferiorityCheck, FloorCheck, _Resampler, compare_runs)
from modelwarden.evals.metrics import ItemScores

n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
quality = rng.uniform(0.2, 0.8, n)
plants = ["Plant_A", "Plant_B", "Plant_C", "Plant_D"]

def system(shift, seed):
    r = np.random.default_rng(seed)
    rouge = np.clip(quality + shift + r.normal(0, 0.05, n), 0, 1)
    chrf = np.clip(100 * (quality + shift) + r.normal(0, 5, n), 0, 100)
    lat = 200 + 50 * r.random(n)
    return {f"i{i}": ItemScores(f"i{i}", {"rougeL": float(rouge[i]), "chrf": float(chrf[i]),
                                          "latency_ms": float(lat[i])},
                                {"safety": False, "forbidden": False}, {"plant": plants[i % 4]})
            for i in range(n)}

a, b = system(0.0, 1), system(-0.005, 2)
d = rng.normal(-0.005, 0.07, n)
gate = GateSpec(floors=[FloorCheck(metric="rougeL", min=0.4)],
                non_inferiority=[NonInferiorityCheck(metric="rougeL", margin=0.02),
                                 NonInferiorityCheck(metric="chrf", margin=2),
                                 NonInferiorityCheck(metric="latency_ms", margin=25)])
times = {"ours": [], "naive": [], "ours8": [], "naive8": [], "compare": [],
         "compare_slices": []}
cols = rng.normal(0.5, 0.1, (n, 16))  # 8 metrics: a delta and B's mean each
q = [0.025, 0.975]
for k in range(repeats):
    t0 = time.perf_counter()
    ci_ours = np.quantile(_Resampler(k, 1000, 10_000).means(d[:, None])[:, 0], q)
    times["ours"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    idx = np.concatenate(list(_Resampler(k, 1000, 10_000).index_blocks(n)))
    ci_naive = np.quantile(d[idx].mean(axis=1), q)
    times["naive"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ci8 = np.quantile(_Resampler(k, 1000, 10_000).means(cols), q, axis=0)
    times["ours8"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    idx = np.concatenate(list(_Resampler(k, 1000, 10_000).index_blocks(n)))
    ci8_naive = np.stack([np.quantile(cols[:, j][idx].mean(axis=1), q) for j in range(16)], 1)
    times["naive8"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    cmp = compare_runs(a, b, ["rougeL", "chrf", "latency_ms"], gate=gate, seed=k)
    times["compare"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    cmp_s = compare_runs(a, b, ["rougeL", "chrf", "latency_ms"], slices=["plant"], gate=gate,
                         seed=k)
    times["compare_slices"].append(time.perf_counter() - t0)
same = bool(np.allclose(ci_ours, ci_naive, atol=1e-12) and np.allclose(ci8, ci8_naive, atol=1e-12))
print(json.dumps({"times": times, "same_ci": same,
                  "tests": len(cmp_s.metrics) + len(cmp_s.outcomes), "passed": cmp.passed}))
"""


def _sentence(rng: random.Random, n: int) -> list[str]:
    words = [rng.choice(VOCAB) for _ in range(n)]
    for i in range(len(words)):
        if rng.random() < 0.08:
            words[i] += rng.choice(PUNCT)
    return words


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """References of 18-32 words; answers that keep most of their reference, reworded in part."""
    rng = random.Random(seed)
    hyps, refs = [], []
    for _ in range(n):
        ref = _sentence(rng, rng.randint(18, 32))
        hyp = [w for w in ref if rng.random() > 0.15]
        hyp = [rng.choice(VOCAB) if rng.random() < 0.2 else w for w in hyp]
        if rng.random() < 0.3:
            cut = rng.randint(0, len(hyp))
            hyp[cut:cut] = _sentence(rng, rng.randint(1, 6))
        refs.append(" ".join(ref).capitalize() + ".")
        hyps.append(" ".join(hyp).capitalize() + ".")
    return hyps, refs


def _run(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best(runs: list[list[float]]) -> float:
    """Best wall time of runs recorded as [wall, cpu]."""
    return min(r[0] for r in runs)


def _fmt(s: float) -> str:
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--anchor-repeats", type=int, default=3)
    args = ap.parse_args()

    header = machine()
    anchor_py = anchor_venv("evals", ANCHOR_PACKAGES)
    hyps, refs = make_pairs(args.pairs)
    words = statistics.mean(len(h.split()) for h in hyps + refs)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.json"
        data.write_text(
            json.dumps(
                {"hyps": hyps, "refs": refs, "rouge_types": ROUGE_TYPES, "repeats": args.repeats}
            )
        )
        anchor_data = Path(tmp) / "anchor_pairs.json"
        anchor_data.write_text(
            json.dumps(
                {
                    "hyps": hyps,
                    "refs": refs,
                    "rouge_types": ROUGE_TYPES,
                    "repeats": args.anchor_repeats,
                }
            )
        )
        ours_scores, anchor_scores = Path(tmp) / "ours.json", Path(tmp) / "anchor.json"
        env = {"PYTHONPATH": str(ROOT / "src")}
        ours = _run([sys.executable, "-c", OURS, str(data), str(ours_scores)], env)
        anchor = _run([str(anchor_py), "-c", ANCHOR, str(anchor_data), str(anchor_scores)])
        a_scores = json.loads(anchor_scores.read_text())
        o_scores = json.loads(ours_scores.read_text())
        identical = {k: a_scores[k] == o_scores[k] for k in a_scores}
    cmp = _run([sys.executable, "-c", COMPARE, str(args.pairs), str(args.repeats)], env)

    t_ours, t_anchor = ours["times"], anchor["times"]
    anchor_total = [
        [r[0] + b[0] + c[0], r[1] + b[1] + c[1]]
        for r, b, c in zip(t_anchor["rouge"], t_anchor["bleu"], t_anchor["chrf"], strict=True)
    ]
    rows = [
        ("ROUGE-1/2/L", t_ours["rouge"], t_anchor["rouge"], all(identical[k] for k in ROUGE_TYPES)),
        ("sentence BLEU", t_ours["bleu"], t_anchor["bleu"], identical["bleu"]),
        ("sentence chrF", t_ours["chrf"], t_anchor["chrf"], identical["chrf"]),
        ("**all five, one call**", t_ours["total"], anchor_total, all(identical.values())),
    ]
    best_total = _best(t_ours["total"])
    goal_met = best_total < 1.0
    lines = [
        "## Evaluation metrics and run comparison (`bench/evals/run.py`)",
        "",
        "Written by `bench/evals/run.py`; rerun it to refresh. Machine: " + header + ".",
        f"`nproc` = {os.cpu_count()}; the anchors ran in `bench/evals/.venv`.",
        "",
        "### Metrics",
        "",
        f"{args.pairs:,} synthetic answer/reference pairs of {words:.1f} words on average. "
        "ModelWarden: `TextMetrics.score` (BLEU and chrF statistics vectorised, ROUGE through "
        "`rouge-score-rs`, which uses every core). Anchor: Google `rouge-score` "
        "`RougeScorer.score` and sacrebleu `sentence_score` per pair, objects built once. "
        f"Wall seconds are the best of {args.repeats} runs for ModelWarden and of "
        f"{args.anchor_repeats} for the anchor, with the median and the CPU seconds of the best "
        "run (all threads) in brackets; the machine is shared, so the best run is the least "
        "disturbed one. Goal: ROUGE-1/2/L + BLEU + chrF on 10k pairs in under 1 s: "
        f"**{_fmt(best_total)} s ({'met' if goal_met else 'not met'})**.",
        "",
        "| metric | ModelWarden s (median; CPU) | anchor s (median; CPU) | speed-up | "
        "identical scores |",
        "|---|---|---|---|---|",
    ]
    for name, o, a, same in rows:
        lines.append(
            f"| {name} | {_cell(o)} | {_cell(a)} | {_best(a) / _best(o):.1f}× | "
            f"{'yes' if same else '**no**'} |"
        )
    t_cmp = cmp["times"]
    goal_boot = min(t_cmp["ours"]) < 2.0
    lines += [
        "",
        "### Paired bootstrap and comparison",
        "",
        f"{args.pairs:,} paired items, 1,000 bootstrap resamples, 95% percentile intervals. "
        "ModelWarden draws the index matrix once, turns it into a matrix of draw counts and "
        "multiplies, so every further metric costs one matrix product; the plain way indexes "
        "each metric's values with the index matrix. Both give the same intervals from the same "
        f"draws ({'yes' if cmp['same_ci'] else '**no**'}). `compare_runs` adds, for 3 metrics, "
        "B's intervals, a sign-flip p-value from 10,000 patterns, Cohen's d_z, McNemar on 3 "
        "outcomes, Holm and a gate of 6 checks; with slices it also does all of that for each "
        f"of 4 plants ({cmp['tests']} tests). Goal: the bootstrap in under 2 s: "
        f"**{_fmt(min(t_cmp['ours']))} s ({'met' if goal_boot else 'not met'})**.",
        "",
        "| step | ModelWarden s (median) | plain numpy s (median) |",
        "|---|---|---|",
        f"| bootstrap, 1 metric | {_fmt(min(t_cmp['ours']))} "
        f"({_fmt(statistics.median(t_cmp['ours']))}) | {_fmt(min(t_cmp['naive']))} "
        f"({_fmt(statistics.median(t_cmp['naive']))}) |",
        f"| bootstrap, 8 metrics (delta and B's mean each) | {_fmt(min(t_cmp['ours8']))} "
        f"({_fmt(statistics.median(t_cmp['ours8']))}) | {_fmt(min(t_cmp['naive8']))} "
        f"({_fmt(statistics.median(t_cmp['naive8']))}) |",
        f"| `compare_runs`, 3 metrics | {_fmt(min(t_cmp['compare']))} "
        f"({_fmt(statistics.median(t_cmp['compare']))}) | |",
        f"| `compare_runs`, 3 metrics × (all + 4 plants) | "
        f"{_fmt(min(t_cmp['compare_slices']))} "
        f"({_fmt(statistics.median(t_cmp['compare_slices']))}) | |",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
    ]
    write_section("evals", "\n".join(lines))
    print("\n".join(lines))
    if not all(identical.values()):
        sys.exit("scores differ from the anchor: " + json.dumps(identical))


def _cell(runs: list[list[float]]) -> str:
    best = min(runs, key=lambda r: r[0])
    return f"{_fmt(best[0])} ({_fmt(statistics.median(r[0] for r in runs))}; {_fmt(best[1])})"


if __name__ == "__main__":
    main()
