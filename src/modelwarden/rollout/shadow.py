"""Shadow testing: copies of live requests to a candidate, never answered, compared offline.

``start`` puts a version in the route table's shadow slot with a sample rate; the gateway then
sends that share of live requests to it in the background and logs each answer with
``route = "shadow"`` and ``parent_request_id`` = the live request. ``report`` pairs every shadow
answer with its live answer and measures, per pair:

- ``distance``: cosine distance between the two answers' embeddings (the configured embedder);
- ``safety``: the safety patterns each answer matches; ``new_safety`` lists those only the shadow
  answer matches (an answer that would have been flagged), ``lost_safety`` the reverse;
- ``keywords``: numbers and quantities (torques, intervals, concentrations) in one answer but not
  the other — in procedures a changed number is the difference that matters — and the Jaccard
  distance of the two answers' content words;
- ``length_ratio`` (shadow over live), both latencies, and errors on either side.

Pairs are ranked by a divergence score, a fixed weighting of those signals
(:data:`WEIGHTS`), so that the pairs a reviewer should read come first; every component is shown
beside it. The summary is stored as evidence on the version in the registry.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from modelwarden.errors import ConflictError, InputError
from modelwarden.governance import registry
from modelwarden.governance.routes import RouteSpec, RouteTable, Upstream, current_routes
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store
from modelwarden.store.state import StateStore

WEIGHTS = {
    "distance": 1.0,
    "new_safety": 1.0,
    "lost_safety": 0.25,
    "numbers": 0.5,
    "error": 1.0,
    "length": 0.25,
}
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?(?:\s?(?:%|°[cf]?|[a-z]{1,4}\b))?", re.I)
_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STOP = frozenset(
    {
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "just",
        "more",
        "most",
        "must",
        "only",
        "other",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
    }
)


# ---- routes ------------------------------------------------------------------------------------
def start(
    settings: Settings, version: str, sample: float, actor: str, state: StateStore | None = None
) -> RouteTable:
    """Send a ``sample`` share of live requests to ``version`` as shadow copies."""
    if not 0 < sample <= 1:
        raise InputError("--sample must be above 0 and at most 1", field="sample")
    st = state or StateStore.of(settings)
    info = registry.get(st, version)
    live = current_routes(st)
    if live is None:
        raise InputError("no routes are set: route the stable version first", field="routes")
    if version in (live.stable.version, live.canary.version if live.canary else None):
        raise ConflictError(f"{version} already serves live traffic", field="version")
    if info.status == "staging":
        registry.transition(st, version, "shadow", actor, f"shadow copies of {sample:.0%}")
    elif info.status != "shadow":
        # Quarantined (refused with the release procedure), canary, stable or retired.
        registry.transition(st, version, "shadow", actor)
    spec = RouteSpec(
        stable=live.stable,
        canary=live.canary,
        canary_weight=live.canary_weight,
        canary_plants=live.canary_plants,
        shadow=Upstream(version=version, url=info.endpoint),
        shadow_sample=sample,
        note=f"shadow {version} at {sample:.0%}",
    )
    return registry.set_live_routes(st, spec, actor, spec.note or "")


def stop(settings: Settings, actor: str, state: StateStore | None = None) -> RouteTable:
    st = state or StateStore.of(settings)
    live = current_routes(st)
    if live is None or live.shadow is None:
        raise ConflictError("no shadow is running", field="shadow")
    version = live.shadow.version
    spec = RouteSpec(
        stable=live.stable,
        canary=live.canary,
        canary_weight=live.canary_weight,
        canary_plants=live.canary_plants,
        note=f"shadow {version} stopped",
    )
    table = registry.set_live_routes(st, spec, actor, spec.note or "")
    info = registry.find(st, version)
    if info is not None and info.status == "shadow":
        registry.transition(st, version, "staging", actor, "shadow stopped")
    return table


# ---- comparison --------------------------------------------------------------------------------
def numbers(text: str | None) -> set[str]:
    return {
        re.sub(r"\s+", "", m.group(0).lower()).replace(",", ".")
        for m in _NUMBER.finditer(text or "")
    }


def content_words(text: str | None) -> set[str]:
    return {w for w in _WORD.findall((text or "").lower()) if w not in _STOP}


def jaccard_distance(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    return 1.0 - len(a & b) / len(a | b)


@dataclass
class Pair:
    shadow_request_id: str
    live_request_id: str
    timestamp: datetime
    plant: str
    live_version: str
    shadow_version: str
    prompt: str
    live_answer: str | None
    shadow_answer: str | None
    live_latency_ms: float
    shadow_latency_ms: float
    live_error: str | None
    shadow_error: str | None
    distance: float | None = None
    live_safety: list[str] = field(default_factory=list)
    shadow_safety: list[str] = field(default_factory=list)
    new_safety: list[str] = field(default_factory=list)
    lost_safety: list[str] = field(default_factory=list)
    numbers_only_live: list[str] = field(default_factory=list)
    numbers_only_shadow: list[str] = field(default_factory=list)
    word_distance: float | None = None
    length_ratio: float | None = None
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _score(p: Pair) -> float:
    s = 0.0
    if p.live_error or p.shadow_error:
        s += WEIGHTS["error"] * (bool(p.live_error) != bool(p.shadow_error))
    if p.distance is not None:
        s += WEIGHTS["distance"] * p.distance
    s += WEIGHTS["new_safety"] * bool(p.new_safety) + WEIGHTS["lost_safety"] * bool(p.lost_safety)
    s += WEIGHTS["numbers"] * bool(p.numbers_only_live or p.numbers_only_shadow)
    if p.length_ratio:
        s += WEIGHTS["length"] * min(abs(math.log(p.length_ratio)), 2.0)
    return s


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class ShadowReport:
    version: str | None
    since: datetime | None
    until: datetime | None
    embedder: str
    summary: dict[str, Any]
    top: list[Pair]
    evidence_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "since": self.since,
            "until": self.until,
            "embedder": self.embedder,
            "summary": self.summary,
            "top": [p.to_dict() for p in self.top],
            "evidence_id": self.evidence_id,
        }


def load_pairs(
    settings: Settings, version: str | None, since: datetime | None, until: datetime | None
) -> tuple[list[Pair], int]:
    """Shadow answers joined to their live answers; also how many shadows had no live record."""
    con = open_store(settings).connect()
    req = con.table("requests")
    sh = req.filter(req.route == "shadow")
    if version:
        sh = sh.filter(sh.model_version == version)
    if since is not None:
        sh = sh.filter(sh.timestamp >= since)
    if until is not None:
        sh = sh.filter(sh.timestamp < until)
    live = req.filter(req.route.isnull() | (req.route != "shadow"))
    cols = ["request_id", "model_version", "generated_response", "latency_ms", "error"]
    lv = live.select(*cols).rename({f"live_{c}": c for c in cols})
    j = sh.left_join(lv, sh.parent_request_id == lv.live_request_id)
    rows = con.to_pyarrow(j.order_by(["timestamp", "request_id"])).to_pylist()
    pairs, unpaired = [], 0
    for r in rows:
        if r.get("live_request_id") is None:
            unpaired += 1
            continue
        pairs.append(
            Pair(
                shadow_request_id=r["request_id"],
                live_request_id=r["live_request_id"],
                timestamp=r["timestamp"],
                plant=r["plant_id"],
                live_version=r["live_model_version"],
                shadow_version=r["model_version"],
                prompt=r["user_prompt"],
                live_answer=r["live_generated_response"],
                shadow_answer=r["generated_response"],
                live_latency_ms=float(r["live_latency_ms"]),
                shadow_latency_ms=float(r["latency_ms"]),
                live_error=r["live_error"],
                shadow_error=r["error"],
            )
        )
    return pairs, unpaired


def compare(pairs: list[Pair], embedder: Any, safety: Any, batch_size: int = 64) -> None:
    """Fill in every pair's measures (in place)."""
    texts = sorted({t for p in pairs for t in (p.live_answer, p.shadow_answer) if t})
    vec: dict[str, np.ndarray] = {}
    if texts and embedder is not None:
        m = embedder.embed(texts, batch_size=batch_size)
        vec = {t: m[i] for i, t in enumerate(texts)}
    for p in pairs:
        if p.live_answer and p.shadow_answer and vec:
            p.distance = float(
                max(0.0, 1.0 - float(np.dot(vec[p.live_answer], vec[p.shadow_answer])))
            )
        p.live_safety = sorted(set(safety.matches(p.live_answer))) if p.live_answer else []
        p.shadow_safety = sorted(set(safety.matches(p.shadow_answer))) if p.shadow_answer else []
        p.new_safety = sorted(set(p.shadow_safety) - set(p.live_safety))
        p.lost_safety = sorted(set(p.live_safety) - set(p.shadow_safety))
        if p.live_answer is not None and p.shadow_answer is not None:
            a, b = numbers(p.live_answer), numbers(p.shadow_answer)
            p.numbers_only_live, p.numbers_only_shadow = sorted(a - b), sorted(b - a)
            p.word_distance = jaccard_distance(
                content_words(p.live_answer), content_words(p.shadow_answer)
            )
            if p.live_answer:
                p.length_ratio = len(p.shadow_answer) / len(p.live_answer)
        p.score = _score(p)


def summarize(pairs: list[Pair], unpaired: int) -> dict[str, Any]:
    n = len(pairs)
    d = [p.distance for p in pairs if p.distance is not None]
    both = [p for p in pairs if p.live_answer is not None and p.shadow_answer is not None]
    lr = [p.length_ratio for p in both if p.length_ratio]

    def share(k: int, of: int) -> float | None:
        return k / of if of else None

    return {
        "pairs": n,
        "unpaired_shadows": unpaired,
        "distance_mean": float(np.mean(d)) if d else None,
        "distance_p50": _pct(d, 50),
        "distance_p95": _pct(d, 95),
        "share_distance_over_0_3": share(sum(x > 0.3 for x in d), len(d)),
        "live_flag_rate": share(sum(bool(p.live_safety) for p in pairs), n),
        "shadow_flag_rate": share(sum(bool(p.shadow_safety) for p in pairs), n),
        "new_safety_flags": sum(bool(p.new_safety) for p in pairs),
        "lost_safety_flags": sum(bool(p.lost_safety) for p in pairs),
        "share_numbers_differ": share(
            sum(bool(p.numbers_only_live or p.numbers_only_shadow) for p in both), len(both)
        ),
        "word_distance_mean": float(
            np.mean([p.word_distance for p in both if p.word_distance is not None])
        )
        if both
        else None,
        "length_ratio_p50": _pct(lr, 50),
        "length_ratio_p5": _pct(lr, 5),
        "length_ratio_p95": _pct(lr, 95),
        "live_latency_p50_ms": _pct([p.live_latency_ms for p in pairs], 50),
        "shadow_latency_p50_ms": _pct([p.shadow_latency_ms for p in pairs], 50),
        "live_latency_p95_ms": _pct([p.live_latency_ms for p in pairs], 95),
        "shadow_latency_p95_ms": _pct([p.shadow_latency_ms for p in pairs], 95),
        "live_error_rate": share(sum(bool(p.live_error) for p in pairs), n),
        "shadow_error_rate": share(sum(bool(p.shadow_error) for p in pairs), n),
    }


def report(
    settings: Settings,
    version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 10,
    *,
    embedder: str | None = None,
    state: StateStore | None = None,
    store_evidence: bool = True,
    actor: str = "cli",
) -> ShadowReport:
    """Pair, measure and rank the shadow answers; keep the summary as registry evidence."""
    # lazy: the embedder and safety checker load their models' stack (DuckDB cache, sentence
    # encoders) only when a report is made; keeps the rollout commands' start-up fast
    from modelwarden.embed.service import resolve_embedder
    from modelwarden.safety.service import safety_checker

    if version is None:
        st0 = state or StateStore.of(settings)
        live = current_routes(st0)
        version = live.shadow.version if live is not None and live.shadow is not None else None
    pairs, unpaired = load_pairs(settings, version, since, until)
    emb = resolve_embedder(settings, embedder)
    # The same check as live answers get, with the similarity part when the embedder can judge.
    compare(pairs, emb, safety_checker(settings, emb), settings.embed_batch_size)
    summary = summarize(pairs, unpaired)
    ranked = sorted(pairs, key=lambda p: (-p.score, p.shadow_request_id))[:top]
    rep = ShadowReport(
        version, since, until, emb.name if emb is not None else "inline", summary, ranked
    )
    if store_evidence and version and pairs:
        st = state or StateStore.of(settings)
        if registry.find(st, version) is not None:
            rep.evidence_id = registry.add_evidence(
                st,
                version,
                "shadow_report",
                {
                    "summary": summary,
                    "since": since,
                    "until": until,
                    "embedder": rep.embedder,
                    "top": [
                        {"shadow_request_id": p.shadow_request_id, "score": p.score} for p in ranked
                    ],
                },
                actor,
                f"shadow report: {summary['pairs']} pairs",
            )
    return rep


__all__ = [
    "WEIGHTS",
    "Pair",
    "ShadowReport",
    "compare",
    "content_words",
    "jaccard_distance",
    "load_pairs",
    "numbers",
    "report",
    "start",
    "stop",
    "summarize",
]
