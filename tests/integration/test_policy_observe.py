"""What the controller reads each tick (policy.observe.load_observations) from a store on disk:
only the day directories of its range, the same rows and values, and nothing held afterwards."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modelwarden.policy.engine import Engine, Observations
from modelwarden.policy.observe import load_observations
from modelwarden.policy.spec import default_policy
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.schema import SCHEMAS

V1, V2 = "v1", "v2"
DAY1 = datetime(2026, 11, 1, 12, tzinfo=UTC)
DAY20 = datetime(2026, 11, 20, 12, tzinfo=UTC)
DAY21 = datetime(2026, 11, 21, 12, tzinfo=UTC)


def _table(kind: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = SCHEMAS[kind]
    return pa.table(
        {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema}, schema=schema
    )


def _request(rid: str, ts: datetime, plant: str | None, version: str, **kw: Any) -> dict[str, Any]:
    return {
        "request_id": rid,
        "timestamp": ts,
        "plant_id": plant,
        "model_version": version,
        "latency_ms": 100.0,
        **kw,
    }


def _store(tmp_path: Path) -> tuple[Settings, LogStore]:
    settings = Settings(data_dir=tmp_path / "data")
    store = LogStore(settings.log_dir)
    store.append(
        "requests",
        _table(
            "requests",
            [
                _request("old-1", DAY1, "Plant_A", V1),
                _request("a", DAY20, "Plant_A", V1, human_feedback_score=3),
                _request("b", DAY20 + timedelta(hours=1), "Plant_B", V2, error="timeout"),
                _request("c", DAY21, None, V2, contains_safety_keyword=True),
                _request("s", DAY21, "Plant_A", V2, route="shadow"),
            ],
        ),
    )
    store.append(
        "feedback",
        _table(
            "feedback",
            [{"event_id": "f1", "request_id": "a", "timestamp": DAY21, "score": 5}],
        ),
    )
    return settings, store


def _corrupt(store: LogStore, kind: str, day: str) -> None:
    d = store.kind_dir(kind) / f"date={day}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "part-corrupt.parquet").write_bytes(b"not a parquet file")


def test_reads_only_the_days_of_its_range(tmp_path: Path) -> None:
    settings, store = _store(tmp_path)
    # A day outside the range that no query could read: the range's rows come back all the same.
    _corrupt(store, "requests", "2026-11-01")
    _corrupt(store, "escalations", "2026-11-01")
    obs = load_observations(settings, DAY20 - timedelta(hours=1), DAY21)
    assert list(obs.plant) == ["Plant_A", "Plant_B", None]
    assert list(obs.version) == [V1, V2, V2]
    assert list(obs.score[:1]) == [5.0] and np.isnan(obs.score[1:]).all()
    assert list(obs.error) == [False, True, False]
    assert list(obs.safety) == [False, False, True]
    assert obs.score_at is not None and obs.score_at[0] == int(DAY21.timestamp() * 1_000_000)
    assert len(obs.esc_ts) == 0


def test_an_escalation_in_range_about_an_older_request_keeps_its_plant_and_version(
    tmp_path: Path,
) -> None:
    settings, store = _store(tmp_path)
    store.append(
        "escalations",
        _table(
            "escalations",
            [
                {"event_id": "e1", "request_id": "old-1", "timestamp": DAY20, "confirmed": True},
                {"event_id": "e0", "request_id": "a", "timestamp": DAY1, "confirmed": True},
            ],
        ),
    )
    obs = load_observations(settings, DAY20 - timedelta(hours=1), DAY21)
    assert list(obs.esc_plant) == ["Plant_A"] and list(obs.esc_version) == [V1]
    assert list(obs.esc_category) == ["other"] and list(obs.esc_confirmed) == [True]


def test_escalations_about_requests_of_the_range_and_older_ones_are_all_matched(
    tmp_path: Path,
) -> None:
    """Many escalations (more than one query's list of ids), about requests of the range's days
    and about older ones, each with its request's plant and version, and none about a request
    that was never stored."""
    settings, store = _store(tmp_path)
    n = 1200
    store.append(
        "requests",
        _table(
            "requests",
            [_request(f"near-{i}", DAY20, f"Plant_{'CD'[i % 2]}", V2) for i in range(n)]
            + [_request(f"far-{i}", DAY1, "Plant_E", V1) for i in range(5)],
        ),
    )
    events = [
        {"event_id": f"n{i}", "request_id": f"near-{i}", "timestamp": DAY21, "confirmed": True}
        for i in range(n)
    ]
    events += [
        {"event_id": f"f{i}", "request_id": f"far-{i}", "timestamp": DAY21, "confirmed": False}
        for i in range(5)
    ]
    events.append(
        {"event_id": "x", "request_id": "never-stored", "timestamp": DAY21, "confirmed": True}
    )
    store.append("escalations", _table("escalations", events))
    for since in (DAY20 - timedelta(hours=1), DAY21 - timedelta(hours=1)):
        obs = load_observations(settings, since, DAY21)
        got = sorted(zip(obs.esc_plant, obs.esc_version, obs.esc_confirmed, strict=True))
        want = sorted(
            [(f"Plant_{'CD'[i % 2]}", V2, True) for i in range(n)] + [("Plant_E", V1, False)] * 5
        )
        assert got == want


def test_rows_share_one_string_per_plant_and_version(tmp_path: Path) -> None:
    settings, store = _store(tmp_path)
    store.append(
        "requests",
        _table(
            "requests",
            [_request(f"n{i}", DAY20, f"Plant_{'AB'[i % 2]}", V1) for i in range(100)],
        ),
    )
    obs = load_observations(settings, None, None)
    assert len(obs.plant) == 104
    # Five plants values (A, B, None) and two versions: one object each, not one per row.
    assert len({id(p) for p in obs.plant}) == 3
    assert len({id(v) for v in obs.version}) == 2


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_leaves_no_directory_handle_open(tmp_path: Path) -> None:
    settings, store = _store(tmp_path)
    load_observations(settings, None, None)  # imports and caches out of the count
    before = _open_fds()
    for _ in range(3):
        load_observations(settings, None, None)
    assert _open_fds() == before
    # Closing releases the handles of a connection still referenced.
    con = store.connect()
    assert _open_fds() > before
    store.close(con)
    assert _open_fds() == before


def test_a_tick_compares_each_version_and_plant_once() -> None:
    t0 = datetime(2026, 11, 20, tzinfo=UTC)
    rows = [
        {
            "timestamp": t0 + timedelta(minutes=i),
            "plant_id": f"Plant_{'ABC'[i % 3]}",
            "model_version": V2 if i % 4 == 0 else V1,
            "latency_ms": 100.0 + i,
        }
        for i in range(600)
    ]
    obs = Observations.from_rows(rows)
    Engine(default_policy()).tick(obs, t0 + timedelta(hours=10), V2, V1)
    assert set(obs._masks) == {
        ("version", V2),
        ("version", V1),
        ("plant", "Plant_A"),
        ("plant", "Plant_B"),
        ("plant", "Plant_C"),
    }
    for (column, value), mask in obs._masks.items():
        assert (mask == (getattr(obs, column) == value)).all()
