"""The weekly report written to a file: Markdown, HTML with its trend charts, or JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelwarden.errors import InputError
from modelwarden.report.html import render_html
from modelwarden.report.weekly import TREND_WEEKS, WeeklyReport, render_markdown
from modelwarden.settings import Settings

__all__ = ["trend_rows", "write_report"]


def trend_rows(settings: Settings, rep: WeeklyReport) -> list[dict[str, Any]]:
    """Weekly KPIs per plant for the report's week and the weeks before it, for the charts."""
    # Imported here: the KPI queries need Ibis, DuckDB and Arrow, which a Markdown report on an
    # unchanged store never loads (most of its start-up).
    from modelwarden.kpi.compute import KpiQuery
    from modelwarden.kpi.service import compute_kpis
    from modelwarden.store.reads import require_data

    lo, _ = require_data(settings)
    since = max(rep.start - timedelta(weeks=TREND_WEEKS - 1), lo - timedelta(weeks=1))
    return compute_kpis(
        settings, KpiQuery(since=since, until=rep.end, window="week", by=("plant_id",))
    )


def write_report(rep: WeeklyReport, out: Path | None, settings: Settings, fmt: str = "md") -> Path:
    """Write the report as Markdown, HTML (with trend charts) or JSON; returns the path."""
    if fmt not in ("md", "html", "json"):
        raise InputError("format must be md, html or json", field="format")
    path = out or settings.reports_dir / f"weekly-{rep.week}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        text = json.dumps(rep.to_dict(), indent=2, default=str)
    elif fmt == "html":
        text = render_html(rep, trend_rows(settings, rep))
    else:
        text = render_markdown(rep)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
