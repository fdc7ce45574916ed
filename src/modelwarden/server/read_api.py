"""The read API: KPIs, drift and the weekly report, with the CLI's parameters and JSON.

Each endpoint calls the same service function as its command and answers the same JSON as the
command's ``--format json`` (values the CLI prints with ``str``, such as times, read the same
here), except that a NaN, which is not JSON, is answered as ``null``.
"""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from modelwarden.drift.service import drift_history, run_drift
from modelwarden.kpi.service import kpi_table
from modelwarden.report.service import weekly_report
from modelwarden.server.deps import json_default, runtime_of
from modelwarden.server.errors import error_responses

router = APIRouter(tags=["read"])

_ERRORS = error_responses(400, 404, 422)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def json_text(data: Any) -> Response:
    body = json.dumps(_clean(data), default=json_default, ensure_ascii=False, allow_nan=False)
    return Response(body, media_type="application/json")


class WindowName(StrEnum):
    day = "day"
    week = "week"
    all = "all"


class EmbeddingKind(StrEnum):
    prompt = "prompt"
    response = "response"


class ReportFormat(StrEnum):
    json = "json"
    md = "md"


@router.get("/v1/kpis", responses=_ERRORS, summary="KPIs per window and group (as `kpis`)")
def get_kpis(
    request: Request,
    since: str | None = Query(None, description="ISO date or time (inclusive)"),
    until: str | None = Query(None, description="ISO date or time (exclusive)"),
    window: WindowName = Query(WindowName.week),
    by: str = Query("plant_id", description="Comma list of plant_id, model_version, route"),
    include_shadow: bool = Query(False),
) -> Response:
    settings = runtime_of(request).settings
    return json_text(kpi_table(settings, since, until, window.value, by, include_shadow).rows)


class DriftKind(StrEnum):
    prompt = "prompt"
    response = "response"
    quality = "quality"


@router.get("/v1/drift", responses=_ERRORS, summary="Drift between two windows (as `drift`)")
def get_drift(
    request: Request,
    baseline: str | None = Query(
        None, description="2026-W43..2026-W45, dates, or 'reservoir' (the kept-up-to-date sample)"
    ),
    current: str | None = Query(None, description="2026-W46 or dates"),
    plant: str | None = Query(None),
    version: str | None = Query(None, description="only this model version's traffic"),
    by: str = Query("plant_id", description="plant_id, model_version, both, or '' (overall)"),
    kind: DriftKind = Query(DriftKind.prompt),
    method: str = Query("suite", description="suite, mmd, classifier, clusters, centroid_*, seed"),
    alpha: float = Query(0.05, gt=0, lt=1, allow_inf_nan=False),
    threshold: float = Query(0.02, ge=0, le=2, allow_inf_nan=False),
) -> Response:
    run = run_drift(
        runtime_of(request).settings,
        baseline,
        current,
        plant=plant,
        version=version,
        by=by,
        kind=kind.value,
        method=method,
        alpha=alpha,
        threshold=threshold,
    )
    return json_text(run.rows)


@router.get(
    "/v1/drift/history",
    responses=_ERRORS,
    summary="Stored drift results over time (as `drift-history`)",
)
def get_drift_history(
    request: Request,
    plant: str | None = Query(None, description="a plant, or 'all plants'"),
    version: str | None = Query(None),
    kind: DriftKind | None = Query(None),
    method: str | None = Query(None),
    since: str | None = Query(None, description="windows starting at or after (ISO date)"),
    until: str | None = Query(None, description="windows ending at or before (ISO date)"),
    members: bool = Query(False, description="add the suite members' points"),
) -> Response:
    rows = drift_history(
        runtime_of(request).settings,
        plant=plant,
        version=version,
        kind=kind.value if kind else None,
        method=method,
        since=since,
        until=until,
        members=members,
    )
    return json_text(rows)


@router.get(
    "/v1/reports/weekly",
    responses={
        **_ERRORS,
        200: {
            "description": "the report as JSON, or Markdown with format=md",
            "content": {"application/json": {}, "text/markdown": {}},
        },
    },
    summary="The weekly governance report (as `report`)",
)
def get_weekly_report(
    request: Request,
    week: str | None = Query(None, description="ISO week, e.g. 2026-W47 (default: latest)"),
    format: ReportFormat = Query(ReportFormat.json),
) -> Response:
    out = weekly_report(runtime_of(request).settings, week, format.value)
    if format == ReportFormat.md:
        return Response(out, media_type="text/markdown; charset=utf-8")
    return json_text(out)
