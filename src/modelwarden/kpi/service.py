"""KPI service: the KPI table per plant, model version and window, with changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modelwarden.errors import InputError
from modelwarden.kpi import rollups
from modelwarden.kpi.compute import (
    CHANGES,
    METRICS,
    KpiQuery,
    Window,
    add_changes,
    kpi_expr,
    parse_by,
    parse_window,
)
from modelwarden.settings import Settings
from modelwarden.store.engines import to_arrow
from modelwarden.store.reads import open_store
from modelwarden.windows import parse_time


def kpi_query(
    since: str | None,
    until: str | None,
    window: str = "week",
    by: str | None = "plant_id",
    include_shadow: bool = False,
) -> KpiQuery:
    """The query from what a user typed (the CLI's options, the API's parameters)."""
    try:
        return KpiQuery(
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            window=parse_window(window),
            by=parse_by(by),
            include_shadow=include_shadow,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = str(err["loc"][0]) if err.get("loc") else "query"
        raise InputError(str(err["msg"]).removeprefix("Value error, "), field=field) from None


@dataclass
class KpiTable:
    """KPI rows and the query that made them; ``columns`` in the order people read them."""

    query: KpiQuery
    rows: list[dict[str, Any]]

    @property
    def columns(self) -> list[str]:
        return ["window_start", *self.query.by, *METRICS, *CHANGES]


def kpi_table(
    settings: Settings,
    since: str | None = None,
    until: str | None = None,
    window: str = "week",
    by: str | None = "plant_id",
    include_shadow: bool = False,
) -> KpiTable:
    """KPIs from what a user typed: what ``modelwarden kpis`` and ``GET /v1/kpis`` answer."""
    q = kpi_query(since, until, window, by, include_shadow)
    return KpiTable(q, compute_kpis(settings, q))


def rebuild_rollups(settings: Settings) -> dict[str, Any]:
    """Recompute the daily rollups from every stored record (ingest waits meanwhile)."""
    return rollups.rebuild(open_store(settings)).to_dict()


def compute_kpis(settings: Settings, q: KpiQuery, con: Any = None) -> list[dict[str, Any]]:
    """KPI rows for the query, each with its change against the previous window; ``con`` is a
    connection of the store to reuse (default: a new one)."""
    con = con if con is not None else open_store(settings).connect()
    step = q.window_length()
    wide = q.model_copy(update={"since": q.since - step}) if (q.since and step) else q
    expr = kpi_expr(con.table("requests"), con.table("feedback"), con.table("escalations"), wide)
    rows = to_arrow(con, expr).to_pylist()
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


def overview_kpis(
    settings: Settings, since: date, until: date, window: Window
) -> tuple[list[dict[str, Any]], str]:
    """KPI rows per ``window`` (day or week), plant and model version over the whole UTC days
    ``[since, until)``, with their changes; and where they came from: the daily ``rollups`` when
    they are built (no scan of the requests), else an ``exact`` computation over the store."""
    t0 = datetime(since.year, since.month, since.day, tzinfo=UTC)
    t1 = datetime(until.year, until.month, until.day, tzinfo=UTC)
    q = KpiQuery(since=t0, until=t1, window=window, by=("plant_id", "model_version"))
    store = open_store(settings)
    if not rollups.built(store):
        return compute_kpis(settings, q), "exact"
    step = q.window_length() or timedelta(days=1)
    rows = add_changes(rollups.kpis(store, since - step, until, window), q)
    return [r for r in rows if r["window_start"] + step > t0], "rollups"


def last_day(settings: Settings) -> date | None:
    """The UTC day of the last stored request: from the rollups when built (no scan)."""
    store = open_store(settings)
    if rollups.built(store):
        span = rollups.day_range(store)
        return span[1] if span else None
    if not store.files("requests"):
        return None
    con = store.connect()
    t = con.table("requests")
    hi = con.to_pyarrow(t.aggregate(hi=t.timestamp.max())).to_pylist()[0]["hi"]
    return hi.astimezone(UTC).date() if hi is not None else None
