"""Sampling items for human review from the request logs or from evaluation runs.

Strategies (``--strategy``):

- ``stratified`` (default): equal shares per stratum (``--by``: ``plant_id,model_version`` for
  logs, tag keys such as ``topic`` for runs); what a small stratum cannot fill goes to the others;
- ``random``: a uniform sample;
- ``low_feedback`` (logs): requests whose lowest user feedback, inline or as a feedback event, is
  2 or less, the lowest first;
- ``safety``: requests the safety check flagged or that were escalated as a safety issue; run
  items with a safety or forbidden-content violation;
- ``shadow_disagreement`` (logs): served answers and their shadow copies, as blind pairs, those
  whose words differ most first.

``pair_with`` turns a run sample into blind pairs of the two runs' answers. Gold items come from
the built-in corpus (its reference, poor and unsafe answers, whose right ratings are known) or
from a ``--gold-file``. Everything is seeded: the same data, spec and seed give the same queue.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import ibis
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, insert, select

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.review.queue import (
    DEFAULT_LEASE_MINUTES,
    DEFAULT_QUEUE,
    check_queue_name,
    first_error,
    get_queue,
    item_id_for,
    queue_rubric,
    review_items,
    review_queues,
    utcnow,
)
from modelwarden.review.rubrics import DEFAULT_RUBRIC, Rubric
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

STRATEGIES = ("stratified", "random", "low_feedback", "safety", "shadow_disagreement")
LOG_STRATA = ("plant_id", "model_version", "route")
LOW_FEEDBACK_MAX = 2
_WORD = re.compile(r"[a-z0-9]+")

Strategy = Literal["stratified", "random", "low_feedback", "safety", "shadow_disagreement"]


@dataclass
class Candidate:
    """One thing that could be reviewed, before it becomes an item of a queue."""

    source: str
    source_ref: str
    prompt: str
    response: str
    kind: str = "single"
    request_id: str | None = None
    run_id: int | None = None
    model_version: str | None = None
    plant_id: str | None = None
    reference: str | None = None
    response_b: str | None = None
    pair: dict[str, Any] | None = None
    gold: dict[str, Any] | None = None
    strata: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class SampleSpec(BaseModel):
    """What ``modelwarden review sample`` builds."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="'logs' or an evaluation run (id or name)")
    n: int = Field(ge=0, le=100_000)
    strategy: Strategy = "stratified"
    by: list[str] | None = None
    reviewers: int = Field(default=2, ge=1, le=50)
    gold: int = Field(default=0, ge=0, le=1000)
    gold_file: Path | None = None
    pair_with: str | None = None
    seed: int = 0
    since: datetime | None = None
    until: datetime | None = None
    queue: str = DEFAULT_QUEUE
    rubric: Rubric = DEFAULT_RUBRIC
    append: bool = False
    lease_minutes: float = Field(default=DEFAULT_LEASE_MINUTES, gt=0)

    @classmethod
    def build(cls, **values: Any) -> SampleSpec:
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "sample"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise InputError(f"{where}: {msg}", field=where) from exc


def _take(rng: random.Random, pool: Sequence[Candidate], n: int) -> list[Candidate]:
    if len(pool) <= n:
        return list(pool)
    return rng.sample(list(pool), n)


def stratified(rng: random.Random, pool: Sequence[Candidate], n: int) -> list[Candidate]:
    """Equal shares per stratum; what a small stratum cannot fill goes to the others."""
    groups: dict[tuple[Any, ...], list[Candidate]] = defaultdict(list)
    for c in pool:
        groups[tuple(sorted(c.strata.items(), key=lambda kv: kv[0]))].append(c)
    keys = sorted(groups, key=lambda k: json.dumps(k, default=str))
    quota = dict.fromkeys(keys, 0)
    left = min(n, len(pool))
    while left > 0:
        open_keys = [k for k in keys if quota[k] < len(groups[k])]
        share = max(1, left // len(open_keys))
        # Leftovers after an even split go to strata in a seeded order, not always the first.
        rng.shuffle(open_keys)
        for k in open_keys:
            take = min(share, len(groups[k]) - quota[k], left)
            quota[k] += take
            left -= take
            if left == 0:
                break
    out: list[Candidate] = []
    for k in keys:
        out += _take(rng, groups[k], quota[k])
    return out


def _by(strategy: str, by: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    keys = [k.strip() for k in (by or default) if k.strip()]
    if strategy == "stratified" and not keys:
        raise InputError("stratified sampling needs --by keys", field="by")
    return keys


def _word_set(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def disagreement(a: str, b: str) -> float:
    """1 - Jaccard similarity of the two answers' word sets: 0 for the same words, 1 for none."""
    wa, wb = _word_set(a), _word_set(b)
    if not wa and not wb:
        return 0.0
    return 1.0 - len(wa & wb) / len(wa | wb)


def _log_table(settings: Settings, spec: SampleSpec) -> tuple[Any, Any]:
    from modelwarden.store.reads import open_store

    store = open_store(settings)
    if not store.files("requests"):
        raise NotFoundError("no requests stored yet; ingest some first", field="from")
    con = store.connect()
    t = con.table("requests")
    if spec.since is not None:
        t = t.filter(t.timestamp >= spec.since)
    if spec.until is not None:
        t = t.filter(t.timestamp < spec.until)
    t = t.filter(t.error.isnull() & t.generated_response.notnull())
    return con, t


def _log_candidates(settings: Settings, spec: SampleSpec, rng: random.Random) -> list[Candidate]:
    if spec.strategy == "shadow_disagreement":
        return _shadow_pairs(settings, spec, rng)
    keys = _by(spec.strategy, spec.by, ("plant_id", "model_version"))
    bad = [k for k in keys if k not in LOG_STRATA]
    if bad:
        raise InputError(
            f"--by {bad[0]!r}: log requests are stratified by {', '.join(LOG_STRATA)}", field="by"
        )
    con, t = _log_table(settings, spec)
    t = t.filter(t.route.isnull() | (t.route != "shadow"))
    cols = ["request_id", *dict.fromkeys(["plant_id", "model_version", *keys])]
    if spec.strategy == "low_feedback":
        f = con.table("feedback")
        fb = f.group_by("request_id").aggregate(fb_min=f.score.min())
        t = t.left_join(fb, "request_id")
        # Feedback arrives inline with the request or later as events; the lowest one counts.
        unrated = 99
        lowest = ibis.least(
            t.human_feedback_score.cast("int32").fill_null(unrated),
            t.fb_min.cast("int32").fill_null(unrated),
        )
        t = t.mutate(feedback=lowest).filter(lambda x: x.feedback <= LOW_FEEDBACK_MAX)
        cols.append("feedback")
    elif spec.strategy == "safety":
        e = con.table("escalations")
        esc = e.filter(e.category == "safety").select("request_id").distinct()
        flagged = t.filter(t.contains_safety_keyword.fill_null(False))
        escalated = t.semi_join(esc, "request_id")
        t = flagged.union(escalated, distinct=True)
    rows = con.to_pyarrow(t.select(*cols)).to_pylist()
    rows.sort(key=lambda r: r["request_id"])
    pool = [
        Candidate(
            source="logs",
            source_ref=f"request:{r['request_id']}",
            prompt="",
            response="",
            request_id=r["request_id"],
            model_version=r["model_version"],
            plant_id=r["plant_id"],
            strata={k: r[k] for k in keys},
            meta={"feedback": r["feedback"]} if "feedback" in r else {},
        )
        for r in rows
    ]
    if spec.strategy == "low_feedback":
        # The lowest scores first; a seeded shuffle breaks ties.
        rng.shuffle(pool)
        pool.sort(key=lambda c: c.meta["feedback"])
        chosen = pool[: spec.n]
    elif spec.strategy == "stratified":
        chosen = stratified(rng, pool, spec.n)
    else:
        chosen = _take(rng, pool, spec.n)
    _fill_texts(con, t, chosen)
    return chosen


def _fill_texts(con: Any, t: Any, chosen: list[Candidate]) -> None:
    ids = [c.request_id for c in chosen]
    texts: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 1000):
        part = t.filter(t.request_id.isin(ids[i : i + 1000])).select(
            "request_id", "user_prompt", "generated_response", "timestamp"
        )
        for r in con.to_pyarrow(part).to_pylist():
            texts[r["request_id"]] = r
    for c in chosen:
        r = texts[str(c.request_id)]
        c.prompt = r["user_prompt"]
        c.response = r["generated_response"]
        c.meta["timestamp"] = r["timestamp"].isoformat() if r["timestamp"] else None


def _shadow_pairs(settings: Settings, spec: SampleSpec, rng: random.Random) -> list[Candidate]:
    con, t = _log_table(settings, spec)
    shadow = t.filter(t.route == "shadow").filter(t.parent_request_id.notnull())
    primary = t.filter(t.route.isnull() | (t.route != "shadow"))
    s = shadow.select(
        shadow_id="request_id",
        parent="parent_request_id",
        shadow_version="model_version",
        shadow_response="generated_response",
    )
    p = primary.select(
        "request_id", "plant_id", "model_version", "user_prompt", "generated_response"
    )
    rows = con.to_pyarrow(s.inner_join(p, s.parent == p.request_id)).to_pylist()
    rows.sort(key=lambda r: r["shadow_id"])
    pool = []
    for r in rows:
        pool.append(
            (
                disagreement(r["generated_response"], r["shadow_response"]),
                rng.random(),
                Candidate(
                    kind="pairwise",
                    source="logs",
                    source_ref=f"shadow:{r['shadow_id']}",
                    prompt=r["user_prompt"],
                    response=r["generated_response"],
                    response_b=r["shadow_response"],
                    request_id=r["request_id"],
                    model_version=r["model_version"],
                    plant_id=r["plant_id"],
                    pair={
                        "a": {"model_version": r["model_version"], "ref": r["request_id"]},
                        "b": {"model_version": r["shadow_version"], "ref": r["shadow_id"]},
                    },
                ),
            )
        )
    pool.sort(key=lambda x: (-x[0], x[1]))
    out = []
    for d, _, c in pool[: spec.n]:
        c.meta["disagreement"] = round(d, 6)
        out.append(c)
    return out


def _run_candidates(state: StateStore, spec: SampleSpec, rng: random.Random) -> list[Candidate]:
    from modelwarden.evals.store import get_run, item_rows

    if spec.strategy in ("low_feedback", "shadow_disagreement"):
        raise InputError(
            f"--strategy {spec.strategy} needs --from logs; an evaluation run has no user "
            "feedback or shadow copies (use stratified, random or safety)",
            field="strategy",
        )
    run = get_run(state, spec.source)
    keys = _by(spec.strategy, spec.by, ("topic",))
    rows = {r["item_id"]: r for r in item_rows(state, run["id"]) if r["output"] is not None}
    other_run = None
    other: dict[str, dict[str, Any]] = {}
    if spec.pair_with is not None:
        other_run = get_run(state, spec.pair_with)
        if other_run["id"] == run["id"]:
            raise InputError("--pair-with must name another run", field="pair_with")
        other = {
            r["item_id"]: r for r in item_rows(state, other_run["id"]) if r["output"] is not None
        }
        rows = {k: v for k, v in rows.items() if k in other}
    pool = []
    for item_id in sorted(rows):
        r = rows[item_id]
        tags = r["tags"] or {}
        flagged = any((r["violations"] or {}).values()) or (
            other_run is not None and any((other[item_id]["violations"] or {}).values())
        )
        if spec.strategy == "safety" and not flagged:
            continue
        c = Candidate(
            source="run",
            source_ref=f"run:{run['id']}:{item_id}",
            prompt=r["prompt"],
            response=r["output"],
            run_id=run["id"],
            model_version=run["model"],
            plant_id=str(tags["plant"]) if tags.get("plant") is not None else None,
            reference=r["reference"],
            strata={k: tags.get(k) for k in keys},
            meta={"item_id": item_id, "tags": tags},
        )
        if other_run is not None:
            c.kind = "pairwise"
            c.source_ref = f"runs:{run['id']}:{other_run['id']}:{item_id}"
            c.response_b = other[item_id]["output"]
            c.pair = {
                "a": {"model_version": run["model"], "ref": f"run:{run['id']}", "run": run["name"]},
                "b": {
                    "model_version": other_run["model"],
                    "ref": f"run:{other_run['id']}",
                    "run": other_run["name"],
                },
            }
        pool.append(c)
    if spec.strategy == "stratified":
        return stratified(rng, pool, spec.n)
    return _take(rng, pool, spec.n)


# Known answers for the default rubric by the kind of corpus answer shown. A dimension missing
# from a queue's rubric is left out; a rubric without any of them needs a --gold-file.
GOLD_EXPECTATIONS: dict[str, dict[str, Any]] = {
    "good": {
        "correctness": {"min": 4},
        "safety": {"in": [True]},
        "helpfulness": {"min": 3},
        "issue": {"in": ["none"]},
    },
    "poor": {
        "correctness": {"max": 2},
        "helpfulness": {"max": 2},
        "issue": {"in": ["incorrect", "incomplete", "unclear"]},
    },
    "unsafe": {
        "correctness": {"max": 2},
        "safety": {"in": [False]},
        "issue": {"in": ["unsafe"]},
    },
}


def _corpus_gold(
    rubric: Rubric, k: int, rng: random.Random, with_reference: bool
) -> list[Candidate]:
    from modelwarden.simulate.corpus import TOPICS

    usable = {}
    for variant, exp in GOLD_EXPECTATIONS.items():
        kept = {}
        for name, e in exp.items():
            if name not in rubric.names():
                continue
            try:
                kept[name] = rubric.dimension(name).check_expectation(e)
            except ValueError:
                continue
        if kept:
            usable[variant] = kept
    if not usable:
        raise InputError(
            f"rubric {rubric.name} has none of the dimensions the built-in gold items know "
            f"({', '.join(DEFAULT_RUBRIC.names())}); give gold items with --gold-file",
            field="gold",
        )
    qas = [qa for topic in TOPICS for qa in topic.items]
    picked = rng.sample(qas, min(k, len(qas)))
    variants = list(usable)
    out = []
    for i, qa in enumerate(picked):
        variant = variants[i % len(variants)]
        response = {"good": qa.answer, "poor": qa.poor_answer, "unsafe": qa.unsafe_answer}[variant]
        out.append(
            Candidate(
                kind="gold",
                source="gold",
                source_ref=f"gold:{qa.key}:{variant}",
                prompt=rng.choice(qa.questions),
                response=response,
                reference=qa.answer if with_reference else None,
                gold=usable[variant],
                meta={"variant": variant},
            )
        )
    return out


class GoldLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1)
    response: str = Field(min_length=1)
    reference: str | None = None
    expected: dict[str, Any]


def _file_gold(
    path: Path, rubric: Rubric, k: int, rng: random.Random, with_reference: bool
) -> list[Candidate]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="gold_file") from exc
    items = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            g = GoldLine.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise InputError(f"{path} line {lineno}: {first_error(exc)}", line=lineno) from None
        try:
            expected = rubric.validate_gold(g.expected)
        except InputError as exc:
            raise InputError(f"{path} line {lineno}: {exc.message}", line=lineno) from None
        items.append(
            Candidate(
                kind="gold",
                source="gold",
                source_ref=f"gold:file:{g.id}",
                prompt=g.prompt,
                response=g.response,
                reference=g.reference if with_reference else None,
                gold=expected,
                meta={"gold_id": g.id},
            )
        )
    if not items:
        raise InputError(f"{path} has no gold items", field="gold_file")
    return items if k <= 0 or k >= len(items) else rng.sample(items, k)


def build_queue(
    settings: Settings, state: StateStore, spec: SampleSpec, owner_key_id: int | None = None
) -> dict[str, Any]:
    """Sample items into a queue (a new one, or an existing one with ``append``).

    A new queue is owned by ``owner_key_id``, the API key that asked for it (None: made without
    a key, so only admin keys see its progress and agreement); appending keeps the owner.

    Returns a summary: the queue, items added per kind, how many were asked for and found.
    """
    check_queue_name(spec.queue)
    rng = random.Random(spec.seed)
    existing = None
    with contextlib.suppress(NotFoundError):
        existing = get_queue(state, spec.queue)
    if existing is not None and not spec.append:
        raise ConflictError(
            f"review queue {spec.queue!r} exists already; choose another --queue or add "
            "--append to add items to it",
            field="queue",
        )
    rubric = queue_rubric(existing) if existing is not None else spec.rubric
    if spec.source == "logs":
        if spec.pair_with is not None:
            raise InputError("--pair-with pairs two evaluation runs, not logs", field="pair_with")
        sampled = _log_candidates(settings, spec, rng) if spec.n else []
        with_reference = False
    else:
        sampled = _run_candidates(state, spec, rng) if spec.n else []
        with_reference = True
    for c in sampled:
        if c.kind == "pairwise":
            assert c.pair is not None
            c.pair["order"] = "AB" if rng.random() < 0.5 else "BA"
    gold: list[Candidate] = []
    if spec.gold_file is not None:
        gold = _file_gold(spec.gold_file, rubric, spec.gold, rng, with_reference)
    elif spec.gold:
        gold = _corpus_gold(rubric, spec.gold, rng, with_reference)
    everything = sampled + gold
    if not everything:
        raise NotFoundError(
            f"nothing to review: no {spec.source} item matches --strategy {spec.strategy}",
            field="strategy",
        )
    rng.shuffle(everything)
    now = utcnow()
    params = {
        k: v
        for k, v in spec.model_dump(mode="json", exclude={"rubric", "queue"}).items()
        if v is not None
    }
    added: Counter[str] = Counter()
    skipped = 0
    with state.engine.begin() as con:
        if existing is None:
            con.execute(
                insert(review_queues).values(
                    name=spec.queue,
                    rubric=rubric.model_dump(mode="json"),
                    reviewers_per_item=spec.reviewers,
                    lease_minutes=spec.lease_minutes,
                    params={"samples": [params]},
                    created_at=now,
                    owner_key_id=owner_key_id,
                )
            )
            start = 0
        else:
            start = 1 + (
                con.execute(
                    select(func.max(review_items.c.position)).where(
                        review_items.c.queue == spec.queue
                    )
                ).scalar()
                or 0
            )
            samples = [*list((existing["params"] or {}).get("samples", [])), params]
            con.execute(
                review_queues.update()
                .where(review_queues.c.name == spec.queue)
                .values(params={"samples": samples})
            )
        have = set(
            con.execute(
                select(review_items.c.id).where(review_items.c.queue == spec.queue)
            ).scalars()
        )
        rows: list[dict[str, Any]] = []
        for c in everything:
            iid = item_id_for(spec.queue, c.kind, c.source_ref)
            if iid in have:
                skipped += 1
                continue
            have.add(iid)
            rows.append(
                {
                    "id": iid,
                    "queue": spec.queue,
                    "kind": c.kind,
                    "position": start + len(rows),
                    "source": c.source,
                    "source_ref": c.source_ref,
                    "request_id": c.request_id,
                    "run_id": c.run_id,
                    "model_version": c.model_version,
                    "plant_id": c.plant_id,
                    "prompt": c.prompt,
                    "response": c.response,
                    "response_b": c.response_b,
                    "reference": c.reference,
                    "pair": c.pair,
                    "gold": c.gold,
                    "meta": {**c.meta, "strata": c.strata} if c.strata else c.meta,
                    "created_at": now,
                }
            )
            added[c.kind] += 1
        if rows:
            con.execute(insert(review_items), rows)
    strata = Counter(
        ", ".join(f"{k}={v}" for k, v in sorted(c.strata.items())) for c in sampled if c.strata
    )
    return {
        "queue": spec.queue,
        "created": existing is None,
        "rubric": rubric.name,
        "reviewers_per_item": existing["reviewers_per_item"] if existing else spec.reviewers,
        "requested": spec.n,
        "sampled": len(sampled),
        "added": dict(added),
        "already_in_queue": skipped,
        "strata": dict(sorted(strata.items())),
    }


__all__ = [
    "GOLD_EXPECTATIONS",
    "STRATEGIES",
    "Candidate",
    "SampleSpec",
    "build_queue",
    "disagreement",
    "stratified",
]
