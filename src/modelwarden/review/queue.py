"""Human review queues in the state store: items, assignment, reviews, status, export/import.

A queue holds items of three kinds (sampled by :mod:`modelwarden.review.sampling`):

- ``single``: one response to a prompt, from the request logs or from an evaluation run, answered
  with the queue's rubric;
- ``gold``: a response whose right answers are known. Every reviewer gets every gold item, mixed
  in among the others and shown like them, so that a reviewer's answers on them calibrate the
  reviewer;
- ``pairwise``: two responses to the same prompt (two evaluation runs, or a served answer and its
  shadow copy), shown as "first" and "second" in an order drawn per item and kept only here. The
  answer is decoded to the responses' identities ``A`` and ``B`` when it is stored.

Each single or pairwise item goes to ``reviewers_per_item`` different reviewers. A reviewer asking
for work gets the first item (in the queue's shuffled order) that they have not seen and that
still has an open slot. The claim is one conditional INSERT, so two reviewers asking at the same
moment cannot both take the last slot, and the (item, reviewer) key means nobody gets an item
twice. A claim not answered within ``lease_minutes`` stops holding its slot.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    String,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError

from modelwarden.errors import ConflictError, InputError, NotFoundError
from modelwarden.review import DEFAULT_QUEUE
from modelwarden.review.rubrics import (
    PAIRWISE_RUBRIC,
    PREFERENCE,
    Rubric,
    decode_preference,
)
from modelwarden.store.state import StateStore, conflict_insert
from modelwarden.store.tables import (
    UtcDateTime,
    as_utc,
    review_assignments,
    review_items,
    review_queues,
    reviews,
)

DEFAULT_LEASE_MINUTES = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")
_REVIEWER = re.compile(r"^[\w.@+-]{1,100}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"queue name {name!r} must start with a letter or digit and use only letters, "
            "digits and ._:@+- (at most 200 characters)",
            field="queue",
        )
    return name


def check_reviewer(name: str) -> str:
    if not isinstance(name, str) or not _REVIEWER.match(name):
        raise InputError(
            f"reviewer {name!r} must be 1-100 letters, digits or ._@+-", field="reviewer"
        )
    return name


def item_id_for(queue: str, kind: str, source_ref: str) -> str:
    """A stable id: the same item sampled into the same queue anywhere gets the same id."""
    digest = hashlib.sha256(f"{queue}\x1f{kind}\x1f{source_ref}".encode()).hexdigest()
    return "rv" + digest[:14]


# --------------------------------------------------------------------------- queues


def _queue_dict(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def get_queue(state: StateStore, name: str) -> dict[str, Any]:
    with state.engine.connect() as con:
        row = con.execute(select(review_queues).where(review_queues.c.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(
            f"no review queue {name!r}; create one with: modelwarden review sample", field="queue"
        )
    return _queue_dict(row)


def list_queues(state: StateStore) -> list[dict[str, Any]]:
    with state.engine.connect() as con:
        rows = con.execute(select(review_queues).order_by(review_queues.c.created_at))
        return [_queue_dict(r) for r in rows]


def queue_rubric(queue: Mapping[str, Any]) -> Rubric:
    return Rubric.model_validate(queue["rubric"])


def rubric_for(queue: Mapping[str, Any], kind: str) -> Rubric:
    return PAIRWISE_RUBRIC if kind == "pairwise" else queue_rubric(queue)


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "line"
        return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
    return f"not valid JSON: {exc}"


# --------------------------------------------------------------------------- assignment


def _taken(item: Any, cutoff: datetime) -> Any:
    """Reviews given plus unexpired, unanswered claims on ``item`` (a column or an id)."""
    rv = reviews.alias("rv")
    ra = review_assignments.alias("ra")
    rv2 = reviews.alias("rv2")
    done = select(func.count()).select_from(rv).where(rv.c.item_id == item).scalar_subquery()
    open_claims = (
        select(func.count())
        .select_from(ra)
        .where(
            ra.c.item_id == item,
            ra.c.assigned_at > cutoff,
            ~exists().where(rv2.c.item_id == ra.c.item_id, rv2.c.reviewer == ra.c.reviewer),
        )
        .scalar_subquery()
    )
    return done + open_claims


def _claim(
    con: Any, item_id: str, reviewer: str, kind: str, n: int, now: datetime, cutoff: datetime
) -> bool:
    sel = select(
        literal(item_id, String()),
        literal(reviewer, String()),
        literal(now, UtcDateTime()),
    ).where(true())  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
    if kind != "gold":
        sel = sel.where(_taken(item_id, cutoff) < n)
    # A claim the reviewer holds already is a conflict that inserts nothing, not an error that
    # would abort the transaction on PostgreSQL.
    stmt = conflict_insert(con.dialect.name, review_assignments).from_select(
        ["item_id", "reviewer", "assigned_at"], sel
    )
    res = con.execute(stmt.on_conflict_do_nothing())
    return bool(res.rowcount)


def _open_own(state: StateStore, queue: str, reviewer: str) -> list[Any]:
    q = (
        select(review_items, review_assignments.c.assigned_at)
        .join(review_assignments, review_assignments.c.item_id == review_items.c.id)
        .where(
            review_items.c.queue == queue,
            review_assignments.c.reviewer == reviewer,
            ~exists().where(reviews.c.item_id == review_items.c.id, reviews.c.reviewer == reviewer),
        )
        .order_by(review_items.c.position)
    )
    with state.engine.connect() as con:
        return list(con.execute(q))


def _available(
    state: StateStore,
    queue: dict[str, Any],
    reviewer: str,
    cutoff: datetime,
    limit: int | None = None,
) -> list[Any]:
    mine = exists().where(
        review_assignments.c.item_id == review_items.c.id,
        review_assignments.c.reviewer == reviewer,
    )
    reviewed = exists().where(
        reviews.c.item_id == review_items.c.id, reviews.c.reviewer == reviewer
    )
    q = (
        select(review_items)
        .where(
            review_items.c.queue == queue["name"],
            ~mine,
            ~reviewed,
            or_(
                review_items.c.kind == "gold",
                _taken(review_items.c.id, cutoff) < queue["reviewers_per_item"],
            ),
        )
        .order_by(review_items.c.position)
    )
    if limit:
        q = q.limit(limit)
    with state.engine.connect() as con:
        return list(con.execute(q))


def next_item(state: StateStore, queue_name: str, reviewer: str) -> dict[str, Any] | None:
    """Claim the reviewer's next item and return it as the reviewer may see it; None when done.

    An item the reviewer claimed and has not answered comes back first, while its claim holds.
    """
    check_reviewer(reviewer)
    queue = get_queue(state, queue_name)
    now = utcnow()
    cutoff = now - timedelta(minutes=queue["lease_minutes"])
    stale = []
    for row in _open_own(state, queue_name, reviewer):
        if row.assigned_at > cutoff:
            return present(queue, row, progress(state, queue, reviewer))
        stale.append(row.id)
    if stale:
        with state.engine.begin() as con:
            con.execute(
                delete(review_assignments).where(
                    review_assignments.c.reviewer == reviewer,
                    review_assignments.c.item_id.in_(stale),
                )
            )
    while True:
        candidates = _available(state, queue, reviewer, cutoff, limit=20)
        if not candidates:
            return None
        for row in candidates:
            with state.engine.begin() as con:
                ok = _claim(
                    con, row.id, reviewer, row.kind, queue["reviewers_per_item"], now, cutoff
                )
            if ok:
                return present(queue, row, progress(state, queue, reviewer))


def progress(state: StateStore, queue: dict[str, Any], reviewer: str) -> dict[str, int]:
    cutoff = utcnow() - timedelta(minutes=queue["lease_minutes"])
    with state.engine.connect() as con:
        done = con.execute(
            select(func.count())
            .select_from(reviews)
            .where(reviews.c.queue == queue["name"], reviews.c.reviewer == reviewer)
        ).scalar_one()
    left = len(_available(state, queue, reviewer, cutoff))
    return {"reviewed": int(done), "available": left}


def present(queue: dict[str, Any], row: Any, prog: dict[str, int] | None = None) -> dict[str, Any]:
    """An item as a reviewer sees it: no source, model, gold status or pair order."""
    r = row._mapping if hasattr(row, "_mapping") else row
    rubric = rubric_for(queue, r["kind"])
    out: dict[str, Any] = {
        "item_id": r["id"],
        "queue": queue["name"],
        "kind": "pairwise" if r["kind"] == "pairwise" else "single",
        "prompt": r["prompt"],
    }
    if r["kind"] == "pairwise":
        order = r["pair"]["order"]
        texts = {"A": r["response"], "B": r["response_b"]}
        out["first"], out["second"] = texts[order[0]], texts[order[1]]
    else:
        out["response"] = r["response"]
    if r["reference"] is not None:
        out["reference"] = r["reference"]
    out["rubric"] = rubric.model_dump(mode="json")
    if prog is not None:
        out["progress"] = prog
    return out


# --------------------------------------------------------------------------- reviews


def get_item(state: StateStore, item_id: str) -> dict[str, Any]:
    with state.engine.connect() as con:
        row = con.execute(select(review_items).where(review_items.c.id == item_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no review item {item_id!r}", field="item")
    return dict(row._mapping)


def _review_dict(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def submit_review(
    state: StateStore,
    item_id: str,
    reviewer: str,
    answers: Any,
    comment: str | None = None,
    origin: str = "cli",
) -> tuple[dict[str, Any], bool]:
    """Store a review; returns it and whether it is new.

    Sending the same answers again is a no-op; different answers for an item the reviewer already
    reviewed are a conflict (reviews are not edited). A reviewer who holds no claim on the item
    takes one now if a slot is open.
    """
    check_reviewer(reviewer)
    item = get_item(state, item_id)
    queue = get_queue(state, item["queue"])
    rubric = rubric_for(queue, item["kind"])
    clean = rubric.validate_answers(answers)
    if comment is not None and len(comment) > 4000:
        raise InputError("comment: at most 4000 characters", field="comment")
    decoded = dict(clean)
    if item["kind"] == "pairwise":
        decoded[PREFERENCE] = decode_preference(clean[PREFERENCE], item["pair"]["order"])
    with state.engine.connect() as con:
        prior = con.execute(
            select(reviews).where(reviews.c.item_id == item_id, reviews.c.reviewer == reviewer)
        ).one_or_none()
        lease = con.execute(
            select(review_assignments.c.assigned_at).where(
                review_assignments.c.item_id == item_id,
                review_assignments.c.reviewer == reviewer,
            )
        ).scalar_one_or_none()
    if prior is not None:
        if prior.answers == clean and (prior.comment or None) == (comment or None):
            return _review_dict(prior), False
        raise ConflictError(
            f"{reviewer} has reviewed item {item_id} already with other answers; reviews are "
            "not edited",
            field="item",
        )
    now = utcnow()
    cutoff = now - timedelta(minutes=queue["lease_minutes"])
    lease_at = as_utc(lease)
    values = {
        "id": uuid.uuid4().hex,
        "item_id": item_id,
        "queue": item["queue"],
        "reviewer": reviewer,
        "answers": clean,
        "decoded": decoded,
        "comment": comment,
        "seconds": (now - lease_at).total_seconds() if lease_at and lease_at > cutoff else None,
        "origin": origin,
        "created_at": now,
    }
    with state.engine.begin() as con:
        if lease_at is None or lease_at <= cutoff:
            con.execute(
                delete(review_assignments).where(
                    review_assignments.c.item_id == item_id,
                    review_assignments.c.reviewer == reviewer,
                )
            )
            if not _claim(
                con, item_id, reviewer, item["kind"], queue["reviewers_per_item"], now, cutoff
            ):
                raise ConflictError(
                    f"item {item_id} has its {queue['reviewers_per_item']} reviewer(s) already",
                    field="item",
                )
        try:
            con.execute(insert(reviews).values(**values))
        except IntegrityError as exc:
            raise ConflictError(
                f"{reviewer} has reviewed item {item_id} already", field="item"
            ) from exc
    return {**values}, True


def list_reviews(state: StateStore, queue: str | None = None) -> list[dict[str, Any]]:
    q = select(reviews).order_by(reviews.c.created_at, reviews.c.id)
    if queue:
        q = q.where(reviews.c.queue == queue)
    with state.engine.connect() as con:
        return [_review_dict(r) for r in con.execute(q)]


def queue_status(state: StateStore, queue_name: str) -> dict[str, Any]:
    queue = get_queue(state, queue_name)
    n = queue["reviewers_per_item"]
    cutoff = utcnow() - timedelta(minutes=queue["lease_minutes"])
    with state.engine.connect() as con:
        items = list(
            con.execute(
                select(review_items.c.id, review_items.c.kind).where(
                    review_items.c.queue == queue_name
                )
            )
        )
        given = {
            (r.item_id, r.reviewer)
            for r in con.execute(
                select(reviews.c.item_id, reviews.c.reviewer).where(reviews.c.queue == queue_name)
            )
        }
        open_claims = con.execute(
            select(func.count())
            .select_from(review_assignments.join(review_items))
            .where(
                review_items.c.queue == queue_name,
                review_assignments.c.assigned_at > cutoff,
                ~exists().where(
                    reviews.c.item_id == review_assignments.c.item_id,
                    reviews.c.reviewer == review_assignments.c.reviewer,
                ),
            )
        ).scalar_one()
    done = Counter(item for item, _ in given)
    per_reviewer = Counter(rv for _, rv in given)
    kinds = Counter(r.kind for r in items)
    shared = [r.id for r in items if r.kind != "gold"]
    gold = [r.id for r in items if r.kind == "gold"]
    complete = sum(1 for i in shared if done[i] >= n)
    started = sum(1 for i in shared if 0 < done[i] < n)
    gold_left = sum(1 for rv in per_reviewer for g in gold if (g, rv) not in given)
    return {
        "queue": queue_name,
        "rubric": queue["rubric"]["name"],
        "reviewers_per_item": n,
        "items": {"single": kinds["single"], "pairwise": kinds["pairwise"], "gold": kinds["gold"]},
        "reviews": len(given),
        "complete_items": complete,
        "partly_reviewed_items": started,
        "unreviewed_items": len(shared) - complete - started,
        # Gold items are owed by every reviewer who has started; new reviewers will add more.
        "reviews_needed": sum(max(0, n - done[i]) for i in shared) + gold_left,
        "open_claims": int(open_claims),
        "reviewers": dict(sorted(per_reviewer.items())),
    }


# --------------------------------------------------------------------------- export / import

EXPORT_VERSION = 1


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return (as_utc(v) or v).isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def export_lines(state: StateStore, queue: str | None = None) -> Iterable[dict[str, Any]]:
    """Queues, their items and reviews as JSON objects (a ``type`` field tells them apart)."""
    queues = [get_queue(state, queue)] if queue else list_queues(state)
    for q in queues:
        # The owner is a key of this installation; an import elsewhere gives its own owner.
        shown = {k: v for k, v in q.items() if k != "owner_key_id"}
        yield {"type": "queue", "format": EXPORT_VERSION, **_jsonable(shown)}
        with state.engine.connect() as con:
            items = con.execute(
                select(review_items)
                .where(review_items.c.queue == q["name"])
                .order_by(review_items.c.position)
            )
            for r in items:
                yield {"type": "item", **_jsonable(dict(r._mapping))}
            rows = con.execute(
                select(reviews)
                .where(reviews.c.queue == q["name"])
                .order_by(reviews.c.created_at, reviews.c.id)
            )
            for r in rows:
                yield {"type": "review", **_jsonable(dict(r._mapping))}


def export_file(state: StateStore, path: Path, queue: str | None = None) -> dict[str, int]:
    counts: Counter[str] = Counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for line in export_lines(state, queue):
            counts[line["type"]] += 1
            fh.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)
    return {"queues": counts["queue"], "items": counts["item"], "reviews": counts["review"]}


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueLine(_Line):
    type: Literal["queue"]
    format: int = Field(default=EXPORT_VERSION, ge=1, le=EXPORT_VERSION)
    name: str
    rubric: dict[str, Any]
    reviewers_per_item: int = Field(ge=1, le=50)
    lease_minutes: float = Field(gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ItemLine(_Line):
    type: Literal["item"]
    id: str
    queue: str
    kind: Literal["single", "gold", "pairwise"]
    position: int = Field(ge=0)
    source: Literal["logs", "run", "gold"]
    source_ref: str = Field(min_length=1, max_length=400)
    request_id: str | None = None
    run_id: int | None = None
    model_version: str | None = None
    plant_id: str | None = None
    prompt: str
    response: str
    response_b: str | None = None
    reference: str | None = None
    pair: dict[str, Any] | None = None
    gold: dict[str, Any] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ReviewLine(_Line):
    type: Literal["review"]
    id: str = Field(min_length=1, max_length=32)
    item_id: str
    queue: str
    reviewer: str
    answers: dict[str, Any]
    decoded: dict[str, Any] | None = None
    comment: str | None = None
    seconds: float | None = None
    origin: str = "import"
    created_at: datetime


_LINE_TYPES: dict[str, type[_Line]] = {"queue": QueueLine, "item": ItemLine, "review": ReviewLine}
_ITEM_CONTENT = (
    "kind",
    "source_ref",
    "prompt",
    "response",
    "response_b",
    "reference",
    "pair",
    "gold",
)


def _parse_lines(path: Path) -> list[tuple[int, _Line]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text", field="path") from exc
    out: list[tuple[int, _Line]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"{path} line {lineno}: not valid JSON: {exc}", line=lineno) from None
        kind = obj.get("type") if isinstance(obj, dict) else None
        model = _LINE_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise InputError(
                f"{path} line {lineno}: type: must be one of queue, item, review",
                line=lineno,
                field="type",
            )
        try:
            out.append((lineno, model.model_validate(obj)))
        except ValidationError as exc:
            raise InputError(f"{path} line {lineno}: {first_error(exc)}", line=lineno) from None
    return out


def _same_item(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _ITEM_CONTENT)


def import_file(state: StateStore, path: Path, owner_key_id: int | None = None) -> dict[str, int]:
    """Import an export: everything is checked first and stored in one transaction.

    Importing the same file twice changes nothing; a queue, item or review that exists with
    other content is a conflict and nothing is imported. Queues it creates are owned by
    ``owner_key_id`` (the importing key; None: admin keys only).
    """
    lines = _parse_lines(path)
    run = _Import(state, path, owner_key_id)
    for lineno, ln in lines:
        if isinstance(ln, QueueLine):
            run.add_queue(lineno, ln)
    for lineno, ln in lines:
        if isinstance(ln, ItemLine):
            run.add_item(lineno, ln)
    for lineno, ln in lines:
        if isinstance(ln, ReviewLine):
            run.add_review(lineno, ln)
    run.store()
    return run.summary(item_lines=sum(1 for _, ln in lines if isinstance(ln, ItemLine)))


@dataclass
class _Import:
    """One import: the queues and items it has checked, and the rows it will add.

    Lines are checked in three passes (queues, items, reviews), so that every item finds its
    queue and every review its item, whether they come from the file or are already here.
    """

    state: StateStore
    path: Path
    owner_key_id: int | None = None
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_queues: list[QueueLine] = field(default_factory=list)
    new_items: list[dict[str, Any]] = field(default_factory=list)
    new_reviews: list[dict[str, Any]] = field(default_factory=list)
    reviews_here: int = 0
    seen: set[tuple[str, str]] = field(default_factory=set)

    def where(self, lineno: int) -> str:
        return f"{self.path} line {lineno}"

    # ---- queues

    def add_queue(self, lineno: int, ln: QueueLine) -> None:
        where = self.where(lineno)
        check_queue_name(ln.name)
        try:
            rubric = Rubric.model_validate(ln.rubric)
        except ValidationError as exc:
            raise InputError(f"{where}: rubric: {first_error(exc)}", line=lineno) from None
        have = self._queue_here(ln.name)
        if have is not None and (
            Rubric.model_validate(have["rubric"]) != rubric
            or have["reviewers_per_item"] != ln.reviewers_per_item
        ):
            raise ConflictError(
                f"{where}: queue {ln.name!r} exists here with another rubric or reviewer count",
                field="queue",
            )
        if have is None and ln.name not in self.queues:
            self.new_queues.append(ln)
        self.queues[ln.name] = have or {
            "name": ln.name,
            "rubric": rubric.model_dump(mode="json"),
            "reviewers_per_item": ln.reviewers_per_item,
            "lease_minutes": ln.lease_minutes,
        }

    def _queue_here(self, name: str) -> dict[str, Any] | None:
        try:
            return get_queue(self.state, name)
        except NotFoundError:
            return None

    def queue_of(self, name: str, where: str) -> dict[str, Any]:
        if name not in self.queues:
            have = self._queue_here(name)
            if have is None:
                raise InputError(
                    f"{where}: queue {name!r} is neither in the file nor here", field="queue"
                )
            self.queues[name] = have
        return self.queues[name]

    # ---- items

    def add_item(self, lineno: int, ln: ItemLine) -> None:
        where = self.where(lineno)
        q = self.queue_of(ln.queue, where)
        _check_item_line(ln, q, where, lineno)
        row = ln.model_dump(exclude={"type"})
        existing = self._item_here(ln.id)
        if existing is not None and not _same_item(existing, row):
            raise ConflictError(
                f"{where}: item {ln.id} exists here with other content", field="item"
            )
        self.items[ln.id] = existing or row
        if existing is None:
            self.new_items.append(row)

    def _item_here(self, item_id: str) -> dict[str, Any] | None:
        try:
            return get_item(self.state, item_id)
        except NotFoundError:
            return None

    def item_of(self, ln: ReviewLine, where: str, lineno: int) -> dict[str, Any]:
        item = self.items.get(ln.item_id)
        if item is None:
            item = self._item_here(ln.item_id)
            if item is None:
                raise InputError(
                    f"{where}: item {ln.item_id} is neither in the file nor here",
                    field="item_id",
                    line=lineno,
                )
            self.items[ln.item_id] = item
        if item["queue"] != ln.queue:
            raise InputError(
                f"{where}: queue: the item is in queue {item['queue']!r}",
                field="queue",
                line=lineno,
            )
        return item

    # ---- reviews

    def add_review(self, lineno: int, ln: ReviewLine) -> None:
        where = self.where(lineno)
        try:
            check_reviewer(ln.reviewer)
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}", field="reviewer", line=lineno) from None
        item = self.item_of(ln, where, lineno)
        rubric = rubric_for(self.queue_of(ln.queue, where), item["kind"])
        clean, decoded = _review_answers(ln, item, rubric, where, lineno)
        self._once_in_file(ln, where, lineno)
        if self._already_here(ln, clean, where):
            self.reviews_here += 1
            return
        self.new_reviews.append(
            {
                "id": ln.id,
                "item_id": ln.item_id,
                "queue": ln.queue,
                "reviewer": ln.reviewer,
                "answers": clean,
                "decoded": decoded,
                "comment": ln.comment,
                "seconds": ln.seconds,
                "origin": ln.origin,
                "created_at": ln.created_at,
            }
        )

    def _once_in_file(self, ln: ReviewLine, where: str, lineno: int) -> None:
        key = (ln.item_id, ln.reviewer)
        if key in self.seen:
            raise InputError(
                f"{where}: {ln.reviewer} reviews item {ln.item_id} twice in the file", line=lineno
            )
        self.seen.add(key)

    def _already_here(self, ln: ReviewLine, clean: dict[str, Any], where: str) -> bool:
        """True when this reviewer's review of the item is here with the same answers."""
        with self.state.engine.connect() as con:
            prior = con.execute(
                select(reviews).where(
                    reviews.c.item_id == ln.item_id, reviews.c.reviewer == ln.reviewer
                )
            ).one_or_none()
        if prior is None:
            return False
        if prior.answers != clean:
            raise ConflictError(
                f"{where}: {ln.reviewer} reviewed item {ln.item_id} here with other answers",
                field="answers",
            )
        return True

    # ---- storing

    def store(self) -> None:
        """Everything checked, in one transaction."""
        with self.state.engine.begin() as con:
            for new in self.new_queues:
                con.execute(
                    insert(review_queues).values(
                        **new.model_dump(exclude={"type", "format"}),
                        owner_key_id=self.owner_key_id,
                    )
                )
            if self.new_items:
                con.execute(insert(review_items), self.new_items)
            for rv in self.new_reviews:
                _assign(con, rv["item_id"], rv["reviewer"], rv["created_at"])
            if self.new_reviews:
                try:
                    con.execute(insert(reviews), self.new_reviews)
                except IntegrityError as exc:
                    raise ConflictError(
                        f"a review id in {self.path} is used here by another review", field="id"
                    ) from exc

    def summary(self, item_lines: int) -> dict[str, int]:
        return {
            "queues_created": len(self.new_queues),
            "items_created": len(self.new_items),
            "reviews_created": len(self.new_reviews),
            "reviews_already_here": self.reviews_here,
            "items_already_here": item_lines - len(self.new_items),
        }


def _check_item_line(ln: ItemLine, queue: dict[str, Any], where: str, lineno: int) -> None:
    """An item line's id, pair and gold answers, as the queue would have made them."""
    if ln.id != item_id_for(ln.queue, ln.kind, ln.source_ref):
        raise InputError(
            f"{where}: id: does not belong to this queue, kind and source",
            field="id",
            line=lineno,
        )
    if ln.kind == "pairwise" and (
        ln.response_b is None or not ln.pair or ln.pair.get("order") not in ("AB", "BA")
    ):
        raise InputError(
            f"{where}: a pairwise item needs response_b and pair.order AB or BA",
            field="pair",
            line=lineno,
        )
    if ln.kind == "gold":
        if not ln.gold:
            raise InputError(
                f"{where}: gold: a gold item needs its expected answers",
                field="gold",
                line=lineno,
            )
        try:
            queue_rubric(queue).validate_gold(ln.gold)
        except InputError as exc:
            raise InputError(f"{where}: gold: {exc.message}", line=lineno) from None


def _review_answers(
    ln: ReviewLine, item: Mapping[str, Any], rubric: Rubric, where: str, lineno: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The review's answers checked against the rubric, and decoded by the item's pair order."""
    try:
        clean = rubric.validate_answers(ln.answers)
    except InputError as exc:
        raise InputError(f"{where}: answers: {exc.message}", line=lineno) from None
    decoded = dict(clean)
    if item["kind"] == "pairwise":
        decoded[PREFERENCE] = decode_preference(clean[PREFERENCE], item["pair"]["order"])
    if ln.decoded is not None and ln.decoded != decoded:
        raise InputError(
            f"{where}: decoded: does not follow from the answers and the pair order",
            field="decoded",
            line=lineno,
        )
    return clean, decoded


def _assign(con: Any, item_id: str, reviewer: str, at: datetime) -> None:
    """The item's assignment to the reviewer, replaced by one made when the review was."""
    con.execute(
        delete(review_assignments).where(
            review_assignments.c.item_id == item_id,
            review_assignments.c.reviewer == reviewer,
        )
    )
    con.execute(
        insert(review_assignments).values(item_id=item_id, reviewer=reviewer, assigned_at=at)
    )


__all__ = [
    "DEFAULT_QUEUE",
    "check_queue_name",
    "check_reviewer",
    "export_file",
    "first_error",
    "get_item",
    "get_queue",
    "import_file",
    "item_id_for",
    "list_queues",
    "list_reviews",
    "next_item",
    "queue_status",
    "submit_review",
    "utcnow",
]
