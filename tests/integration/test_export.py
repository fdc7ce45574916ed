"""``modelwarden export``: requests with their latest feedback and escalation, KPIs, drift history."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from modelwarden.drift.history import record_results
from modelwarden.kpi.compute import KpiQuery
from modelwarden.kpi.service import compute_kpis
from modelwarden.settings import Settings
from modelwarden.simulate.traffic import SimulatedData

SINCE, UNTIL = datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)


def _in_range(ts: Any) -> bool:
    t = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return SINCE <= t.astimezone(UTC) < UNTIL


def _drift_point(settings: Settings) -> None:
    record_results(
        settings,
        [
            {
                "kind": "prompt",
                "scope": "Plant_B",
                "model_version": "sop-assistant-v1.2",
                "window_start": SINCE,
                "window_end": UNTIL,
                "baseline_key": "Plant_B/prompt/hashing",
                "method": "suite",
                "score": 0.31,
                "p_value": 0.002,
                "threshold": 0.01,
                "status": "DRIFT",
                "n_baseline": 500,
                "n_current": 400,
            }
        ],
        run_at=datetime(2026, 11, 16, 6, tzinfo=UTC),
    )


def test_export_parquet_and_jsonl(
    run_cli: Any, seeded_data_dir: Path, sim_data: SimulatedData, tmp_path: Path
) -> None:
    data = tmp_path / "warden-data"
    shutil.copytree(seeded_data_dir, data)  # the seeded directory is shared and read only
    settings = Settings(data_dir=data, embedder="hashing")
    _drift_point(settings)
    outs = {}
    for fmt in ("parquet", "jsonl"):
        out = tmp_path / f"export-{fmt}"
        res = run_cli(
            "export",
            "--since",
            "2026-11-09",
            "--until",
            "2026-11-16",
            "--format",
            fmt,
            "--out",
            str(out),
            "--output",
            "json",
            data=data,
        )
        assert res.code == 0, res.err
        manifest = json.loads(res.out)
        assert manifest == json.loads((out / "manifest.json").read_text())
        assert (manifest["since"], manifest["until"], manifest["format"]) == (
            "2026-11-09T00:00:00Z",
            "2026-11-16T00:00:00Z",
            fmt,
        )
        outs[fmt] = (out, manifest)

    want = [r for r in sim_data.requests if _in_range(r["timestamp"])]
    latest_fb: dict[str, dict[str, Any]] = {}
    for f in sorted(sim_data.feedback, key=lambda f: f["timestamp"]):
        latest_fb[f["request_id"]] = f
    escalations: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sim_data.escalations:
        escalations[e["request_id"]].append(e)

    out, manifest = outs["parquet"]
    rows = pq.read_table(out / "requests.parquet").to_pylist()
    assert manifest["files"]["requests"]["rows"] == len(rows) == len(want)
    assert {r["request_id"] for r in rows} == {r["request_id"] for r in want}
    by_id = {r["request_id"]: r for r in rows}
    assert latest_fb and escalations
    checked_fb = checked_esc = 0
    for rid, row in by_id.items():
        fb = latest_fb.get(rid)
        assert row["feedback_score"] == (fb["score"] if fb else None)
        checked_fb += fb is not None
        esc = escalations.get(rid, [])
        assert (row["escalations"] or 0) == len(esc)
        if esc:
            last = max(esc, key=lambda e: e["timestamp"])
            assert row["escalation_reason"] == last["reason"]
            checked_esc += 1
    assert checked_fb > 10 and checked_esc > 0

    kpis = pq.read_table(out / "kpis.parquet").to_pylist()
    expected = compute_kpis(
        settings, KpiQuery(since=SINCE, until=UNTIL, by=("plant_id", "model_version"))
    )
    assert len(kpis) == len(expected) > 0
    assert sorted((k["plant_id"], k["model_version"], k["requests"]) for k in kpis) == sorted(
        (k["plant_id"], k["model_version"], k["requests"]) for k in expected
    )
    drift = pq.read_table(out / "drift_history.parquet").to_pylist()
    assert [(d["scope"], d["method"], d["status"]) for d in drift] == [
        ("Plant_B", "suite", "DRIFT")
    ]

    out_j, manifest_j = outs["jsonl"]
    lines = [json.loads(x) for x in (out_j / "requests.jsonl").read_text().splitlines()]
    assert [x["request_id"] for x in lines] == [r["request_id"] for r in rows]
    assert all(x["timestamp"].endswith("Z") for x in lines)
    assert {k: v["rows"] for k, v in manifest_j["files"].items()} == {
        k: v["rows"] for k, v in manifest["files"].items()
    }


def test_export_refuses_bad_input(run_cli: Any, data_dir: Path, tmp_path: Path) -> None:
    res = run_cli("export", "--format", "csv", "--out", str(tmp_path / "x"), data=data_dir)
    assert res.code == 2 and "format" in res.err
    res = run_cli(
        "export",
        "--since",
        "2026-11-16",
        "--until",
        "2026-11-09",
        "--out",
        str(tmp_path / "y"),
        data=data_dir,
    )
    assert res.code == 2 and "since" in res.err
