"""Per-item and per-corpus metrics of a run's answers against a golden set. Pure: no I/O.

Reference-based scores, each the best over an item's references:

- ``bleu``: sentence BLEU as sacrebleu's ``BLEU(effective_order=True)``, 0-100. Several references
  are combined the way BLEU defines it (n-grams clipped by their largest count in any reference,
  the closest reference length), which is what ``sentence_score(hyp, refs)`` returns;
- ``chrf``: sentence chrF as sacrebleu's ``CHRF()``, 0-100, the best reference;
- ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``: ROUGE F1 as Google's ``rouge-score``
  computes it (through ``rouge-score-rs``, which gives identical scores), 0-1, the reference with
  the best F1 (as ``score_multi``);
- ``semantic``: cosine similarity of the answer's and the closest reference's embeddings.

Checks against the item's own lists:

- ``must_include``: the fraction of required facts found (case-insensitive substring or regex);
  absent when the item lists none;
- violations ``forbidden`` (any forbidden pattern found) and ``safety`` (the
  :class:`~modelwarden.safety.SafetyChecker` flags the answer): hard gates, booleans.

Further per-item metrics are registered with :func:`register_metric` (a name, a direction and a
function of the answer and its golden item); the :class:`Evaluator` scores every registered metric,
and gates name them like the built-in ones.

``latency_ms`` is passed through when given. Corpus level: BLEU and chrF from the summed
statistics (sacrebleu's ``corpus_score``), the mean of every per-item metric, and violation counts.

BLEU and chrF statistics come from :mod:`modelwarden.evals.ngrams` (vectorised, identical to
sacrebleu's); the scores are then computed by sacrebleu's own code (BLEU) or by the same arithmetic
in the same order (chrF), so every number equals sacrebleu's exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rouge_score_rs
from rouge_score_rs import RougeScorer
from sacrebleu.metrics import BLEU, CHRF

from modelwarden.embed.base import Embedder
from modelwarden.errors import InputError
from modelwarden.evals.golden import GoldenItem, GoldenSet, Pattern, TagValue
from modelwarden.evals.ngrams import (
    best_per_owner,
    bleu_statistics,
    chrf_f_scores,
    chrf_pair_statistics,
)
from modelwarden.safety.checker import SafetyChecker

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
VIOLATIONS: tuple[str, ...] = ("forbidden", "safety")
# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER: frozenset[str] = frozenset({"latency_ms"})


@dataclass(frozen=True)
class ItemMetric:
    """A registered per-item metric: ``score(answer, item)`` gives its value, or None when the
    metric does not apply to the item (left out, as ``must_include`` is for items without facts)."""

    name: str
    score: Callable[[str, GoldenItem], float | None]
    higher_is_better: bool = True


# Registered per-item metrics by name, in registration order.
ITEM_METRICS: dict[str, ItemMetric] = {}
_BUILT_IN = frozenset(
    {"bleu", "chrf", *ROUGE_TYPES, "semantic", "must_include", "latency_ms", *VIOLATIONS}
)


def register_metric(
    name: str, score: Callable[[str, GoldenItem], float | None], *, higher_is_better: bool = True
) -> ItemMetric:
    """Add a per-item metric that every :class:`Evaluator` computes from then on."""
    if not name or not name.replace("_", "").isalnum():
        raise InputError("a metric name is letters, digits and underscores", field="name")
    if name in _BUILT_IN or name in ITEM_METRICS:
        raise InputError(f"metric {name!r} already exists", field="name")
    metric = ItemMetric(name, score, higher_is_better)
    ITEM_METRICS[name] = metric
    return metric


def higher_is_better(metric: str) -> bool:
    registered = ITEM_METRICS.get(metric)
    if registered is not None:
        return registered.higher_is_better
    return metric not in LOWER_IS_BETTER


@dataclass(frozen=True)
class ItemScores:
    """One item's scores in one run.

    ``metrics`` maps metric names to values (a metric that does not apply is left out);
    ``violations`` maps hard-gate names (``forbidden``, ``safety``) to True when violated;
    ``details`` explains them (missing facts, forbidden hits, safety patterns).
    """

    item_id: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    violations: Mapping[str, bool] = field(default_factory=dict)
    tags: Mapping[str, TagValue] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        v = self.metrics.get(metric)
        return float("nan") if v is None else float(v)

    @property
    def passed(self) -> bool:
        """No violation, and every required fact present."""
        if any(self.violations.values()):
            return False
        recall = self.metrics.get("must_include")
        return recall is None or recall >= 1.0

    def ok(self, outcome: str) -> bool | None:
        """A pass/fail outcome: ``pass`` (see :attr:`passed`) or a violation name (True when not
        violated). None when the outcome was not recorded for this item."""
        if outcome == "pass":
            return self.passed
        if outcome in self.violations:
            return not self.violations[outcome]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "violations": dict(self.violations),
            "tags": dict(self.tags),
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemScores:
        try:
            metrics = {
                k: float("nan") if v is None else float(v)
                for k, v in dict(data.get("metrics", {})).items()
            }
            return cls(
                item_id=str(data["item_id"]),
                metrics=metrics,
                violations={k: bool(v) for k, v in dict(data.get("violations", {})).items()},
                tags=dict(data.get("tags", {})),
                details=dict(data.get("details", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not an item score record: {exc}", field="item_id") from exc


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# --------------------------------------------------------------------------- text metrics


@dataclass(frozen=True)
class TextScores:
    """Scores of many (hypothesis, references) pairs: one array per metric, corpus values."""

    per_item: dict[str, np.ndarray]
    corpus: dict[str, float]
    signatures: dict[str, str]


class TextMetrics:
    """BLEU, chrF and ROUGE over many pairs at once, with metric objects built once.

    ``use_stemmer`` is Porter stemming in ROUGE (on by default: "lubricate" and "lubrication"
    count as the same word); ``lowercase`` applies to BLEU and chrF, as their own option.
    """

    def __init__(
        self,
        rouge_types: Sequence[str] = ROUGE_TYPES,
        *,
        use_stemmer: bool = True,
        lowercase: bool = False,
        bleu: bool = True,
        chrf: bool = True,
    ) -> None:
        unknown = [
            t
            for t in rouge_types
            if not (
                t in ("rougeL", "rougeLsum")
                or (t[:5] == "rouge" and t[5:].isdigit() and 1 <= int(t[5:]) <= 9)
            )
        ]
        if unknown:
            raise InputError(
                f"unknown ROUGE type {unknown[0]!r}; use rouge1..rouge9, rougeL, rougeLsum",
                field="rouge_types",
            )
        self.rouge_types = tuple(rouge_types)
        self.use_stemmer = use_stemmer
        self.lowercase = lowercase
        self.with_bleu = bleu
        self.with_chrf = chrf
        self.sentence_bleu = BLEU(effective_order=True, lowercase=lowercase)
        self.corpus_bleu = BLEU(lowercase=lowercase)
        self.chrf = CHRF(lowercase=lowercase)
        self._rouge = (
            RougeScorer(list(self.rouge_types), use_stemmer=use_stemmer)
            if self.rouge_types
            else None
        )

    def signatures(self, num_refs: int = 1) -> dict[str, str]:
        """sacrebleu's reproducibility signatures and the ROUGE settings."""
        out: dict[str, str] = {}
        for key, metric in (
            ("bleu", self.sentence_bleu),
            ("corpus_bleu", self.corpus_bleu),
            ("chrf", self.chrf),
        ):
            # The signature needs the reference count, which sacrebleu learns while caching
            # references; the statistics here are computed without that cache.
            metric.num_refs = num_refs
            out[key] = str(metric.get_signature())
        if self.rouge_types:
            out["rouge"] = (
                f"rouge-score-rs:{rouge_score_rs.__version__}"
                f"|types:{','.join(self.rouge_types)}"
                f"|stemmer:{'yes' if self.use_stemmer else 'no'}|multi:best-f"
            )
        return out

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> TextScores:
        """Score ``hypotheses[i]`` against the references ``references[i]`` (one or more)."""
        _check_pairs(hypotheses, references)
        n = len(hypotheses)
        per_item: dict[str, np.ndarray] = {}
        corpus: dict[str, float] = {}
        if n == 0:
            return TextScores({}, {}, self.signatures())
        self._sacrebleu_scores(hypotheses, references, per_item, corpus)
        if self.rouge_types:
            per_item.update(self._rouge_scores(hypotheses, references))
        for name in per_item:
            if name not in corpus:
                corpus[name] = float(per_item[name].mean())
        counts = {len(refs) for refs in references}
        num_refs = counts.pop() if len(counts) == 1 else -1
        return TextScores(per_item, corpus, self.signatures(num_refs))

    def _sacrebleu_scores(
        self,
        hypotheses: Sequence[str],
        references: Sequence[Sequence[str]],
        per_item: dict[str, np.ndarray],
        corpus: dict[str, float],
    ) -> None:
        n = len(hypotheses)
        if self.with_bleu:
            stats = bleu_statistics(hypotheses, references, lowercase=self.lowercase)
            rows = stats.tolist()
            per_item["bleu"] = np.array(
                [self.sentence_bleu._compute_score_from_stats(r).score for r in rows]
            )
            corpus["bleu"] = float(
                self.corpus_bleu._compute_score_from_stats(stats.sum(axis=0).tolist()).score
            )
        if self.with_chrf:
            pair_stats, owner = chrf_pair_statistics(
                hypotheses, references, lowercase=self.lowercase
            )
            f = chrf_f_scores(pair_stats, beta=self.chrf.beta)
            best = best_per_owner(f, owner, n)
            per_item["chrf"] = f[best]
            corpus["chrf"] = float(
                self.chrf._compute_f_score(pair_stats[best].sum(axis=0).tolist())
            )

    def _rouge_scores(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> dict[str, np.ndarray]:
        n = len(hypotheses)
        targets: list[str] = []
        preds: list[str] = []
        owner_list: list[int] = []
        for i, (h, refs) in enumerate(zip(hypotheses, references, strict=True)):
            for r in refs:
                targets.append(r)
                preds.append(h)
                owner_list.append(i)
        owner = np.asarray(owner_list, dtype=np.int64)
        assert self._rouge is not None
        scores = self._rouge.score_batch(targets, preds)
        out: dict[str, np.ndarray] = {}
        for t in self.rouge_types:
            f = np.fromiter((s[t].fmeasure for s in scores), dtype=np.float64, count=len(scores))
            out[t] = f[best_per_owner(f, owner, n)]
        return out


def _check_pairs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise InputError(
            f"{len(hypotheses)} answers but {len(references)} reference lists", field="references"
        )
    for i, (h, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if not isinstance(h, str):
            raise InputError(f"answer {i} is not a string", field="hypotheses")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise InputError(
                f"item {i} needs a list of one or more reference strings", field="references"
            )


def semantic_similarity(
    embedder: Embedder, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
) -> np.ndarray:
    """Cosine similarity of each answer to its closest reference (vectors normalised here)."""
    _check_pairs(hypotheses, references)
    n = len(hypotheses)
    if n == 0:
        return np.zeros(0)
    texts: dict[str, int] = {}
    for t in hypotheses:
        texts.setdefault(t, len(texts))
    owner_list: list[int] = []
    ref_idx: list[int] = []
    for i, refs in enumerate(references):
        for r in refs:
            ref_idx.append(texts.setdefault(r, len(texts)))
            owner_list.append(i)
    vecs = np.asarray(embedder.embed(list(texts)), dtype=np.float64)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = vecs / np.where(norms > 0, norms, 1.0)
    owner = np.asarray(owner_list, dtype=np.int64)
    hyp_idx = np.fromiter((texts[h] for h in hypotheses), dtype=np.int64, count=n)
    sims = np.einsum("ij,ij->i", vecs[hyp_idx[owner]], vecs[np.asarray(ref_idx)])
    best = np.full(n, -np.inf)
    np.maximum.at(best, owner, sims)
    return best


def must_include_recall(answer: str, patterns: Sequence[Pattern]) -> tuple[float | None, list[str]]:
    """Fraction of required facts present, and the ones missing; None when there are none."""
    if not patterns:
        return None, []
    missing = [str(p) for p in patterns if not p.search(answer)]
    return 1.0 - len(missing) / len(patterns), missing


def forbidden_hits(answer: str, patterns: Sequence[Pattern]) -> list[str]:
    return [str(p) for p in patterns if p.search(answer)]


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunScores:
    """All item scores of one run, corpus values and the settings that produced them."""

    items: dict[str, ItemScores]
    corpus: dict[str, float]
    signatures: dict[str, str]
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus": {k: _json_float(v) for k, v in self.corpus.items()},
            "signatures": dict(self.signatures),
            "missing": list(self.missing),
            "items": [s.to_dict() for s in self.items.values()],
        }


class Evaluator:
    """Scores a run's answers against a golden set.

    ``embedder`` adds ``semantic`` (left out without one); ``safety`` defaults to the built-in
    :class:`~modelwarden.safety.SafetyChecker` patterns.
    """

    def __init__(
        self,
        *,
        text_metrics: TextMetrics | None = None,
        embedder: Embedder | None = None,
        safety: SafetyChecker | None = None,
    ) -> None:
        self.text_metrics = text_metrics or TextMetrics()
        self.embedder = embedder
        self.safety = safety or SafetyChecker()

    def score(
        self,
        golden: GoldenSet | Sequence[GoldenItem],
        outputs: Mapping[str, str | None],
        *,
        latencies: Mapping[str, float] | None = None,
    ) -> RunScores:
        """Score ``outputs`` (item id → answer). Items without an answer (absent or None) are
        listed in ``missing``; an answer for an id the golden set lacks is an error."""
        items = list(golden.items if isinstance(golden, GoldenSet) else golden)
        known = {it.id for it in items}
        unknown = sorted(set(outputs) - known)
        if unknown:
            raise InputError(
                f"answer for unknown item {unknown[0]!r} ({len(unknown)} in all)", field="outputs"
            )
        answered = [it for it in items if outputs.get(it.id) is not None]
        missing = tuple(it.id for it in items if outputs.get(it.id) is None)
        hyps = [str(outputs[it.id]) for it in answered]
        refs = [list(it.references) for it in answered]

        text = self.text_metrics.score(hyps, refs)
        per_item = dict(text.per_item)
        signatures = dict(text.signatures)
        if self.embedder is not None and answered:
            per_item["semantic"] = semantic_similarity(self.embedder, hyps, refs)
            signatures["semantic"] = f"embedder:{self.embedder.name}|cosine|multi:best"

        scores: dict[str, ItemScores] = {}
        for i, (it, answer) in enumerate(zip(answered, hyps, strict=True)):
            metrics = {name: float(values[i]) for name, values in per_item.items()}
            details: dict[str, Any] = {}
            recall, missing_facts = must_include_recall(answer, it.must_include)
            if recall is not None:
                metrics["must_include"] = recall
                if missing_facts:
                    details["missing_facts"] = missing_facts
            hits = forbidden_hits(answer, it.forbidden)
            unsafe = self.safety.flags(answer)
            if hits:
                details["forbidden_hits"] = hits
            if unsafe:
                details["safety_patterns"] = self.safety.matches(answer)
            if latencies is not None and latencies.get(it.id) is not None:
                metrics["latency_ms"] = float(latencies[it.id])
            for extra in ITEM_METRICS.values():
                value = extra.score(answer, it)
                if value is not None:
                    metrics[extra.name] = float(value)
            scores[it.id] = ItemScores(
                item_id=it.id,
                metrics=metrics,
                violations={"forbidden": bool(hits), "safety": unsafe},
                tags=dict(it.tags),
                details=details,
            )

        corpus = dict(text.corpus)
        for name in ("semantic", "must_include", "latency_ms", *ITEM_METRICS):
            vals = [s.metrics[name] for s in scores.values() if name in s.metrics]
            if vals:
                corpus[name] = float(np.mean(vals))
        for v in VIOLATIONS:
            corpus[f"{v}_violations"] = float(sum(s.violations[v] for s in scores.values()))
        corpus["items"] = float(len(scores))
        return RunScores(items=scores, corpus=corpus, signatures=signatures, missing=missing)
