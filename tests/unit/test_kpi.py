"""KPIs computed by the Ibis expressions on DuckDB against an independent numpy computation."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from modelwarden.errors import InputError
from modelwarden.kpi.compute import METRICS, KpiQuery, add_changes, kpi_expr, parse_by, parse_window
from modelwarden.store.duckdb_sql import ibis_connect
from modelwarden.store.schema import SCHEMAS

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday: ISO week 2026-W45
DAYS = 21
END = START + timedelta(days=DAYS)
PLANTS = ("Plant_A", "Plant_B", "Plant_C")
STABLE, CANARY = "sop-assistant-v1.1", "sop-assistant-v1.2"

Row = dict[str, Any]


# ---- seeded data -------------------------------------------------------------------------------
def _make_data(seed: int) -> tuple[list[Row], list[Row], list[Row]]:
    rng = np.random.default_rng(seed)
    requests: list[Row] = []
    feedback: list[Row] = []
    escalations: list[Row] = []
    n = 0
    for d in range(DAYS):
        day = START + timedelta(days=d)
        for plant in PLANTS:
            for _ in range(int(rng.integers(12, 20))):
                n += 1
                ts = day + timedelta(
                    seconds=int(rng.integers(0, 86_400)),
                    microseconds=int(rng.integers(0, 1_000_000)),
                )
                canary = plant == "Plant_B" and rng.random() < 0.3
                route = (
                    "canary"
                    if canary
                    else "shadow"
                    if rng.random() < 0.1
                    else None
                    if rng.random() < 0.2
                    else "stable"
                )
                requests.append(
                    {
                        "request_id": f"r{n:05d}",
                        "timestamp": ts,
                        "plant_id": plant,
                        "model_version": CANARY if canary or route == "shadow" else STABLE,
                        "user_prompt": "q",
                        "generated_response": "a",
                        "latency_ms": float(np.round(rng.lognormal(5.6, 0.5), 1)),
                        "human_feedback_score": (
                            int(rng.integers(1, 6)) if rng.random() < 0.5 else None
                        ),
                        "contains_safety_keyword": (
                            None if rng.random() < 0.1 else bool(rng.random() < 0.08)
                        ),
                        "route": route,
                        "error": "upstream timeout" if rng.random() < 0.03 else None,
                    }
                )
    # Requests right at the edges of days and ISO weeks (Sunday night / Monday morning UTC).
    edges = [
        datetime(2026, 11, 8, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 9, 0, 0, tzinfo=UTC),
        # Monday 00:30 in UTC+2 is still Sunday in UTC: it belongs to the earlier week.
        datetime(2026, 11, 16, 0, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 16, 0, 0, tzinfo=UTC),
    ]
    for i, ts in enumerate(edges):
        requests.append(
            {
                "request_id": f"edge{i}",
                "timestamp": ts,
                "plant_id": "Plant_A",
                "model_version": STABLE,
                "user_prompt": "q",
                "generated_response": "a",
                "latency_ms": 100.0 * (i + 1),
                "human_feedback_score": 5,
                "contains_safety_keyword": False,
                "route": "stable",
                "error": None,
            }
        )
    e = 0
    for r in requests:
        # Feedback events that arrive later; the latest one is the request's score.
        if rng.random() < 0.3:
            for k in range(int(rng.integers(1, 4))):
                e += 1
                feedback.append(
                    {
                        "event_id": f"f{e:05d}",
                        "request_id": r["request_id"],
                        "timestamp": r["timestamp"]
                        + timedelta(minutes=5 + 90 * k, seconds=float(rng.random())),
                        "score": int(rng.integers(1, 6)),
                    }
                )
        # Up to two days later: some land in the next day or week (none after the data ends).
        ets = r["timestamp"] + timedelta(minutes=float(rng.uniform(1, 2880)))
        if r["route"] != "shadow" and rng.random() < 0.12 and ets < END:
            e += 1
            escalations.append(
                {
                    "event_id": f"e{e:05d}",
                    "request_id": r["request_id"],
                    "timestamp": ets,
                    "reason": "wrong answer",
                    "category": "incorrect",
                    "confirmed": bool(rng.random() < 0.6),
                }
            )
    # Feedback about a request that is not stored is ignored.
    feedback.append({"event_id": "orphan", "request_id": "nope", "timestamp": START, "score": 1})
    rng_order = random.Random(seed)
    for rows in (requests, feedback, escalations):
        rng_order.shuffle(rows)
    return requests, feedback, escalations


def _arrow(kind: str, rows: list[Row]) -> pa.Table:
    schema = SCHEMAS[kind]
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)


class Kpis:
    """Runs ``kpi_expr`` on DuckDB through Ibis over registered Arrow tables."""

    def __init__(self, requests: list[Row], feedback: list[Row], escalations: list[Row]) -> None:
        self.con = ibis_connect(threads=1)
        for kind, rows in (
            ("requests", requests),
            ("feedback", feedback),
            ("escalations", escalations),
        ):
            self.con.con.register(kind, _arrow(kind, rows))

    def run(self, q: KpiQuery) -> list[Row]:
        expr = kpi_expr(
            self.con.table("requests"), self.con.table("feedback"), self.con.table("escalations"), q
        )
        rows = self.con.to_pyarrow(expr).to_pylist()
        for r in rows:
            ws = r["window_start"]
            if ws is not None:
                assert ws.tzinfo is None or ws.utcoffset() == timedelta(0)
                r["window_start"] = ws.replace(tzinfo=UTC)
        return rows


# ---- the independent computation ---------------------------------------------------------------
def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


def _window(ts: datetime, window: str) -> datetime | None:
    t = _utc(ts)
    if window == "all":
        return None
    d: date = t.date()
    if window == "week":
        d = d - timedelta(days=d.isoweekday() - 1)  # Monday of the ISO week
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _in(ts: datetime, q: KpiQuery) -> bool:
    return (q.since is None or ts >= q.since) and (q.until is None or ts < q.until)


def expected_kpis(
    requests: list[Row], feedback: list[Row], escalations: list[Row], q: KpiQuery
) -> dict[tuple[Any, ...], Row]:
    latest: dict[str, tuple[datetime, int]] = {}
    for f in feedback:
        t = _utc(f["timestamp"])
        if f["request_id"] not in latest or t > latest[f["request_id"]][0]:
            latest[f["request_id"]] = (t, f["score"])
    by_id = {r["request_id"]: r for r in requests}
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in requests:
        if r["route"] == "shadow" and not q.include_shadow:
            continue
        if not _in(r["timestamp"], q):
            continue
        groups[(_window(r["timestamp"], q.window), *(r[c] for c in q.by))].append(r)
    esc: dict[tuple[Any, ...], int] = defaultdict(int)
    for e in escalations:
        if e["confirmed"] and _in(e["timestamp"], q) and e["request_id"] in by_id:
            r = by_id[e["request_id"]]
            esc[(_window(e["timestamp"], q.window), *(r[c] for c in q.by))] += 1
    uncovered = set(esc) - set(groups)
    assert not uncovered, f"test data: escalations in windows without requests {uncovered}"
    out: dict[tuple[Any, ...], Row] = {}
    for key, rows in groups.items():
        lat = np.array([r["latency_ms"] for r in rows])
        scores = [
            latest[r["request_id"]][1] if r["request_id"] in latest else r["human_feedback_score"]
            for r in rows
        ]
        scores = [s for s in scores if s is not None]
        safety = sum(1 for r in rows if r["contains_safety_keyword"])
        out[key] = {
            "requests": len(rows),
            "latency_avg_ms": float(np.mean(lat)),
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p95_ms": float(np.percentile(lat, 95)),
            "latency_p99_ms": float(np.percentile(lat, 99)),
            "feedback_avg": float(np.mean(scores)) if scores else None,
            "feedback_n": len(scores),
            "safety_incidents": safety,
            "safety_rate": safety / len(rows),
            "errors": sum(1 for r in rows if r["error"]),
            "escalations_confirmed": esc.get(key, 0),
        }
    return out


def _keyed(rows: list[Row], q: KpiQuery) -> dict[tuple[Any, ...], Row]:
    out = {}
    for r in rows:
        key = (r["window_start"], *(r[c] for c in q.by))
        assert key not in out, f"duplicate row {key}"
        out[key] = {m: r[m] for m in METRICS}
    return out


def _assert_same(got: dict[tuple[Any, ...], Row], want: dict[tuple[Any, ...], Row]) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)
    for key, w in want.items():
        g = got[key]
        for m in METRICS:
            if w[m] is None or isinstance(w[m], int):
                assert g[m] == w[m], (key, m)
            else:
                assert g[m] == pytest.approx(w[m], rel=1e-9, abs=1e-9), (key, m)


@pytest.fixture(scope="module")
def data() -> tuple[list[Row], list[Row], list[Row]]:
    return _make_data(seed=20261102)


@pytest.fixture(scope="module")
def kpis(data: tuple[list[Row], list[Row], list[Row]]) -> Kpis:
    return Kpis(*data)


QUERIES = {
    "week by plant": KpiQuery(window="week", by=("plant_id",)),
    "week by plant and version": KpiQuery(window="week", by=("plant_id", "model_version")),
    "day by plant": KpiQuery(window="day", by=("plant_id",)),
    "week overall": KpiQuery(window="week", by=()),
    "one week by plant": KpiQuery(
        since=datetime(2026, 11, 9, tzinfo=UTC),
        until=datetime(2026, 11, 16, tzinfo=UTC),
        window="week",
    ),
    "days of one week by plant": KpiQuery(
        since=datetime(2026, 11, 9, tzinfo=UTC),
        until=datetime(2026, 11, 16, tzinfo=UTC),
        window="day",
        by=("plant_id",),
    ),
    "week by plant with shadow": KpiQuery(window="week", by=("plant_id",), include_shadow=True),
    "week by version with shadow": KpiQuery(
        window="week", by=("model_version",), include_shadow=True
    ),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_kpis_match_numpy(
    kpis: Kpis, data: tuple[list[Row], list[Row], list[Row]], name: str
) -> None:
    q = QUERIES[name]
    got = kpis.run(q)
    assert got, "the query returned no rows"
    # Rows come ordered by window, then the grouping columns.
    keys = [(r["window_start"], *(r[c] for c in q.by)) for r in got]
    assert keys == sorted(keys)
    _assert_same(_keyed(got, q), expected_kpis(*data, q))


def test_week_windows_are_iso_weeks_in_utc(kpis: Kpis) -> None:
    rows = kpis.run(KpiQuery(window="week", by=()))
    starts = [r["window_start"] for r in rows]
    assert starts == [
        datetime(2026, 11, 2, tzinfo=UTC),
        datetime(2026, 11, 9, tzinfo=UTC),
        datetime(2026, 11, 16, tzinfo=UTC),
    ]
    assert all(s.isoweekday() == 1 for s in starts)


def test_edge_requests_fall_in_the_right_week() -> None:
    edges = [
        ("sun", datetime(2026, 11, 8, 23, 59, 59, 999_999, tzinfo=UTC), 10.0),
        ("mon", datetime(2026, 11, 9, 0, 0, tzinfo=UTC), 20.0),
        ("mon+2", datetime(2026, 11, 9, 1, 0, tzinfo=timezone(timedelta(hours=2))), 40.0),
    ]
    reqs = [
        {
            "request_id": i,
            "timestamp": ts,
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "a",
            "latency_ms": lat,
        }
        for i, ts, lat in edges
    ]
    rows = Kpis(reqs, [], []).run(KpiQuery(window="week", by=()))
    assert [(r["window_start"], r["requests"], r["latency_avg_ms"]) for r in rows] == [
        (datetime(2026, 11, 2, tzinfo=UTC), 2, 25.0),
        (datetime(2026, 11, 9, tzinfo=UTC), 1, 20.0),
    ]


def test_shadow_is_left_out_by_default(
    kpis: Kpis, data: tuple[list[Row], list[Row], list[Row]]
) -> None:
    requests = data[0]
    n_shadow = sum(1 for r in requests if r["route"] == "shadow")
    assert n_shadow > 0
    without = sum(r["requests"] for r in kpis.run(KpiQuery(window="all", by=())))
    with_shadow = sum(
        r["requests"] for r in kpis.run(KpiQuery(window="all", by=(), include_shadow=True))
    )
    assert without == len(requests) - n_shadow
    assert with_shadow == len(requests)


def test_late_feedback_overrides_inline_score() -> None:
    reqs = [
        {
            "request_id": "a",
            "timestamp": START,
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
            "human_feedback_score": 5,
        },
        {
            "request_id": "b",
            "timestamp": START,
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
            "human_feedback_score": 4,
        },
        {
            "request_id": "c",
            "timestamp": START,
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        },
    ]
    fb = [
        # Listed out of order: the latest event wins, not the last one written.
        {"event_id": "2", "request_id": "a", "timestamp": START + timedelta(hours=3), "score": 1},
        {"event_id": "1", "request_id": "a", "timestamp": START + timedelta(hours=1), "score": 3},
        {"event_id": "3", "request_id": "c", "timestamp": START + timedelta(days=30), "score": 2},
    ]
    rows = Kpis(reqs, fb, []).run(KpiQuery(window="all", by=()))
    assert len(rows) == 1
    # a → 1 (latest event), b → 4 (inline), c → 2 (event long after the window).
    assert rows[0]["feedback_n"] == 3
    assert rows[0]["feedback_avg"] == pytest.approx((1 + 4 + 2) / 3)


def test_confirmed_escalations_count_by_their_own_time() -> None:
    reqs = [
        {
            "request_id": "a",
            "timestamp": datetime(2026, 11, 8, 22, tzinfo=UTC),
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        },
        {
            "request_id": "b",
            "timestamp": datetime(2026, 11, 10, tzinfo=UTC),
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        },
    ]
    esc = [
        {
            "event_id": "1",
            "request_id": "a",
            "timestamp": datetime(2026, 11, 9, 3, tzinfo=UTC),
            "reason": "r",
            "confirmed": True,
        },
        {
            "event_id": "2",
            "request_id": "a",
            "timestamp": datetime(2026, 11, 8, 23, tzinfo=UTC),
            "reason": "r",
            "confirmed": True,
        },
        {
            "event_id": "3",
            "request_id": "b",
            "timestamp": datetime(2026, 11, 10, 1, tzinfo=UTC),
            "reason": "r",
            "confirmed": False,
        },
        {
            "event_id": "4",
            "request_id": "b",
            "timestamp": datetime(2026, 11, 17, tzinfo=UTC),
            "reason": "r",
            "confirmed": True,
        },
    ]
    k = Kpis(reqs, [], esc)
    weekly = k.run(KpiQuery(window="week", by=("plant_id",)))
    assert [
        (r["window_start"].date(), r["requests"], r["escalations_confirmed"]) for r in weekly
    ] == [(date(2026, 11, 2), 1, 1), (date(2026, 11, 9), 1, 1), (date(2026, 11, 16), 0, 1)]
    one_week = k.run(
        KpiQuery(
            since=datetime(2026, 11, 9, tzinfo=UTC),
            until=datetime(2026, 11, 16, tzinfo=UTC),
            window="week",
        )
    )
    # Request "a" is before the range, but its escalation of Monday is inside it.
    assert [(r["requests"], r["escalations_confirmed"]) for r in one_week] == [(1, 1)]


def test_escalations_about_a_retired_version_are_not_lost() -> None:
    """A version rolled back on Sunday still collects escalations on Monday.

    Every confirmed escalation in the range must be counted in some row; a group with no
    requests in the escalation's window still has to report it.
    """
    reqs = [
        {
            "request_id": "old",
            "timestamp": datetime(2026, 11, 8, 20, tzinfo=UTC),
            "plant_id": "Plant_B",
            "model_version": CANARY,
            "route": "canary",
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        },
        {
            "request_id": "new",
            "timestamp": datetime(2026, 11, 10, tzinfo=UTC),
            "plant_id": "Plant_B",
            "model_version": STABLE,
            "route": "stable",
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        },
    ]
    esc = [
        {
            "event_id": "1",
            "request_id": "old",
            "reason": "unsafe",
            "confirmed": True,
            "timestamp": datetime(2026, 11, 9, 8, tzinfo=UTC),
        }
    ]
    rows = Kpis(reqs, [], esc).run(KpiQuery(window="week", by=("plant_id", "model_version")))
    assert sum(r["escalations_confirmed"] for r in rows) == 1
    assert [
        (r["window_start"].date(), r["model_version"], r["escalations_confirmed"])
        for r in rows
        if r["escalations_confirmed"]
    ] == [(date(2026, 11, 9), CANARY, 1)]


def test_escalations_are_counted_over_the_whole_range(
    kpis: Kpis, data: tuple[list[Row], list[Row], list[Row]]
) -> None:
    confirmed = sum(1 for e in data[2] if e["confirmed"])
    assert confirmed > 0
    rows = kpis.run(KpiQuery(window="all", by=("plant_id",)))
    assert sum(r["escalations_confirmed"] for r in rows) == confirmed


def test_escalations_are_counted_for_records_without_a_route() -> None:
    # The seed's schema has no route: grouping by route must still count escalations.
    reqs = [
        {
            "request_id": "a",
            "timestamp": START,
            "plant_id": "P",
            "model_version": STABLE,
            "user_prompt": "q",
            "generated_response": "x",
            "latency_ms": 1.0,
        }
    ]
    esc = [
        {
            "event_id": "1",
            "request_id": "a",
            "reason": "r",
            "confirmed": True,
            "timestamp": START + timedelta(hours=1),
        }
    ]
    rows = Kpis(reqs, [], esc).run(KpiQuery(window="week", by=("route",)))
    assert [(r["route"], r["requests"], r["escalations_confirmed"]) for r in rows] == [(None, 1, 1)]


def test_empty_tables_give_no_rows() -> None:
    assert Kpis([], [], []).run(KpiQuery()) == []


# ---- changes against the previous window -------------------------------------------------------
def _row(
    plant: str, week: date, requests: int, p95: float | None, fb: float | None, safety: float
) -> Row:
    return {
        "window_start": datetime(week.year, week.month, week.day, tzinfo=UTC),
        "plant_id": plant,
        "requests": requests,
        "latency_p95_ms": p95,
        "feedback_avg": fb,
        "safety_rate": safety,
    }


def _changes(row: Row) -> tuple[Any, ...]:
    return (
        row["requests_change_pct"],
        row["latency_p95_change_pct"],
        row["feedback_avg_change"],
        row["safety_rate_change_pp"],
    )


def test_add_changes_exact_deltas() -> None:
    w1, w2, w3, w5 = date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 30)
    rows = [
        _row("A", w2, 120, 250.0, 3.5, 0.025),
        _row("B", w2, 50, 300.0, None, 0.0),
        _row("A", w1, 100, 200.0, 4.0, 0.01),
        _row("A", w3, 90, 250.0, 3.5, 0.025),
        _row("A", w5, 10, 100.0, 5.0, 0.0),  # week 4 is missing: no previous window
        _row("B", w3, 40, 150.0, 4.0, 0.05),
    ]
    out = add_changes(rows, KpiQuery(window="week"))
    got = {(r["plant_id"], r["window_start"].date()): _changes(r) for r in out}
    assert got[("A", w1)] == (None, None, None, None)
    assert got[("A", w2)] == pytest.approx((20.0, 25.0, -0.5, 1.5))
    assert got[("A", w3)] == pytest.approx((-25.0, 0.0, 0.0, 0.0))
    assert got[("A", w5)] == (None, None, None, None)
    assert got[("B", w2)] == (None, None, None, None)
    b3 = got[("B", w3)]
    assert b3[0] == pytest.approx(-20.0)
    assert b3[1] == pytest.approx(-50.0)
    assert b3[2] is None  # no feedback the week before
    assert b3[3] == pytest.approx(5.0)


def test_add_changes_by_day_and_overall() -> None:
    d1 = {
        "window_start": datetime(2026, 11, 2, tzinfo=UTC),
        "requests": 10,
        "latency_p95_ms": 100.0,
        "feedback_avg": 4.0,
        "safety_rate": 0.1,
    }
    d2 = {
        "window_start": datetime(2026, 11, 3, tzinfo=UTC),
        "requests": 15,
        "latency_p95_ms": 80.0,
        "feedback_avg": 4.25,
        "safety_rate": 0.0,
    }
    out = add_changes([d2, d1], KpiQuery(window="day", by=()))
    assert _changes(d1) == (None, None, None, None)
    assert _changes(d2) == pytest.approx((50.0, -20.0, 0.25, -10.0))
    assert len(out) == 2
    # The same two rows as weeks are not consecutive.
    d1b, d2b = dict(d1), dict(d2)
    add_changes([d1b, d2b], KpiQuery(window="week", by=()))
    assert _changes(d2b) == (None, None, None, None)


def test_add_changes_on_computed_weeks(kpis: Kpis) -> None:
    q = KpiQuery(window="week", by=("plant_id",))
    rows = add_changes(kpis.run(q), q)
    by = {(r["plant_id"], r["window_start"]): r for r in rows}
    for (plant, ws), r in by.items():
        prev = by.get((plant, ws - timedelta(weeks=1)))
        if prev is None:
            assert _changes(r) == (None, None, None, None)
            continue
        assert r["requests_change_pct"] == pytest.approx(
            (r["requests"] - prev["requests"]) / prev["requests"] * 100
        )
        assert r["latency_p95_change_pct"] == pytest.approx(
            (r["latency_p95_ms"] - prev["latency_p95_ms"]) / prev["latency_p95_ms"] * 100
        )
        assert r["feedback_avg_change"] == pytest.approx(r["feedback_avg"] - prev["feedback_avg"])
        assert r["safety_rate_change_pp"] == pytest.approx(
            (r["safety_rate"] - prev["safety_rate"]) * 100
        )
    assert sum(1 for r in rows if r["requests_change_pct"] is not None) == 2 * len(PLANTS)


# ---- query parsing -----------------------------------------------------------------------------
def test_query_validation() -> None:
    assert parse_window("day") == "day"
    with pytest.raises(InputError) as info:
        parse_window("month")
    assert info.value.field == "window"
    assert parse_by("plant_id, model_version") == ("plant_id", "model_version")
    assert parse_by("") == ()
    with pytest.raises(InputError) as info:
        parse_by("plant_id,user_prompt")
    assert info.value.field == "by"
    with pytest.raises(ValueError, match="time zone"):
        KpiQuery(since=datetime(2026, 11, 2))
    with pytest.raises(ValueError, match="repeated"):
        KpiQuery(by=("plant_id", "plant_id"))
