"""Review service: what ``modelwarden review``, the review API and the console's workbench call.

Building a queue, a reviewer's next item, storing a review, a queue's progress and agreement,
export and import, each answer as JSON-able data. The entry points only parse, call one of these
and render.

A queue's progress and agreement are for its owner (the API key that created it) and admin keys.
A caller is anything with a key's ``id``, ``role`` and ``actor`` (an
:class:`modelwarden.governance.keys.ApiKey`); ``None`` is the local command line without a key,
which sees everything as it always has. A refusal is a :class:`NotQueueOwner` (403); the HTTP app
audits it in its error handler, and a command passes ``record`` (the audit log's writer) to have
it audited here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from modelwarden.errors import InputError, NotFoundError, WardenError
from modelwarden.review import queue as review_queue
from modelwarden.review.reliability import RELIABILITY_THRESHOLD, agreement_report
from modelwarden.review.rubrics import DEFAULT_RUBRIC, Rubric
from modelwarden.review.sampling import SampleSpec, build_queue
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore
from modelwarden.windows import parse_time

# Who may see every queue's progress and agreement, whoever created it.
ADMIN_ROLE = "admin"


class Caller(Protocol):
    """The API key asking (:class:`modelwarden.governance.keys.ApiKey` is one)."""

    @property
    def id(self) -> int: ...

    @property
    def role(self) -> str: ...

    @property
    def actor(self) -> str: ...


# The audit log's writer: (state, actor, action, subject, reason, evidence).
Record = Callable[[StateStore, str, str, str, str, Any], object]


class NotQueueOwner(WardenError):
    """A key that neither owns a review queue nor is an admin key asked for its progress."""

    code = "forbidden"
    http_status = 403


# ---- building a queue --------------------------------------------------------------------------
def split_list(value: str | None) -> list[str] | None:
    """``"a, b"`` as ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    return [x.strip() for x in value.split(",") if x.strip()]


def sample_spec(
    *,
    rubric: Path | None = None,
    since: str | None = None,
    until: str | None = None,
    by: str | list[str] | None = None,
    **values: Any,
) -> SampleSpec:
    """What ``review sample`` builds, from its options as given (a rubric file, ISO times)."""
    return SampleSpec.build(
        rubric=Rubric.load(rubric) if rubric is not None else DEFAULT_RUBRIC,
        since=parse_time(since, "since") if since else None,
        until=parse_time(until, "until") if until else None,
        by=split_list(by) if isinstance(by, str) else by,
        **values,
    )


def sample(
    settings: Settings, state: StateStore, spec: SampleSpec, owner: Caller | None = None
) -> dict[str, Any]:
    """Build (or with ``append`` extend) a queue; a new one is owned by ``owner``."""
    return build_queue(settings, state, spec, owner.id if owner is not None else None)


# ---- queues ------------------------------------------------------------------------------------
def queues(state: StateStore) -> list[dict[str, Any]]:
    """Every review queue, oldest first."""
    return review_queue.list_queues(state)


def owner_label(queue: Mapping[str, Any]) -> str:
    owner = queue.get("owner_key_id")
    return f"key {owner}" if owner is not None else "admin keys only"


def may_see_progress(queue: Mapping[str, Any], caller: Caller | None) -> bool:
    """Whether ``caller`` may see the queue's progress and agreement (None: the local CLI)."""
    if caller is None or caller.role == ADMIN_ROLE:
        return True
    return queue.get("owner_key_id") is not None and queue["owner_key_id"] == caller.id


def owned_queue(
    state: StateStore,
    name: str,
    caller: Caller | None,
    what: str = "progress",
    record: Record | None = None,
) -> dict[str, Any]:
    """The queue, if ``caller`` may see its ``what``; otherwise a :class:`NotQueueOwner`."""
    queue = review_queue.get_queue(state, name)
    if may_see_progress(queue, caller):
        return queue
    assert caller is not None
    if queue.get("owner_key_id") is None:
        reason = (
            f"review queue {name!r} has no owner (it was made without a key), so its {what} "
            "is shown to admin keys only"
        )
    else:
        reason = (
            f"the {what} of review queue {name!r} is shown to its owner "
            f"(key {queue['owner_key_id']}) and to admin keys only; this is key {caller.id} "
            f"with role {caller.role!r}"
        )
    if record is not None:
        record(
            state,
            caller.actor,
            "auth.refused",
            f"review queue {name}",
            reason,
            {"what": what, "owner_key_id": queue.get("owner_key_id"), "role": caller.role},
        )
    raise NotQueueOwner(reason, field="queue", role=caller.role)


def status(
    state: StateStore, name: str, caller: Caller | None = None, record: Record | None = None
) -> dict[str, Any]:
    """Items, reviews given and still needed, reviewers (``review status``); owners only."""
    owned_queue(state, name, caller, "progress", record)
    return review_queue.queue_status(state, name)


def agreement(
    state: StateStore,
    name: str,
    threshold: float = RELIABILITY_THRESHOLD,
    caller: Caller | None = None,
    record: Record | None = None,
) -> dict[str, Any]:
    """Krippendorff's alpha per dimension and the rest (``review agreement``); owners only."""
    if not 0.0 <= threshold <= 1.0:
        raise InputError("threshold must be between 0 and 1", field="threshold")
    owned_queue(state, name, caller, "agreement", record)
    return agreement_report(state, name, threshold)


def progress(
    state: StateStore, name: str, caller: Caller | None = None, record: Record | None = None
) -> dict[str, Any]:
    """Progress and agreement together, as the queue's owner sees them in the console."""
    queue = owned_queue(state, name, caller, "progress and agreement", record)
    return {
        "queue": queue["name"],
        "owner": owner_label(queue),
        "status": review_queue.queue_status(state, name),
        "agreement": agreement_report(state, name),
    }


# ---- reviewing ---------------------------------------------------------------------------------
def next_for(state: StateStore, name: str, reviewer: str) -> dict[str, Any] | None:
    """Claim and return the reviewer's next item of the queue; None when there is nothing left."""
    return review_queue.next_item(state, name, reviewer)


def check_for_next(state: StateStore, name: str, reviewer: str) -> None:
    """The checks :func:`next_for` makes first (a reviewer name, a queue that exists)."""
    review_queue.check_reviewer(reviewer)
    review_queue.get_queue(state, name)


def submit(
    state: StateStore,
    item_id: str,
    reviewer: str,
    answers: Any,
    comment: str | None = None,
    *,
    origin: str,
    queue: str | None = None,
) -> dict[str, Any]:
    """Store one review; the review with ``created`` (False: the same one was stored before).

    With ``queue``, the item must be in that queue (the API's and console's URL names it).
    """
    if queue is not None:
        item = review_queue.get_item(state, item_id)
        if item["queue"] != queue:
            raise NotFoundError(f"no item {item_id!r} in queue {queue!r}", field="item_id")
    review, created = review_queue.submit_review(
        state, item_id, reviewer, answers, comment, origin=origin
    )
    return {**review, "created": created}


def workbench(
    state: StateStore, queue: str | None, reviewer: str, caller: Caller | None
) -> dict[str, Any]:
    """The console's review page: the queues, the reviewer's next item in the chosen one (the
    first queue when none is chosen), and for its owner its progress and agreement."""
    all_queues = review_queue.list_queues(state)
    name = queue or (all_queues[0]["name"] if all_queues else None)
    out: dict[str, Any] = {"queues": all_queues, "queue": name, "item": None, "progress": None}
    if name is None:
        return out
    out["item"] = next_for(state, name, reviewer)
    chosen = review_queue.get_queue(state, name)
    if may_see_progress(chosen, caller):
        out["progress"] = {
            "status": review_queue.queue_status(state, name),
            "agreement": agreement_report(state, name),
        }
    return out


# ---- export / import / rubric ------------------------------------------------------------------
def export(state: StateStore, out: Path, queue: str | None = None) -> dict[str, Any]:
    """Write queues, items and reviews as JSONL; the file and the counts."""
    return {"out": str(out), **review_queue.export_file(state, out, queue)}


def import_export(state: StateStore, path: Path, owner: Caller | None = None) -> dict[str, int]:
    """Import a file written by :func:`export`; new queues are owned by ``owner``."""
    return review_queue.import_file(state, path, owner.id if owner is not None else None)


def write_rubric(out: Path, force: bool = False) -> Path:
    """The default rubric as YAML at ``out`` (refused over an existing file unless ``force``)."""
    if out.exists() and not force:
        raise InputError(f"{out} exists; add --force to overwrite it", field="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(DEFAULT_RUBRIC.to_yaml(), encoding="utf-8")
    return out


__all__ = [
    "Caller",
    "NotQueueOwner",
    "agreement",
    "check_for_next",
    "export",
    "import_export",
    "may_see_progress",
    "next_for",
    "owned_queue",
    "owner_label",
    "progress",
    "queues",
    "sample",
    "sample_spec",
    "status",
    "submit",
    "workbench",
    "write_rubric",
]
