"""The human review API: a reviewer's next item, submitting a review, queue status, agreement.

The same service functions as ``modelwarden review next | submit | status | agreement``
(:mod:`modelwarden.review.service`), with the same JSON. Asking for the next item claims it (so
two reviewers never get the same slot), and so does posting a review; both need a key with role
``reviewer``, ``approver``, ``operator`` or ``admin`` (an ``ingest`` key cannot). A ``reviewer``
or ``approver`` key is one person, its name: it may only act as that reviewer. Operators and
admins may act for anyone, for instance from a review front end that signs reviewers in itself;
the audit names the key that did.

A queue's status and agreement are shown to its owner (the key that created it) and to admin
keys; any other key is refused with 403, and the refusal is audited.
"""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelwarden.governance.keys import PERSONAL_ROLES, ApiKey, ForbiddenError
from modelwarden.review import service
from modelwarden.review.reliability import RELIABILITY_THRESHOLD
from modelwarden.server.deps import json_default, requires, requires_key, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(prefix="/v1/review", tags=["review"])

_READ_ERRORS = error_responses(400, 404, 422)
_WRITE_ERRORS = error_responses(400, 401, 403, 404, 409, 422)
_OWNER_ERRORS = error_responses(400, 401, 403, 404, 422)


class ReviewIn(BaseModel):
    """One reviewer's answers to one item, by the rubric the item came with."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=32)
    reviewer: str = Field(min_length=1, max_length=100)
    answers: dict[str, Any] = Field(
        examples=[{"correctness": 4, "safety": True, "helpfulness": 4, "issue": "none"}]
    )
    comment: str | None = Field(default=None, max_length=4000)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(_clean(data), default=json_default, ensure_ascii=False, allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def _acting_as(request: Request, key: ApiKey | None, reviewer: str) -> None:
    if key is None or key.role not in PERSONAL_ROLES:
        return
    if not key.name:
        problem = (
            f"this {key.role} key has no name, so it acts as nobody; create one with "
            "modelwarden keys create --role reviewer --name NAME"
        )
    elif key.name != reviewer:
        problem = f"this key belongs to reviewer {key.name!r} and cannot act as {reviewer!r}"
    else:
        return
    # The app's error handler audits the refusal.
    raise ForbiddenError(problem, field="reviewer", role=key.role)


@router.get(
    "/queues",
    responses=_READ_ERRORS,
    summary="Every review queue",
    operation_id="review_list_queues",
)
def review_list_queues(request: Request) -> Response:
    state = runtime_of(request).state
    return _json(service.queues(state))


@router.get(
    "/queues/{queue}/next",
    responses={**_WRITE_ERRORS, 204: {"description": "nothing left for this reviewer"}},
    summary="Claim and return the reviewer's next item (as `review next --format json`)",
    operation_id="review_next_item",
)
async def review_next_item(
    request: Request,
    queue: str,
    reviewer: str = Query(..., min_length=1, max_length=100),
    key: ApiKey | None = Depends(requires("review")),
) -> Response:
    _acting_as(request, key, reviewer)
    state = runtime_of(request).state
    item = await run_in_threadpool(service.next_for, state, queue, reviewer)
    if item is None:
        return Response(status_code=204)
    return _json(item)


@router.post(
    "/queues/{queue}/reviews",
    status_code=201,
    responses={**_WRITE_ERRORS, 200: {"description": "the same review was stored before"}},
    summary="Store a review (as `review submit`)",
    operation_id="review_post_review",
)
async def review_post_review(
    request: Request,
    queue: str,
    body: ReviewIn,
    key: ApiKey | None = Depends(requires("review")),
) -> Response:
    _acting_as(request, key, body.reviewer)
    state = runtime_of(request).state
    review = await run_in_threadpool(
        partial(
            service.submit,
            state,
            body.item_id,
            body.reviewer,
            body.answers,
            body.comment,
            origin="http",
            queue=queue,
        )
    )
    return _json(review, status=201 if review["created"] else 200)


@router.get(
    "/queues/{queue}/status",
    responses=_OWNER_ERRORS,
    summary="Items, reviews given and needed (as `review status`); the queue's owner and admins",
    operation_id="review_queue_status",
)
async def review_queue_status(
    request: Request, queue: str, key: ApiKey = Depends(requires_key("review"))
) -> Response:
    state = runtime_of(request).state
    return _json(await run_in_threadpool(service.status, state, queue, key))


@router.get(
    "/queues/{queue}/agreement",
    responses=_OWNER_ERRORS,
    summary="Agreement per rubric dimension (as `review agreement`); the queue's owner and admins",
    operation_id="review_queue_agreement",
)
async def review_queue_agreement(
    request: Request,
    queue: str,
    threshold: float = Query(RELIABILITY_THRESHOLD, ge=0.0, le=1.0),
    key: ApiKey = Depends(requires_key("review")),
) -> Response:
    state = runtime_of(request).state
    return _json(await run_in_threadpool(service.agreement, state, queue, threshold, key))


__all__ = ["router"]
