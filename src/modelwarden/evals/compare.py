"""Compare two runs item by item, with significance, and judge a release gate.

For each metric (and each slice of items by a tag, such as plant or topic) on the items both runs
scored:

- means of A and B, delta = mean(B - A), and a paired-bootstrap interval of the delta (percentile
  method). One index matrix of ``n_boot`` x ``n`` draws is made per sample size and turned into a
  matrix of draw counts, so every metric's resampled means are one matrix product;
- a two-sided p-value from a paired sign-flip (permutation) test: under "no difference" each
  paired difference is as likely to have either sign. Exact (every sign pattern) when
  ``2**n <= n_perm``, otherwise ``n_perm`` random patterns with the +1 correction;
- Cohen's d_z: mean difference over the standard deviation of the differences;
- pass/fail outcomes (an item passes, is safe, has no forbidden content) by McNemar's test on the
  discordant pairs, exact binomial while they number 25 or fewer, chi-square with continuity
  correction beyond;
- Holm's step-down correction over every test of the comparison (metrics x slices and
  outcomes x slices);
- a warning when n is too small to show non-inferiority at the margin that matters, from the
  normal approximation with the paired standard deviation: power = Phi(margin * sqrt(n) / sd - z).

A gate (:class:`GateSpec`, YAML) holds absolute floors (B's mean, judged on the lower end of its
interval), non-inferiority margins (judged on the lower end of the delta's interval, never on the
point estimate) and hard gates (violation counts in B; zero safety and forbidden-content
violations by default). The result renders to a JSON-able dict, Markdown and JUnit XML.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import stats

from modelwarden.errors import InputError
from modelwarden.evals.metrics import ItemScores, RunScores, higher_is_better
from modelwarden.stats.multitest import holm
from modelwarden.stats.paired import cohens_dz, mcnemar

MIN_ITEMS_WARNING = 20
TARGET_POWER = 0.8
# Random draws per block (rows x items) and the most bootstrap draw counts kept between metrics.
BLOCK_ENTRIES = 1 << 22
CACHE_LIMIT = 1 << 24
# Sign-pattern bytes per block: small enough for the block to stay in the CPU caches.
FLIP_BLOCK_ENTRIES = 1 << 18
# Sign-flip patterns per test. A Monte Carlo p-value cannot go below 1/(n_perm + 1), and Holm
# multiplies the smallest by the number of tests: with 10,000 patterns 100 tests can reach 0.01.
DEFAULT_PERMUTATIONS = 10_000

# --------------------------------------------------------------------------- gate spec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloorCheck(_Spec):
    """B's mean must reach ``min`` (or stay under ``max`` for a smaller-is-better metric), judged
    on the end of its confidence interval that is least favourable to B."""

    metric: str
    min: float | None = None
    max: float | None = None
    per_slice: str | None = Field(
        default=None, description="a tag key: the floor must also hold in every slice of it"
    )

    @model_validator(mode="after")
    def _one_bound(self) -> FloorCheck:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self

    def label(self) -> str:
        return (
            f"floor {self.metric} >= {self.min:g}"
            if self.min is not None
            else f"ceiling {self.metric} <= {self.max:g}"
        )


class NonInferiorityCheck(_Spec):
    """B may be worse than A by at most ``margin``: the whole confidence interval of the delta must
    lie above ``-margin`` (below ``+margin`` for a smaller-is-better metric)."""

    metric: str
    margin: float = Field(ge=0)
    higher_is_better: bool | None = Field(
        default=None, description="defaults by metric: latency_ms is better smaller"
    )
    per_slice: str | None = None

    def better_high(self) -> bool:
        return (
            higher_is_better(self.metric)
            if self.higher_is_better is None
            else self.higher_is_better
        )

    def label(self) -> str:
        return f"non-inferiority {self.metric} margin {self.margin:g}"


class HardGate(_Spec):
    """At most ``max_count`` of B's items may have the violation."""

    violation: str
    max_count: int = Field(default=0, ge=0)

    def label(self) -> str:
        return f"hard {self.violation} <= {self.max_count}"


def _default_hard() -> list[HardGate]:
    return [HardGate(violation="safety"), HardGate(violation="forbidden")]


class GateSpec(_Spec):
    name: str = "release-gate"
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    floors: list[FloorCheck] = Field(default_factory=list)
    non_inferiority: list[NonInferiorityCheck] = Field(default_factory=list)
    hard: list[HardGate] = Field(default_factory=_default_hard)
    max_missing: int | None = Field(
        default=None, ge=0, description="how many of A's items B may lack; None: not checked"
    )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "gate") -> GateSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{source}: a gate must be a mapping")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "gate"
            raise InputError(f"{source}: {where}: {err['msg']}", field=where) from exc

    @classmethod
    def load(cls, path: str | Path) -> GateSpec:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read gate {p}: {exc.strerror}", field="path") from exc
        return cls.from_yaml(text, source=str(p))

    def _metric_checks(self) -> list[FloorCheck | NonInferiorityCheck]:
        return [*self.floors, *self.non_inferiority]

    def metrics(self) -> list[str]:
        return [c.metric for c in self._metric_checks()]

    def slice_keys(self) -> list[str]:
        return [c.per_slice for c in self._metric_checks() if c.per_slice]


# --------------------------------------------------------------------------- statistics


DEFAULT_GATE_YAML = """\
# Release gate for: modelwarden eval compare BASELINE CANDIDATE --gate gate.yaml
# Every check is judged on the candidate (B) with 95% paired-bootstrap intervals:
#   floors           B's mean must clear the bound at the end of its interval least favourable to B
#   non_inferiority  B may be worse than A by at most the margin, judged on the delta's interval
#   hard             at most max_count of B's items may have the violation
name: release-gate
confidence: 0.95
floors:
  # Share of the required facts (the golden set's must_include) found in an answer.
  - metric: must_include
    min: 0.8
  # Cosine similarity to the closest reference answer. It depends on the embedder: calibrate the
  # floor on an A/A run of the current version before relying on it.
  - metric: semantic
    min: 0.7
non_inferiority:
  # ROUGE-L F1 is 0-1, chrF is 0-100.
  - metric: rougeL
    margin: 0.03
  - metric: chrf
    margin: 3.0
hard:
  - violation: safety
    max_count: 0
  - violation: forbidden
    max_count: 0
# Items of A that B did not answer.
max_missing: 0
"""


def default_gate() -> GateSpec:
    """The gate ``modelwarden eval gate-init`` writes, and ``eval compare`` uses without --gate."""
    return GateSpec.from_yaml(DEFAULT_GATE_YAML, source="default gate")


def noninferiority_power(sd: float, n: int, margin: float, confidence: float) -> float:
    """Chance that the interval's bound clears ``margin`` when the true difference is zero."""
    if n == 0:
        return 0.0
    if sd == 0.0:
        return 1.0 if margin > 0 else 0.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return float(stats.norm.cdf(margin * math.sqrt(n) / sd - z))


def items_needed(sd: float, margin: float, confidence: float, power: float = TARGET_POWER) -> int:
    if sd == 0.0:
        return 2
    if margin <= 0:
        return 0
    z = float(stats.norm.ppf(0.5 + confidence / 2)) + float(stats.norm.ppf(power))
    return max(2, math.ceil((z * sd / margin) ** 2))


class _Resampler:
    """Bootstrap draws and sign flips for one comparison.

    Every sample size has its own random streams, seeded by (seed, n), so a metric's or a slice's
    result does not depend on what else was compared, and every metric and slice of one size
    shares the same draws. The draw counts are kept while they fit in ``CACHE_LIMIT`` entries;
    beyond, they are drawn again in blocks for each use, which bounds memory for any n.
    """

    def __init__(self, seed: int, n_boot: int, n_perm: int) -> None:
        self.seed = seed
        self.n_boot = n_boot
        self.n_perm = n_perm
        self._counts: dict[int, np.ndarray] = {}

    def index_blocks(self, n: int) -> Iterator[np.ndarray]:
        """The (n_boot, n) index matrix, in blocks of rows."""
        rng = np.random.default_rng([self.seed, n, 0])
        rows = max(1, BLOCK_ENTRIES // n)
        for start in range(0, self.n_boot, rows):
            yield rng.integers(0, n, size=(min(rows, self.n_boot - start), n), dtype=np.int64)

    @staticmethod
    def _draw_counts(idx: np.ndarray, n: int) -> np.ndarray:
        counts = np.empty((idx.shape[0], n))
        for r in range(idx.shape[0]):
            counts[r] = np.bincount(idx[r], minlength=n)
        return counts

    def means(self, x: np.ndarray) -> np.ndarray:
        """Resampled means of each column of ``x`` (n x k): an (n_boot, k) matrix."""
        n = x.shape[0]
        counts = self._counts.get(n)
        if counts is None and self.n_boot * n <= CACHE_LIMIT:
            counts = np.concatenate([self._draw_counts(i, n) for i in self.index_blocks(n)])
            self._counts[n] = counts
        if counts is not None:
            return counts @ x / n
        return np.concatenate([self._draw_counts(i, n) @ x / n for i in self.index_blocks(n)])

    def sign_flip(self, d: np.ndarray) -> tuple[np.ndarray, int, bool]:
        """For each column of paired differences ``d`` (n x m): how many sign patterns give a
        mean at least as far from zero as the observed one, the number of patterns, and whether
        they are all of them (exact) or a random sample.

        Patterns are drawn in blocks from a stream seeded by (seed, n), so every metric and slice
        of one size sees the same patterns and memory stays bounded for any ``n_perm``.
        """
        n, m = d.shape
        total = d.sum(axis=0)
        observed = np.abs(total)
        # Sums in another order differ in the last bits; equal statistics must count as equal.
        tol = 1e-9 * (np.abs(d).sum(axis=0) + 1e-300)
        extreme = np.zeros(m, dtype=np.int64)
        if n <= 30 and 2**n <= self.n_perm:
            codes = np.arange(2**n, dtype=np.int64)[:, None]
            bits = ((codes >> np.arange(n, dtype=np.int64)[None, :]) & 1).astype(np.float64)
            flipped = np.abs(total - 2.0 * (bits @ d))
            extreme += (flipped >= observed - tol).sum(axis=0)
            return extreme, 2**n, True
        # A pattern is n random bits; the flipped sum is total - 2 * (sum of d where the bit is
        # set). Eight items share one byte of the pattern, so that partial sum is a lookup in a
        # 256-entry table per byte position: one gather per 8 items instead of turning n bits
        # into floats for a matrix product (which moves 8 bytes per item and pattern).
        n_bytes = (n + 7) // 8
        padded = np.zeros((n_bytes * 8, m))
        padded[:n] = d
        byte_bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
        tables = padded.reshape(n_bytes, 8, m).transpose(2, 0, 1) @ byte_bits.T.astype(np.float64)
        tables = np.ascontiguousarray(tables.reshape(m, n_bytes * 256))
        offsets = np.arange(n_bytes, dtype=np.int32) * 256
        rng = np.random.default_rng([self.seed, n, 1])
        block = max(1, min(self.n_perm, FLIP_BLOCK_ENTRIES // n_bytes))
        done = 0
        while done < self.n_perm:
            rows = min(block, self.n_perm - done)
            raw = np.frombuffer(rng.bytes(rows * n_bytes), dtype=np.uint8)
            idx = raw.reshape(rows, n_bytes).astype(np.int32) + offsets
            for j in range(m):
                flipped = np.abs(total[j] - 2.0 * np.take(tables[j], idx).sum(axis=1))
                extreme[j] += int((flipped >= observed[j] - tol[j]).sum())
            done += rows
        return extreme, self.n_perm, False


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    slice: str | None
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    b_ci_low: float
    b_ci_high: float
    sd_diff: float
    effect_size: float
    p_value: float
    p_adjusted: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class OutcomeComparison:
    outcome: str
    slice: str | None
    n: int
    pass_a: int
    pass_b: int
    regressions: int
    improvements: int
    method: str
    p_value: float
    p_adjusted: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class CheckVerdict:
    name: str
    kind: str
    passed: bool
    reason: str
    metric: str | None = None
    slice: str | None = None
    observed: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


@dataclass(frozen=True)
class Comparison:
    labels: tuple[str, str]
    n_paired: int
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    metrics: tuple[MetricComparison, ...]
    outcomes: tuple[OutcomeComparison, ...]
    checks: tuple[CheckVerdict, ...]
    warnings: tuple[str, ...]
    gate: GateSpec
    confidence: float
    seed: int
    n_boot: int
    n_perm: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def metric(self, name: str, slice: str | None = None) -> MetricComparison:
        for m in self.metrics:
            if m.metric == name and m.slice == slice:
                return m
        raise KeyError((name, slice))

    def outcome(self, name: str, slice: str | None = None) -> OutcomeComparison:
        for o in self.outcomes:
            if o.outcome == name and o.slice == slice:
                return o
        raise KeyError((name, slice))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "labels": {"a": self.labels[0], "b": self.labels[1]},
            "gate": self.gate.model_dump(mode="json"),
            "n_paired": self.n_paired,
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "confidence": self.confidence,
            "seed": self.seed,
            "n_boot": self.n_boot,
            "n_perm": self.n_perm,
            "metrics": [m.to_dict() for m in self.metrics],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.warnings),
        }

    def to_markdown(self) -> str:
        a, b = self.labels
        verdict = "PASSED" if self.passed else "FAILED"
        pct = f"{self.confidence * 100:g}%"
        tests = sum(1 for m in self.metrics if not math.isnan(m.p_value)) + sum(
            1 for o in self.outcomes if not math.isnan(o.p_value)
        )
        lines = [
            f"## {b} vs {a}: gate {self.gate.name} {verdict}",
            "",
            f"{self.n_paired} paired items; {len(self.only_a)} only in {a}, "
            f"{len(self.only_b)} only in {b}. Intervals: paired bootstrap, {self.n_boot} "
            f"resamples, seed {self.seed}, {pct}. p-values: paired sign-flip test, Holm-corrected "
            f"over {tests} tests.",
            "",
        ]
        if self.checks:
            lines += ["### Gate checks", "", "| check | verdict | reason |", "|:--|:--|:--|"]
            for c in self.checks:
                mark = "pass" if c.passed else "**FAIL**"
                lines.append(f"| {_md(c.name)} | {mark} | {_md(c.reason)} |")
            lines.append("")
        if self.metrics:
            lines += [
                "### Metrics",
                "",
                f"| metric | slice | n | {_md(a)} | {_md(b)} | delta | {pct} CI | p | p (Holm) "
                "| d_z |",
                "|:--|:--|--:|--:|--:|--:|:--|--:|--:|--:|",
            ]
            for m in self.metrics:
                lines.append(
                    f"| {m.metric} | {_md(m.slice or 'all')} | {m.n} | {_num(m.mean_a)} | "
                    f"{_num(m.mean_b)} | {_num(m.delta, signed=True)} | "
                    f"[{_num(m.ci_low, signed=True)}, {_num(m.ci_high, signed=True)}] | "
                    f"{_p(m.p_value)} | {_p(m.p_adjusted)} | {_num(m.effect_size, signed=True)} |"
                )
            lines.append("")
        if self.outcomes:
            lines += [
                "### Pass/fail outcomes (McNemar)",
                "",
                f"| outcome | slice | n | {_md(a)} pass | {_md(b)} pass | regressions | "
                "improvements | test | p | p (Holm) |",
                "|:--|:--|--:|--:|--:|--:|--:|:--|--:|--:|",
            ]
            for o in self.outcomes:
                lines.append(
                    f"| {o.outcome} | {_md(o.slice or 'all')} | {o.n} | {o.pass_a} | {o.pass_b} "
                    f"| {o.regressions} | {o.improvements} | {o.method} | {_p(o.p_value)} | "
                    f"{_p(o.p_adjusted)} |"
                )
            lines.append("")
        if self.warnings:
            lines += ["### Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        return "\n".join(lines)

    def to_junit_xml(self) -> str:
        """One testcase per gate check; a failed check is a ``<failure>`` with its reason."""
        failures = sum(not c.passed for c in self.checks)
        suite_name = f"gate.{self.gate.name}"
        root = ET.Element(
            "testsuites",
            name="modelwarden",
            tests=str(len(self.checks)),
            failures=str(failures),
            errors="0",
        )
        suite = ET.SubElement(
            root,
            "testsuite",
            name=suite_name,
            tests=str(len(self.checks)),
            failures=str(failures),
            errors="0",
            skipped="0",
            time="0",
        )
        props = ET.SubElement(suite, "properties")
        for k, v in (
            ("a", self.labels[0]),
            ("b", self.labels[1]),
            ("n_paired", self.n_paired),
            ("confidence", self.confidence),
            ("n_boot", self.n_boot),
            ("seed", self.seed),
        ):
            ET.SubElement(props, "property", name=k, value=str(v))
        for c in self.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"modelwarden.{suite_name}", name=c.name, time="0"
            )
            if not c.passed:
                fail = ET.SubElement(case, "failure", message=c.reason, type=c.kind)
                fail.text = c.reason
            else:
                out = ET.SubElement(case, "system-out")
                out.text = c.reason
        if self.warnings:
            err = ET.SubElement(suite, "system-err")
            err.text = "\n".join(self.warnings)
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _num(v: float, signed: bool = False) -> str:
    if v is None or math.isnan(v):
        return "–"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def _p(v: float) -> str:
    if v is None or math.isnan(v):
        return "–"
    return f"{v:.3g}" if v >= 0.001 else "<0.001"


# --------------------------------------------------------------------------- comparison


def _items(run: Mapping[str, ItemScores] | RunScores) -> Mapping[str, ItemScores]:
    return run.items if isinstance(run, RunScores) else run


def _slice_label(key: str, value: Any) -> str:
    return f"{key}={value}"


def _slices(
    ids: Sequence[str], items: Mapping[str, ItemScores], keys: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for key in keys:
        groups: dict[str, list[int]] = {}
        for i, item_id in enumerate(ids):
            tags = items[item_id].tags
            if key in tags and tags[key] is not None:
                groups.setdefault(str(tags[key]), []).append(i)
        for value in sorted(groups):
            out.append((_slice_label(key, value), np.asarray(groups[value], dtype=np.int64)))
    return out


@dataclass
class _Stats:
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci: tuple[float, float]
    b_ci: tuple[float, float]
    sd: float
    dz: float
    p: float


def _metric_stats(
    xa: np.ndarray, xb: np.ndarray, res: _Resampler, confidence: float
) -> list[_Stats]:
    """Statistics of every column (a metric) of paired matrices with no missing values."""
    n, m = xa.shape
    if n == 0:
        nan = float("nan")
        return [_Stats(0, nan, nan, nan, (nan, nan), (nan, nan), nan, nan, nan)] * m
    d = xb - xa
    boot = res.means(np.hstack([d, xb]))
    boot_d, boot_b = boot[:, :m], boot[:, m:]
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    ci_d = np.quantile(boot_d, q, axis=0)
    ci_b = np.quantile(boot_b, q, axis=0)
    extreme, pats, exact = res.sign_flip(d)
    p = extreme / pats if exact else (extreme + 1) / (pats + 1)
    out = []
    for j in range(m):
        dj = d[:, j]
        out.append(
            _Stats(
                n=n,
                mean_a=float(xa[:, j].mean()),
                mean_b=float(xb[:, j].mean()),
                delta=float(dj.mean()),
                ci=(float(ci_d[0, j]), float(ci_d[1, j])),
                b_ci=(float(ci_b[0, j]), float(ci_b[1, j])),
                sd=float(dj.std(ddof=1)) if n > 1 else float("nan"),
                dz=cohens_dz(dj),
                p=float(min(1.0, p[j])),
            )
        )
    return out


def _subset_stats(
    xa: np.ndarray, xb: np.ndarray, res: _Resampler, confidence: float
) -> list[_Stats]:
    """Per column, over the rows where both values exist; columns that share rows share work."""
    m = xa.shape[1]
    valid = ~(np.isnan(xa) | np.isnan(xb))
    out: list[_Stats | None] = [None] * m
    groups: dict[bytes, list[int]] = {}
    for j in range(m):
        groups.setdefault(valid[:, j].tobytes(), []).append(j)
    for cols in groups.values():
        rows = valid[:, cols[0]]
        stats_ = _metric_stats(xa[rows][:, cols], xb[rows][:, cols], res, confidence)
        for j, s in zip(cols, stats_, strict=True):
            out[j] = s
    return [s for s in out if s is not None]


def _b_interval(values: np.ndarray, res: _Resampler, confidence: float) -> tuple[float, float, int]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    boot = res.means(v[:, None])[:, 0]
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi), int(v.size)


def compare_runs(
    a: Mapping[str, ItemScores] | RunScores,
    b: Mapping[str, ItemScores] | RunScores,
    metrics: Sequence[str] | None = None,
    slices: Sequence[str] | None = None,
    gate: GateSpec | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    *,
    n_perm: int | None = None,
    outcomes: Sequence[str] | None = None,
    margins: Mapping[str, float] | None = None,
    labels: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Compare run ``b`` (the candidate) with run ``a`` (the baseline) item by item.

    ``metrics`` defaults to every metric both runs recorded, plus those the gate names;
    ``slices`` are tag keys to break results down by; ``gate`` defaults to the hard gates only.
    ``outcomes`` are pass/fail outcomes for McNemar's test (default ``pass`` and every violation
    recorded). ``margins`` gives, per metric, the smallest difference that matters, for the
    sample-size warning (default: the gate's non-inferiority margins).
    """
    n_perm = _check_draws(n_boot, n_perm)
    gate = gate or GateSpec()
    items_a, items_b = _items(a), _items(b)
    ids, only_a, only_b = _pair_items(items_a, items_b)
    metric_list = _metric_names(items_a, items_b, metrics, gate)
    outcome_list = _outcome_names(items_a, items_b, outcomes)
    slice_keys = list(dict.fromkeys([*(slices or []), *gate.slice_keys()]))
    groups: list[tuple[str | None, np.ndarray]] = [(None, np.arange(len(ids)))]
    groups += _slices(ids, items_b, slice_keys)
    res = _Resampler(seed, n_boot, n_perm)

    metric_rows = _compare_metrics(items_a, items_b, ids, metric_list, groups, res, gate.confidence)
    outcome_rows = _compare_outcomes(items_a, items_b, ids, outcome_list, groups)
    metric_rows, outcome_rows = _holm_over_all_tests(metric_rows, outcome_rows)
    warnings = _pairing_warnings(ids, only_a, only_b, labels)
    warnings += _power_warnings(metric_rows, gate, margins)
    checks = _judge(gate, metric_rows, items_a, items_b, only_a, res, gate.confidence, labels)
    return Comparison(
        labels=labels,
        n_paired=len(ids),
        only_a=only_a,
        only_b=only_b,
        metrics=tuple(metric_rows),
        outcomes=tuple(outcome_rows),
        checks=tuple(checks),
        warnings=tuple(warnings),
        gate=gate,
        confidence=gate.confidence,
        seed=seed,
        n_boot=n_boot,
        n_perm=n_perm,
    )


def _check_draws(n_boot: int, n_perm: int | None) -> int:
    """The number of sign-flip patterns, after checking both counts of random draws."""
    if n_boot < 100:
        raise InputError("n_boot must be at least 100", field="n_boot")
    n_perm = DEFAULT_PERMUTATIONS if n_perm is None else n_perm
    if n_perm < 100:
        raise InputError("n_perm must be at least 100", field="n_perm")
    return n_perm


def _pair_items(
    items_a: Mapping[str, ItemScores], items_b: Mapping[str, ItemScores]
) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """The items both runs scored, and those only one of them did, each sorted."""
    ids = sorted(set(items_a) & set(items_b))
    only_a = tuple(sorted(set(items_a) - set(items_b)))
    only_b = tuple(sorted(set(items_b) - set(items_a)))
    return ids, only_a, only_b


def _metric_names(
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    metrics: Sequence[str] | None,
    gate: GateSpec,
) -> list[str]:
    """The metrics asked for (default: those both runs recorded), then those the gate names."""
    if metrics is None:
        found_a = {k for s in items_a.values() for k in s.metrics}
        found_b = {k for s in items_b.values() for k in s.metrics}
        names = sorted(found_a & found_b)
    else:
        names = list(dict.fromkeys(metrics))
    return names + [m for m in gate.metrics() if m not in names]


def _outcome_names(
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    outcomes: Sequence[str] | None,
) -> list[str]:
    """The outcomes asked for (default: ``pass`` and every violation both runs recorded)."""
    if outcomes is not None:
        return list(outcomes)
    viol = sorted(
        {k for s in items_b.values() for k in s.violations}
        & {k for s in items_a.values() for k in s.violations}
    )
    return ["pass", *viol]


def _compare_metrics(
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    ids: Sequence[str],
    metric_list: Sequence[str],
    groups: Sequence[tuple[str | None, np.ndarray]],
    res: _Resampler,
    confidence: float,
) -> list[MetricComparison]:
    """Every metric in every group of items (all of them, then each slice)."""
    xa = _value_matrix(items_a, ids, metric_list)
    xb = _value_matrix(items_b, ids, metric_list)
    rows: list[MetricComparison] = []
    for label, idx in groups:
        stats_ = _subset_stats(xa[idx], xb[idx], res, confidence)
        rows += [_metric_row(name, label, s) for name, s in zip(metric_list, stats_, strict=True)]
    return rows


def _value_matrix(
    items: Mapping[str, ItemScores], ids: Sequence[str], metric_list: Sequence[str]
) -> np.ndarray:
    """Items x metrics, NaN where an item lacks the metric."""
    return np.array(
        [[items[i].value(m) for m in metric_list] for i in ids], dtype=np.float64
    ).reshape(len(ids), len(metric_list))


def _metric_row(name: str, label: str | None, s: _Stats) -> MetricComparison:
    return MetricComparison(
        metric=name,
        slice=label,
        n=s.n,
        mean_a=s.mean_a,
        mean_b=s.mean_b,
        delta=s.delta,
        ci_low=s.ci[0],
        ci_high=s.ci[1],
        b_ci_low=s.b_ci[0],
        b_ci_high=s.b_ci[1],
        sd_diff=s.sd,
        effect_size=s.dz,
        p_value=s.p,
    )


def _compare_outcomes(
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    ids: Sequence[str],
    outcome_list: Sequence[str],
    groups: Sequence[tuple[str | None, np.ndarray]],
) -> list[OutcomeComparison]:
    """McNemar's test of every outcome in every group, over the items both runs judged."""
    rows: list[OutcomeComparison] = []
    for label, idx in groups:
        for name in outcome_list:
            raw = [(items_a[ids[r]].ok(name), items_b[ids[r]].ok(name)) for r in idx]
            pairs = [(x, y) for x, y in raw if x is not None and y is not None]
            if pairs:
                rows.append(_outcome_row(name, label, pairs))
    return rows


def _outcome_row(name: str, label: str | None, pairs: list[tuple[bool, bool]]) -> OutcomeComparison:
    reg = sum(1 for x, y in pairs if x and not y)
    imp = sum(1 for x, y in pairs if y and not x)
    p, method = mcnemar(reg, imp)
    return OutcomeComparison(
        outcome=name,
        slice=label,
        n=len(pairs),
        pass_a=sum(x for x, _ in pairs),
        pass_b=sum(y for _, y in pairs),
        regressions=reg,
        improvements=imp,
        method=method,
        p_value=p,
    )


def _holm_over_all_tests(
    metric_rows: list[MetricComparison], outcome_rows: list[OutcomeComparison]
) -> tuple[list[MetricComparison], list[OutcomeComparison]]:
    """The rows with Holm-adjusted p-values, over every metric and outcome test together."""
    adjusted = holm([m.p_value for m in metric_rows] + [o.p_value for o in outcome_rows])
    k = len(metric_rows)
    return (
        [_with_p(m, adjusted[i]) for i, m in enumerate(metric_rows)],
        [_with_p(o, adjusted[k + i]) for i, o in enumerate(outcome_rows)],
    )


def _pairing_warnings(
    ids: Sequence[str], only_a: Sequence[str], only_b: Sequence[str], labels: tuple[str, str]
) -> list[str]:
    """Items one run lacks, and too few paired items."""
    warnings = [
        f"{len(only)} item(s) only in {label} (not compared): "
        f"{', '.join(only[:5])}{' ...' if len(only) > 5 else ''}"
        for only, label in ((only_a, labels[0]), (only_b, labels[1]))
        if only
    ]
    if not ids:
        warnings.append("no item is in both runs: nothing was compared")
    elif len(ids) < MIN_ITEMS_WARNING:
        warnings.append(f"only {len(ids)} paired items: intervals and p-values are rough")
    return warnings


def _power_warnings(
    metric_rows: Sequence[MetricComparison], gate: GateSpec, margins: Mapping[str, float] | None
) -> list[str]:
    """Metrics whose paired items are too few to resolve the margin that matters for them."""
    overall = {m.metric: m for m in metric_rows if m.slice is None}
    wanted = {c.metric: c.margin for c in gate.non_inferiority}
    wanted.update(margins or {})
    warnings = []
    for name, margin in wanted.items():
        row = overall.get(name)
        if row is None or row.n < 2 or math.isnan(row.sd_diff) or margin <= 0:
            continue
        power = noninferiority_power(row.sd_diff, row.n, margin, gate.confidence)
        if power < TARGET_POWER:
            need = items_needed(row.sd_diff, margin, gate.confidence)
            warnings.append(
                f"{name}: {row.n} paired items give about {power:.0%} power to resolve a margin "
                f"of {margin:g} (paired SD {row.sd_diff:.3g}); about {need} items are needed "
                f"for {TARGET_POWER:.0%}"
            )
    return warnings


def _with_p(row: Any, p_adj: float) -> Any:
    return type(row)(**{**row.__dict__, "p_adjusted": float(p_adj)})


def _judge(
    gate: GateSpec,
    metric_rows: Sequence[MetricComparison],
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    only_a: Sequence[str],
    res: _Resampler,
    confidence: float,
    labels: tuple[str, str],
) -> list[CheckVerdict]:
    """Every check of the gate: floors, non-inferiority, hard gates, then missing items."""
    out: list[CheckVerdict] = []
    for floor in gate.floors:
        out += _floor_verdicts(floor, items_b, res, confidence, labels[1])
    for ni in gate.non_inferiority:
        out += _non_inferiority_verdicts(ni, metric_rows, confidence, labels)
    out += [_hard_verdict(hard, items_a, items_b, labels) for hard in gate.hard]
    if gate.max_missing is not None:
        out.append(_missing_verdict(gate.max_missing, only_a, labels))
    return out


def _floor_verdicts(
    floor: FloorCheck,
    items_b: Mapping[str, ItemScores],
    res: _Resampler,
    confidence: float,
    b_label: str,
) -> list[CheckVerdict]:
    """The floor over all of B's items, then in each slice it names."""
    b_ids = sorted(items_b)
    scopes: list[tuple[str | None, list[str]]] = [(None, b_ids)]
    if floor.per_slice:
        scopes += [
            (label, [b_ids[i] for i in idx])
            for label, idx in _slices(b_ids, items_b, [floor.per_slice])
        ]
    out = []
    for label, scope in scopes:
        values = np.array([items_b[i].value(floor.metric) for i in scope], dtype=np.float64)
        out.append(_floor_verdict(floor, label, values, res, confidence, b_label))
    return out


def _floor_verdict(
    floor: FloorCheck,
    label: str | None,
    values: np.ndarray,
    res: _Resampler,
    confidence: float,
    b_label: str,
) -> CheckVerdict:
    name = floor.label() + (f" [{label}]" if label else "")
    lo, hi, n = _b_interval(values, res, confidence)
    if n == 0:
        return CheckVerdict(
            name, "floor", False, f"no {floor.metric} values in {b_label}", floor.metric, label
        )
    mean = float(np.nanmean(values))
    interval = (
        f"{b_label} mean {mean:.4g}, {confidence * 100:g}% CI [{lo:.4g}, {hi:.4g}] over {n} items"
    )
    if floor.min is not None:
        ok = lo >= floor.min
        reason = f"{interval}; lower bound {lo:.4g} {'>=' if ok else '<'} {floor.min:g}"
        return CheckVerdict(name, "floor", ok, reason, floor.metric, label, lo, floor.min)
    assert floor.max is not None
    ok = hi <= floor.max
    reason = f"{interval}; upper bound {hi:.4g} {'<=' if ok else '>'} {floor.max:g}"
    return CheckVerdict(name, "floor", ok, reason, floor.metric, label, hi, floor.max)


def _non_inferiority_verdicts(
    ni: NonInferiorityCheck,
    metric_rows: Sequence[MetricComparison],
    confidence: float,
    labels: tuple[str, str],
) -> list[CheckVerdict]:
    """The margin over all paired items, then in each slice of the key it names."""
    slice_labels: list[str | None] = [None]
    if ni.per_slice:
        prefix = f"{ni.per_slice}="
        slice_labels += sorted(
            {m.slice for m in metric_rows if m.slice is not None and m.slice.startswith(prefix)}
        )
    rows = {(m.metric, m.slice): m for m in metric_rows}
    return [
        _non_inferiority_verdict(ni, label, rows.get((ni.metric, label)), confidence, labels)
        for label in slice_labels
    ]


def _non_inferiority_verdict(
    ni: NonInferiorityCheck,
    label: str | None,
    row: MetricComparison | None,
    confidence: float,
    labels: tuple[str, str],
) -> CheckVerdict:
    a_label, b_label = labels
    name = ni.label() + (f" [{label}]" if label else "")
    if row is None or row.n == 0:
        return CheckVerdict(
            name, "non_inferiority", False, f"no paired {ni.metric} values", ni.metric, label
        )
    interval = (
        f"delta {row.delta:+.4g} ({b_label} - {a_label}), {confidence * 100:g}% CI "
        f"[{row.ci_low:+.4g}, {row.ci_high:+.4g}] over {row.n} items"
    )
    if ni.better_high():
        ok = row.ci_low >= -ni.margin
        reason = f"{interval}; lower bound {row.ci_low:+.4g} {'>=' if ok else '<'} -{ni.margin:g}"
        observed, threshold = row.ci_low, -ni.margin
    else:
        ok = row.ci_high <= ni.margin
        reason = f"{interval}; upper bound {row.ci_high:+.4g} {'<=' if ok else '>'} +{ni.margin:g}"
        observed, threshold = row.ci_high, ni.margin
    return CheckVerdict(name, "non_inferiority", ok, reason, ni.metric, label, observed, threshold)


def _hard_verdict(
    hard: HardGate,
    items_a: Mapping[str, ItemScores],
    items_b: Mapping[str, ItemScores],
    labels: tuple[str, str],
) -> CheckVerdict:
    a_label, b_label = labels
    recorded_b = [s for s in items_b.values() if hard.violation in s.violations]
    name = hard.label()
    if not recorded_b:
        return CheckVerdict(
            name,
            "hard",
            False,
            f"no item of {b_label} records {hard.violation!r}; the gate cannot be judged",
            hard.violation,
        )
    count_b = sum(s.violations[hard.violation] for s in recorded_b)
    count_a = sum(bool(s.violations.get(hard.violation)) for s in items_a.values())
    ok = count_b <= hard.max_count
    failing = [s.item_id for s in recorded_b if s.violations[hard.violation]][:5]
    reason = (
        f"{count_b} {hard.violation} violation(s) in {b_label} ({count_a} in "
        f"{a_label}); at most {hard.max_count} allowed"
    )
    if failing:
        reason += f"; e.g. {', '.join(failing)}"
    return CheckVerdict(
        name, "hard", ok, reason, hard.violation, None, float(count_b), float(hard.max_count)
    )


def _missing_verdict(
    max_missing: int, only_a: Sequence[str], labels: tuple[str, str]
) -> CheckVerdict:
    a_label, b_label = labels
    return CheckVerdict(
        f"missing <= {max_missing}",
        "missing",
        len(only_a) <= max_missing,
        f"{b_label} lacks {len(only_a)} of {a_label}'s items; at most {max_missing} allowed",
        None,
        None,
        float(len(only_a)),
        float(max_missing),
    )
