"""Evaluation runs and comparisons over HTTP (read only; runs are made with ``eval run``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from modelwarden.evals import service as evals
from modelwarden.server.deps import json_response, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(prefix="/v1/evals", tags=["evals"])


@router.get("/runs", responses=error_responses(422), summary="Evaluation runs, newest first")
def runs(
    request: Request,
    model: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=1000),
) -> Response:
    return json_response(evals.runs(runtime_of(request).state, model, limit))


@router.get(
    "/runs/{ref}",
    responses=error_responses(404),
    summary="One run (id or name) and its newest comparison as the candidate",
)
def run(request: Request, ref: str) -> Response:
    return json_response(evals.run(runtime_of(request).state, ref))


@router.get(
    "/comparisons",
    responses=error_responses(422),
    summary="Comparisons of two runs under a gate, newest first",
)
def comparisons(request: Request, limit: int = Query(50, ge=1, le=1000)) -> Response:
    return json_response(evals.comparisons(runtime_of(request).state, limit))


__all__ = ["router"]
