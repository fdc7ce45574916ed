"""Daily KPI rollups: kept current batch by batch, equal to the exact KPIs, rebuildable."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelwarden.ingest.core import Ingestor
from modelwarden.kpi import rollups
from modelwarden.kpi.compute import KpiQuery
from modelwarden.kpi.service import compute_kpis, overview_kpis
from modelwarden.safety.checker import SafetyChecker
from modelwarden.settings import Settings
from modelwarden.simulate.traffic import SimulatedData
from modelwarden.store.reads import open_store

EXACT = (
    "requests",
    "feedback_n",
    "safety_incidents",
    "errors",
    "escalations_confirmed",
)
CLOSE = ("latency_avg_ms", "feedback_avg", "safety_rate")
PCT = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
BOUND = rollups.RATIO**0.5 - 1  # the stated error bound of a percentile (1.0 %)


def exact(settings: Settings, since: date, until: date, window: str) -> dict[Any, dict]:
    rows = compute_kpis(
        settings,
        KpiQuery(
            since=datetime(since.year, since.month, since.day, tzinfo=UTC),
            until=datetime(until.year, until.month, until.day, tzinfo=UTC),
            window=window,  # type: ignore[arg-type]
            by=("plant_id", "model_version"),
        ),
    )
    return {
        (r["window_start"], r["plant_id"], r["model_version"]): r
        for r in rows
        if r["requests"] or r["escalations_confirmed"]
    }


def assert_same(settings: Settings, since: date, until: date, window: str) -> int:
    want = exact(settings, since, until, window)
    got = {
        (r["window_start"], r["plant_id"], r["model_version"]): r
        for r in rollups.kpis(open_store(settings), since, until, window)
    }
    assert set(got) == set(want)
    worst = 0.0
    for k, w in want.items():
        g = got[k]
        for m in EXACT:
            assert g[m] == w[m], (k, m, g[m], w[m])
        for m in CLOSE:
            assert (g[m] is None) == (w[m] is None), (k, m)
            if w[m] is not None:
                assert g[m] == pytest.approx(w[m], rel=1e-9, abs=1e-9), (k, m)
        for m in PCT:
            if w[m] is None:
                assert g[m] is None
                continue
            err = abs(g[m] - w[m]) / w[m]
            worst = max(worst, err)
            assert err <= BOUND + 1e-9, (k, m, g[m], w[m])
    return len(want)


def test_rollups_rebuilt_from_the_store_equal_the_exact_kpis(
    seeded_data_dir: Path, tmp_path: Path, sim_data: SimulatedData, run_cli: Any
) -> None:
    data = tmp_path / "data"
    shutil.copytree(seeded_data_dir / "log", data / "log")
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    store = open_store(settings)
    since, until = date(2026, 11, 9), date(2026, 11, 23)
    assert not rollups.built(store)
    before, source = overview_kpis(settings, since, until, "week")
    assert source == "exact"
    rep = rollups.rebuild(store)
    assert rollups.built(store) and rep.requests == len(sim_data.requests)
    assert assert_same(settings, date(2026, 11, 2), until, "week") >= 12
    assert assert_same(settings, date(2026, 11, 2), until, "day") >= 80
    # The overview's rows, week-over-week changes included, now come from the rollups.
    after, source = overview_kpis(settings, since, until, "week")
    assert source == "rollups"
    want = {(r["window_start"], r["plant_id"], r["model_version"]): r for r in before}
    got = {(r["window_start"], r["plant_id"], r["model_version"]): r for r in after}
    assert got.keys() == {k for k, r in want.items() if r["requests"] or r["escalations_confirmed"]}
    for k, g in got.items():
        w = want[k]
        assert g["requests_change_pct"] == pytest.approx(w["requests_change_pct"])
        assert g["feedback_avg_change"] == pytest.approx(w["feedback_avg_change"])
        assert g["safety_rate_change_pp"] == pytest.approx(w["safety_rate_change_pp"])
        if w["latency_p95_change_pct"] is not None:  # a ratio of two values within 1 % each
            assert abs(g["latency_p95_change_pct"] - w["latency_p95_change_pct"]) < 2.5
    res = run_cli("rollups", "rebuild", "--format", "json", data=data)
    assert res.code == 0, res.err
    assert json.loads(res.out)["requests"] == len(sim_data.requests)


def test_batches_in_any_order_keep_the_rollups_exact(
    tmp_path: Path, sim_data: SimulatedData
) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)
    store = open_store(settings)
    rollups.rebuild(store)  # an empty store: built, and kept current from here on
    ing = Ingestor(store, SafetyChecker())
    reqs, fbs, escs = sim_data.requests, sim_data.feedback, sim_data.escalations
    rng = np.random.default_rng(7)

    def put(kind: str, rows: list[dict[str, Any]]) -> None:
        rep = ing.ingest_raw(kind, [(str(i), r) for i, r in enumerate(rows)], "t")
        assert rep.rejected == 0, rep.first_rejections

    # Feedback and escalations about requests not stored yet; requests in shuffled chunks; a
    # later feedback event overriding an earlier one, and an older one arriving late; resends.
    order = rng.permutation(len(reqs))
    chunks = np.array_split(order, 5)
    put("feedback", fbs[: len(fbs) // 3])
    put("escalations", escs[: len(escs) // 2])
    for i, chunk in enumerate(chunks):
        put("requests", [reqs[j] for j in chunk])
        if i == 1:
            put("feedback", fbs[len(fbs) // 3 :])
            put("escalations", escs[len(escs) // 2 :])
    put("requests", [reqs[j] for j in chunks[0]])  # a resent batch adds nothing
    rated = [r for r in reqs if r.get("human_feedback_score") is not None][:40]
    newer = [
        {
            "event_id": f"late-{r['request_id']}",
            "request_id": r["request_id"],
            "score": 1,
            "timestamp": (
                datetime.fromisoformat(str(r["timestamp"]).replace("Z", "+00:00"))
                + timedelta(days=3)
            ).isoformat(),
        }
        for r in rated
    ]
    older = [
        {**e, "event_id": f"old-{e['request_id']}", "score": 5, "timestamp": r["timestamp"]}
        for e, r in zip(newer, rated, strict=True)
    ]
    put("feedback", newer)
    put("feedback", older)  # older than the newest event: changes nothing
    since, until = date(2026, 11, 2), date(2026, 11, 24)
    assert assert_same(settings, since, until, "day") >= 80
    assert assert_same(settings, since, until, "week") >= 12
    before = rollups.kpis(store, since, until, "day")
    rollups.rebuild(store)
    after = rollups.kpis(store, since, until, "day")
    # The same sums, added in another order: equal up to floating-point rounding.
    assert len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        assert a.keys() == b.keys()
        for k, v in a.items():
            assert v == (pytest.approx(b[k], rel=1e-12) if isinstance(v, float) else b[k]), k


def test_percentiles_of_a_histogram_follow_numpy_within_the_bound() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(np.log(400), 0.6, 5000)
    buckets = np.where(
        x < 1, 0, np.minimum(rollups.N_BUCKETS - 1, 1 + np.floor(np.log(x) / np.log(rollups.RATIO)))
    ).astype(int)
    hist: dict[int, int] = {}
    for b in buckets:
        hist[int(b)] = hist.get(int(b), 0) + 1
    for q, got in zip((0.5, 0.95, 0.99), rollups.quantiles(hist, (0.5, 0.95, 0.99)), strict=True):
        want = float(np.quantile(x, q))
        assert got is not None and abs(got - want) / want <= BOUND
    assert rollups.quantiles({}, (0.5,)) == [None]
    assert rollups.quantiles({10: 1}, (0.5, 0.99)) == [rollups.bucket_value(10)] * 2


# ---- updates that read only their own batch ------------------------------------------------------
def _req(rid: str, ts: str, plant: str, score: int | None = None, latency: float = 100.0) -> dict:
    return {
        "request_id": rid,
        "timestamp": ts,
        "plant_id": plant,
        "model_version": "v1",
        "route": "stable",
        "user_prompt": "torque for the M8 bolts",
        "generated_response": "25 Nm.",
        "latency_ms": latency,
        "human_feedback_score": score,
        "contains_safety_keyword": False,
    }


def _fb(eid: str, rid: str, ts: str, score: int) -> dict:
    return {"event_id": eid, "request_id": rid, "timestamp": ts, "score": score}


def _esc(eid: str, rid: str, ts: str, confirmed: bool = True) -> dict:
    return {
        "event_id": eid,
        "request_id": rid,
        "timestamp": ts,
        "reason": "wrong torque",
        "confirmed": confirmed,
    }


class _Hidden:
    """Moves every stored Parquet file out of the log root and back: an update made meanwhile
    can only have read its own batch."""

    def __init__(self, root: Path, away: Path) -> None:
        self.root, self.away, self.moved = root, away, []

    def __enter__(self) -> None:
        for kind in ("requests", "feedback", "escalations"):
            for p in sorted((self.root / kind).rglob("*.parquet")):
                dst = self.away / p.relative_to(self.root)
                dst.parent.mkdir(parents=True, exist_ok=True)
                p.rename(dst)
                self.moved.append((dst, p))

    def __exit__(self, *exc: object) -> None:
        for dst, p in self.moved:
            dst.rename(p)


def test_updates_look_up_earlier_batches_without_reading_the_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)
    store = open_store(settings)
    ing = Ingestor(store, SafetyChecker())

    def put(kind: str, rows: list[dict[str, Any]]) -> None:
        rep = ing.ingest_raw(kind, [(str(i), r) for i, r in enumerate(rows)], "t")
        assert rep.rejected == 0, rep.first_rejections
        assert rep.accepted == len(rows)

    # Before the rollups are built an update does nothing (not even create the file).
    put("requests", [_req("a", "2026-10-05T08:00:00Z", "P1", score=3, latency=50.0)])
    assert not rollups.path_of(store).exists()
    rollups.rebuild(store)
    put("requests", [_req("b", "2026-10-05T09:00:00Z", "P1")])
    # Events about requests not stored yet: feedback, a confirmed and an unconfirmed escalation.
    put("feedback", [_fb("f-c", "c", "2026-11-03T12:00:00Z", 2)])
    put("escalations", [_esc("e-d", "d", "2026-11-04T12:00:00Z")])
    put("escalations", [_esc("e-d2", "d", "2026-11-04T13:00:00Z", confirmed=False)])
    # A request id stored on two days, by two plants.
    put("requests", [_req("e", "2026-11-03T10:00:00Z", "P2", score=4)])
    put("requests", [_req("e", "2026-11-04T10:00:00Z", "P1")])
    rollups.rebuild(store)  # the side tables are rebuilt too: updates carry on from them
    away = tmp_path / "away"
    with _Hidden(store.root, away):
        # Feedback for a request stored four weeks earlier; a newer event replaces it; an
        # event older than the latest changes nothing.
        put("feedback", [_fb("f-a1", "a", "2026-11-02T08:00:00Z", 5)])
        put("feedback", [_fb("f-a2", "a", "2026-11-03T08:00:00Z", 1)])
        put("feedback", [_fb("f-a0", "a", "2026-11-02T07:00:00Z", 4)])
        # The requests the events stored earlier were about.
        put("requests", [_req("c", "2026-11-03T11:00:00Z", "P1", score=5)])
        put("requests", [_req("d", "2026-11-03T11:30:00Z", "P2")])
        # Feedback and a confirmed escalation about the request stored on two days.
        put("feedback", [_fb("f-e", "e", "2026-11-05T08:00:00Z", 2)])
        put("escalations", [_esc("e-e", "e", "2026-11-05T09:00:00Z")])
    assert away.exists() and not list(away.rglob("*.parquet"))
    since, until = date(2026, 10, 5), date(2026, 11, 6)
    assert_same(settings, since, until, "day")
    assert_same(settings, since, until, "week")
    got = {
        (r["window_start"].date().isoformat(), r["plant_id"]): r
        for r in rollups.kpis(store, since, until, "day")
    }
    oct5 = got[("2026-10-05", "P1")]
    assert (oct5["requests"], oct5["feedback_n"], oct5["feedback_avg"]) == (2, 1, 1.0)
    nov3_p1 = got[("2026-11-03", "P1")]  # c: the event (2) overrides its inline score (5)
    assert (nov3_p1["requests"], nov3_p1["feedback_avg"]) == (1, 2.0)
    nov3_p2 = got[("2026-11-03", "P2")]  # e (its event 2 overrides 4) and d (no score)
    assert (nov3_p2["requests"], nov3_p2["feedback_n"], nov3_p2["feedback_avg"]) == (2, 1, 2.0)
    assert got[("2026-11-04", "P2")]["escalations_confirmed"] == 1  # about d, stored later
    nov4_p1 = got[("2026-11-04", "P1")]  # e's second row
    assert (nov4_p1["requests"], nov4_p1["feedback_avg"]) == (1, 2.0)
    # The escalation about e counts once per stored row of e, as the exact KPIs count it.
    assert got[("2026-11-05", "P1")]["escalations_confirmed"] == 1
    assert got[("2026-11-05", "P2")]["escalations_confirmed"] == 1
    before = rollups.kpis(store, since, until, "day")
    rollups.rebuild(store)
    assert rollups.kpis(store, since, until, "day") == before


def test_an_update_waits_for_a_running_rebuild(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embedder="hashing", embed_threads=1)
    store = open_store(settings)
    ing = Ingestor(store, SafetyChecker())
    rollups.rebuild(store)
    ing.ingest_raw("requests", [("1", _req("a", "2026-11-03T08:00:00Z", "P1", score=2))], "t")
    done = threading.Event()

    def ingest() -> None:
        ing.ingest_raw("feedback", [("1", _fb("f-a", "a", "2026-11-03T09:00:00Z", 5))], "t")
        done.set()

    with store.lock():  # what a rebuild holds from listing the store to writing its result
        worker = threading.Thread(target=ingest)
        worker.start()
        assert not done.wait(1.0)  # the event is stored; its update waits for the lock
        assert len(store.files("feedback")) == 1
    worker.join(30)
    assert done.is_set()
    (row,) = rollups.kpis(store, date(2026, 11, 3), date(2026, 11, 4), "day")
    assert (row["feedback_n"], row["feedback_avg"]) == (1, 5.0)
    assert_same(settings, date(2026, 11, 3), date(2026, 11, 4), "day")
