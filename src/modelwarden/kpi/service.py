"""KPI service: the KPI table per plant, model version and window, with changes."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from modelwarden.kpi.compute import KpiQuery, add_changes, kpi_expr
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store


def compute_kpis(settings: Settings, q: KpiQuery) -> list[dict[str, Any]]:
    """KPI rows for the query, each with its change against the previous window."""
    store = open_store(settings)
    con = store.connect()
    step = q.window_length()
    wide = q.model_copy(update={"since": q.since - step}) if (q.since and step) else q
    expr = kpi_expr(con.table("requests"), con.table("feedback"), con.table("escalations"), wide)
    rows = con.to_pyarrow(expr).to_pylist()
    for r in rows:
        ws = r["window_start"]
        if ws is not None and ws.tzinfo is None:
            r["window_start"] = ws.replace(tzinfo=UTC)
    rows = add_changes(rows, q)
    if q.since is not None and step is not None:
        # The extra window before ``since`` only fed the changes of the first window.
        rows = [r for r in rows if r["window_start"] + step > q.since]
    for r in rows:
        if r["window_start"] is None:
            r["window_start"] = q.since
    return rows
