"""Export for the warehouse: requests with their latest feedback and escalation, KPIs, drift.

``export_data`` writes, for a time range (``until`` exclusive), one file per table in ``out``:

* ``requests``: every request record (shadow copies included, with their route), joined with
  its latest feedback event (``feedback_score``, ``feedback_comment``, ``feedback_at``), its
  latest escalation (``escalation_category``, ``escalation_reason``, ``escalation_confirmed``,
  ``escalation_at``) and its number of escalations (``escalations``);
* ``kpis``: the weekly KPI table by plant and model version (:func:`kpi.service.compute_kpis`);
* ``drift_history``: the stored drift checks of the range (:func:`drift.history.read_history`);

in Parquet (typed columns, UTC timestamps) or JSON Lines (ISO-8601 times), and a
``manifest.json`` naming the range, the format and the row count of each file.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

from modelwarden.drift.history import read_history
from modelwarden.errors import InputError
from modelwarden.kpi.compute import KpiQuery
from modelwarden.kpi.service import compute_kpis
from modelwarden.settings import Settings
from modelwarden.store.reads import as_table, filtered_requests, open_store

ExportFormat = Literal["parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("parquet", "jsonl")


def _requests_table(settings: Settings, since: datetime | None, until: datetime | None) -> Any:
    con = open_store(settings).connect()
    req = filtered_requests(con, since, until)
    # Every kind has a table, empty when nothing is stored.
    fb = con.table("feedback")
    order = ibis.row_number().over(
        group_by=fb.request_id, order_by=[ibis.desc(fb.timestamp), ibis.desc(fb.event_id)]
    )
    latest = (
        fb.mutate(_n=order)
        .filter(lambda t: t._n == 0)
        .select(
            fb_request_id=fb.request_id,
            feedback_score=fb.score,
            feedback_comment=fb.comment,
            feedback_at=fb.timestamp,
        )
    )
    req = req.left_join(latest, req.request_id == latest.fb_request_id).drop("fb_request_id")
    esc = con.table("escalations")
    order = ibis.row_number().over(
        group_by=esc.request_id,
        order_by=[ibis.desc(esc.timestamp), ibis.desc(esc.event_id)],
    )
    counts = esc.group_by(esc_request_id=esc.request_id).agg(escalations=esc.count())
    latest_esc = (
        esc.mutate(_n=order)
        .filter(lambda t: t._n == 0)
        .select(
            esc_request_id=esc.request_id,
            escalation_category=esc.category,
            escalation_reason=esc.reason,
            escalation_confirmed=esc.confirmed,
            escalation_at=esc.timestamp,
        )
    )
    latest_esc = latest_esc.join(counts, "esc_request_id")
    req = req.left_join(latest_esc, req.request_id == latest_esc.esc_request_id).drop(
        "esc_request_id"
    )
    return con.to_pyarrow(req.order_by(["timestamp", "request_id"]))


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        pq.write_table(table, tmp)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(_jsonable(row), ensure_ascii=False) + "\n")
    tmp.replace(path)


def export_data(
    settings: Settings,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    fmt: str = "parquet",
) -> dict[str, Any]:
    """Write the export files into ``out`` (created if needed); returns the manifest."""
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", field="format")
    if since is not None and until is not None and since >= until:
        raise InputError("--since must be before --until", field="since")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory", field="out")
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "requests": _requests_table(settings, since, until),
        "kpis": as_table(
            compute_kpis(
                settings,
                KpiQuery(since=since, until=until, by=("plant_id", "model_version")),
            )
        ),
        "drift_history": as_table(read_history(settings, since=since, until=until)),
    }
    files = {}
    for name, table in tables.items():
        path = out / f"{name}.{fmt}"
        _write(table, path, fmt)
        files[name] = {"file": path.name, "rows": table.num_rows, "columns": table.column_names}
    manifest = {
        "since": _jsonable(since),
        "until": _jsonable(until),
        "format": fmt,
        "exported_at": _jsonable(datetime.now(UTC)),
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


__all__ = ["FORMATS", "ExportFormat", "export_data"]
