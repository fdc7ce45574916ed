"""KPIs per window and group, as Ibis expressions (DuckDB by default, Spark when it outgrows one box).

Definitions, per window (UTC day, ISO week starting Monday, or the whole range) and group:

- ``requests``: requests served to users (shadow copies are left out unless asked for);
- ``latency_avg_ms``, ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``: mean and
  percentiles of ``latency_ms`` with linear interpolation between closest ranks (numpy's default);
- ``feedback_avg``, ``feedback_n``: mean and count of the effective feedback score, which is the
  latest feedback event for the request if any, else the record's ``human_feedback_score``;
- ``safety_incidents``, ``safety_rate``: responses with ``contains_safety_keyword`` and their share;
- ``errors``: requests with an ``error``;
- ``escalations_confirmed``: confirmed escalations whose own timestamp falls in the window,
  attributed to the plant and version of the request they are about;
- changes against the previous window of the same group: ``requests_change_pct``,
  ``latency_p95_change_pct``, ``feedback_avg_change`` (points) and ``safety_rate_change_pp``
  (percentage points).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from pydantic import BaseModel, Field, field_validator

from modelwarden.errors import InputError
from modelwarden.store.engines import epoch_micros

Window = Literal["day", "week", "all"]
GROUPABLE = ("plant_id", "model_version", "route")
METRICS = (
    "requests",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "feedback_avg",
    "feedback_n",
    "safety_incidents",
    "safety_rate",
    "errors",
    "escalations_confirmed",
)
CHANGES = (
    "requests_change_pct",
    "latency_p95_change_pct",
    "feedback_avg_change",
    "safety_rate_change_pp",
)


class KpiQuery(BaseModel):
    """What to compute: a time range (``until`` exclusive), a window size and grouping columns."""

    since: datetime | None = None
    until: datetime | None = None
    window: Window = "week"
    by: tuple[str, ...] = Field(default=("plant_id",))
    include_shadow: bool = False

    @field_validator("by")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if c not in GROUPABLE:
                raise ValueError(f"cannot group by {c!r}; choose from {', '.join(GROUPABLE)}")
        if len(set(v)) != len(v):
            raise ValueError("a grouping column is repeated")
        return v

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("times must carry a time zone")
        return v

    def window_length(self) -> timedelta | None:
        return {"day": timedelta(days=1), "week": timedelta(weeks=1)}.get(self.window)


_DAY_US = 86_400_000_000
_WEEK_US = 7 * _DAY_US
# 1970-01-01 was a Thursday; ISO weeks start on the Monday three days before.
_WEEK_SHIFT_US = 3 * _DAY_US


def _window_key(ts: ir.TimestampValue, window: Window) -> ir.IntegerValue:
    """The window of each timestamp as an integer (cheap to group by, see ``epoch_micros``)."""
    if window == "all":
        return ibis.literal(0, type="int64")
    us = epoch_micros(ts)
    if window == "day":
        return us // _DAY_US
    return (us + _WEEK_SHIFT_US) // _WEEK_US


def _window_start(key: ir.IntegerValue, window: Window) -> ir.Value:
    """The start of a window from its key, in UTC."""
    if window == "all":
        return ibis.literal(None, type="timestamp('UTC')")
    seconds = key * 86_400 if window == "day" else key * 604_800 - 259_200
    return seconds.as_timestamp("s").cast("timestamp('UTC')")


def _served(table: ir.Table, include_shadow: bool) -> ir.Table:
    """Requests answered to users; shadow copies only when asked for."""
    if include_shadow:
        return table
    return table.filter(table.route.isnull() | (table.route != "shadow"))


def _in_range(table: ir.Table, since: datetime | None, until: datetime | None) -> ir.Table:
    if since is not None:
        table = table.filter(table.timestamp >= since)
    if until is not None:
        table = table.filter(table.timestamp < until)
    return table


def latest_feedback(feedback: ir.Table, name: str) -> ir.Table:
    """Per request with feedback events, the score of the latest one, in column ``name``."""
    return feedback.group_by("request_id").agg(**{name: feedback.score.argmax(feedback.timestamp)})


def effective_feedback(requests: ir.Table, feedback: ir.Table) -> ir.Table:
    """Requests with a ``score`` column: the latest feedback event, else the inline score."""
    latest = latest_feedback(feedback, "fb_score")
    joined = requests.left_join(latest, "request_id")
    return joined.mutate(
        score=ibis.coalesce(
            joined.fb_score.cast("float64"), joined.human_feedback_score.cast("float64")
        )
    ).drop("fb_score", *(["request_id_right"] if "request_id_right" in joined.columns else []))


def kpi_expr(
    requests: ir.Table, feedback: ir.Table, escalations: ir.Table, q: KpiQuery
) -> ir.Table:
    """One row per window and group with the KPIs above, except the changes (see :func:`add_changes`)."""
    r = _in_range(_served(requests, q.include_shadow), q.since, q.until)
    r = r.mutate(
        window_key=_window_key(r.timestamp, q.window),
        inline=r.human_feedback_score.cast("float64"),
    )
    keys = ["window_key", *q.by]
    lat = r.latency_ms
    agg = r.group_by(keys).agg(
        requests=r.count(),
        latency_avg_ms=lat.mean(),
        # One multi-quantile aggregate selects all three ranks in a single pass per group.
        latency_q=lat.quantile([0.5, 0.95, 0.99]),
        fb_sum=r.inline.sum(),
        fb_n=r.inline.count(),
        safety_incidents=r.contains_safety_keyword.fill_null(False).cast("int64").sum(),
        errors=r.error.notnull().cast("int64").sum(),
    )
    # Feedback events override the inline score of their request. Rather than joining every
    # request to the events (which reads every request id even when there are no events), the
    # requests that have events are joined on their own and their change to the sums is added.
    # The rated requests are built from the table itself, not from ``r``: a shared subexpression
    # becomes a materialised CTE holding every request id.
    rated = latest_feedback(feedback, "event").inner_join(requests, "request_id")
    rated = _served(rated, q.include_shadow)
    rated = _in_range(rated, q.since, q.until)
    rated = rated.mutate(
        window_key=_window_key(rated.timestamp, q.window),
        inline=rated.human_feedback_score.cast("float64"),
        event=rated.event.cast("float64"),
    )
    delta = rated.group_by(keys).agg(
        d_sum=rated.event.sum() - rated.inline.sum().fill_null(0.0),
        d_n=rated.event.count() - rated.inline.count(),
    )
    delta = delta.rename({f"{k}_fb": k for k in keys})
    agg = agg.left_join(delta, [agg[k].identical_to(delta[f"{k}_fb"]) for k in keys])
    agg = agg.drop(*(f"{k}_fb" for k in keys))
    fb_sum = ibis.coalesce(agg.fb_sum, 0.0) + agg.d_sum.fill_null(0.0)
    fb_n = agg.fb_n + agg.d_n.fill_null(0)
    agg = agg.mutate(
        latency_p50_ms=agg.latency_q[0],
        latency_p95_ms=agg.latency_q[1],
        latency_p99_ms=agg.latency_q[2],
        feedback_avg=ibis.ifelse(fb_n > 0, fb_sum / fb_n, ibis.null("float64")),
        feedback_n=fb_n,
        safety_rate=agg.safety_incidents.cast("float64") / agg.requests,
    ).drop("latency_q", "fb_sum", "fb_n", "d_sum", "d_n")

    e = escalations.filter(escalations.confirmed)
    e = _in_range(e, q.since, q.until)
    req_keys = requests.select("request_id", *q.by)
    e = e.select("request_id", "timestamp").inner_join(req_keys, "request_id")
    e = e.mutate(window_key=_window_key(e.timestamp, q.window))
    esc = e.group_by(keys).agg(escalations_confirmed=e.count())
    esc = esc.rename({f"{k}_esc": k for k in keys})
    # A full outer join keeps escalations about a group with no requests in that window (a
    # version rolled back on Sunday and escalated on Monday); keys can be NULL (the "all"
    # window, records without a route), so they are matched null-safely.
    out = agg.outer_join(esc, [agg[k].identical_to(esc[f"{k}_esc"]) for k in keys])
    out = out.mutate(
        **{k: ibis.coalesce(out[k], out[f"{k}_esc"]) for k in keys},
        requests=out.requests.fill_null(0),
        feedback_n=out.feedback_n.fill_null(0),
        safety_incidents=out.safety_incidents.fill_null(0),
        errors=out.errors.fill_null(0),
        escalations_confirmed=out.escalations_confirmed.fill_null(0),
    )
    out = out.mutate(window_start=_window_start(out.window_key, q.window))
    out = out.select("window_start", *q.by, *METRICS)
    return out.order_by(["window_start", *q.by])


def _pct(new: Any, old: Any) -> float | None:
    if new is None or old in (None, 0):
        return None
    return (float(new) - float(old)) / float(old) * 100.0


def _diff(new: Any, old: Any, scale: float = 1.0) -> float | None:
    if new is None or old is None:
        return None
    return (float(new) - float(old)) * scale


def add_changes(rows: list[dict[str, Any]], q: KpiQuery) -> list[dict[str, Any]]:
    """Add the change against the previous window of the same group (None when there is none)."""
    step = q.window_length()
    prev: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in sorted(
        rows, key=lambda r: (tuple(str(r.get(c)) for c in q.by), r["window_start"] or datetime.min)
    ):
        key = tuple(row.get(c) for c in q.by)
        before = prev.get(key)
        consecutive = (
            before is not None
            and step is not None
            and row["window_start"] - before["window_start"] == step
        )
        old = before if consecutive else None
        row["requests_change_pct"] = _pct(row["requests"], old and old["requests"])
        row["latency_p95_change_pct"] = _pct(row["latency_p95_ms"], old and old["latency_p95_ms"])
        row["feedback_avg_change"] = _diff(row["feedback_avg"], old and old["feedback_avg"])
        row["safety_rate_change_pp"] = _diff(row["safety_rate"], old and old["safety_rate"], 100.0)
        prev[key] = row
    return rows


def parse_window(value: str) -> Window:
    if value not in ("day", "week", "all"):
        raise InputError("window must be day, week or all", field="window")
    return value  # type: ignore[return-value]


def parse_by(value: str | None) -> tuple[str, ...]:
    if value is None or value.strip() == "":
        return ()
    cols = tuple(c.strip() for c in value.split(",") if c.strip())
    for c in cols:
        if c not in GROUPABLE:
            raise InputError(
                f"cannot group by {c!r}; choose from {', '.join(GROUPABLE)}", field="by"
            )
    return cols
