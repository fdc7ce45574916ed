"""The demo's closed loop, end to end, asserted step by step.

Real parts throughout: the ``serve`` app on a real socket with its spool and flusher process, two
fake model servers speaking HTTP, the official ``openai`` client sending plant traffic, the rollout
controller ticking at simulated times, the rollback transaction, a webhook receiver on a real
socket, the evaluation runner against a staging endpoint and the two-key release. The hashing
embedder keeps it fast; the seed and the week's end make it deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from modelwarden.demo.service import DemoOptions, DemoResult, prepare_data_dir, run_demo
from modelwarden.errors import InputError
from modelwarden.governance import audit, incidents, registry
from modelwarden.governance.routes import current_routes
from modelwarden.rollout import store as rollouts
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
END = datetime(2026, 11, 23, tzinfo=UTC)
LIVE_START = END - timedelta(hours=12)
CANARY_START = LIVE_START + timedelta(hours=1)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, DemoResult]]:
    data = tmp_path_factory.mktemp("loop") / "warden-data"
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    res = run_demo(settings, DemoOptions(days=14, seed=7, end=END))
    yield settings, res


def kinds(res: DemoResult) -> list[str]:
    return [s.kind for s in res.timeline]


def test_the_timeline_runs_every_step_in_order(loop: tuple[Settings, DemoResult]) -> None:
    _, res = loop
    assert kinds(res) == [
        "history",
        "setup",
        "traffic",
        "rollout",
        "trip",
        "routes",
        "quarantine",
        "incident",
        "notify",
        "traffic",
        "eval",
        "approve",
        "release",
        "report",
    ]
    times = [s.at for s in res.timeline[1:-1]]
    assert times == sorted(times), "simulated time never goes backwards"
    assert all(LIVE_START <= t <= END for t in times)


def test_the_canary_starts_at_five_percent_of_plant_b(loop: tuple[Settings, DemoResult]) -> None:
    _, res = loop
    (start,) = res.steps("rollout")
    assert start.at == CANARY_START
    assert start.detail["weight"] == 5 and start.detail["plants"] == ["Plant_B"]
    first_hour = res.timeline[2]
    assert set(first_hour.detail["versions"]) == {V11} and first_hour.detail["requests"] > 200


def test_the_safety_rule_trips_in_simulated_time_on_its_evidence(
    loop: tuple[Settings, DemoResult],
) -> None:
    settings, res = loop
    (trip,) = res.steps("trip")
    assert trip.detail["rule_id"] == "safety_incident_rate"
    assert trip.detail["scope"] in ("overall", "Plant_B")
    assert trip.detail["window"] == "12h"
    # Within the canary's first eight simulated hours, at a tick (every 15 minutes).
    assert CANARY_START < trip.at <= CANARY_START + timedelta(hours=8)
    assert (trip.at - CANARY_START) % timedelta(minutes=15) == timedelta(0)
    assert trip.detail["window_end"] == trip.at.isoformat()
    assert trip.detail["window_start"] == (trip.at - timedelta(hours=12)).isoformat()
    ev = trip.detail["evidence"]
    assert ev["metric"] == "safety_rate" and ev["baseline"] == "stable_same_window"
    assert ev["n"] >= 30 and ev["n_baseline"] >= 30
    assert ev["value"] - ev["baseline_value"] > 0.01  # more than 1 percentage point
    assert ev["p_value"] < ev["alpha"]
    # The live phase happened in simulated time: the gateway stamped v1.2's records with it.
    parts = sorted((settings.log_dir / "requests").rglob("*.parquet"))
    table = pq.read_table(parts, columns=["model_version", "timestamp"]).to_pylist()
    canary = [r for r in table if r.get("model_version") == V12]
    assert canary and all(
        CANARY_START <= r["timestamp"].replace(tzinfo=UTC) < END for r in canary
    ), "every v1.2 record is stamped inside the simulated live phase"


def test_all_traffic_is_back_on_the_stable_version(loop: tuple[Settings, DemoResult]) -> None:
    _settings, res = loop
    routes = res.steps("routes")[0]
    assert routes.detail["stable"] == V11 and routes.detail["canary"] is None
    after = res.timeline[kinds(res).index("traffic", 3)]
    assert after.detail["versions"] == {V11: after.detail["requests"]}
    assert after.detail["requests"] > 200


def test_quarantine_incident_and_rca_logs(loop: tuple[Settings, DemoResult]) -> None:
    settings, res = loop
    (q,) = res.steps("quarantine")
    assert q.detail["status"] == "quarantined"
    state = StateStore.at(settings.data_dir)
    try:
        (inc,) = incidents.list_incidents(state)
        assert inc.id == res.incident_id and inc.rule_id == "safety_incident_rate"
        assert inc.version == V12 and inc.stable_version == V11
        assert inc.status == "mitigated"
        assert set(inc.steps) == {"routes", "quarantine", "rollout", "rca", "notify", "mitigated"}
        manifest = json.loads((Path(inc.rca_dir or "") / "manifest.json").read_text())
        assert manifest["files"]["requests"]["rows"] > 0
        rca = [
            json.loads(line)
            for line in (Path(inc.rca_dir or "") / "requests.jsonl").read_text().splitlines()
        ]
        bad = [r for r in rca if r["model_version"] == V12 and r["contains_safety_keyword"]]
        assert bad and all(r["plant_id"] == "Plant_B" for r in bad)
        moves = audit.entries(state, action="registry.transition", subject=V12)
        assert any((e.evidence or {}).get("to") == "quarantined" for e in moves), [
            e.evidence for e in moves
        ]
        assert audit.verify(state).ok
    finally:
        state.close()


def test_the_notification_lands_at_the_webhook_and_in_a_file(
    loop: tuple[Settings, DemoResult],
) -> None:
    settings, res = loop
    (n,) = res.steps("notify")
    assert n.detail["webhook_messages"] == 1
    (msg,) = res.notifications
    body = msg["body"]
    assert body["event"] == "modelwarden.rollback" and body["incident_id"] == res.incident_id
    assert body["trigger"]["rule_id"] == "safety_incident_rate"
    assert "safety_incident_rate" in body["text"]
    saved = json.loads(
        (settings.data_dir / "notifications" / f"{res.incident_id}.json").read_text()
    )
    assert saved["incident_id"] == res.incident_id and saved["version"] == V12


def test_revalidated_against_staging_and_approved_by_a_second_key(
    loop: tuple[Settings, DemoResult],
) -> None:
    settings, res = loop
    (ev,) = res.steps("eval")
    assert ev.detail["endpoint"].endswith("/v1") and ev.detail["items"] > 30
    (ap,) = res.steps("approve")
    assert ap.detail["approved"] is True
    assert ap.detail["requested_by_key"] != ap.detail["approved_by_key"]
    state = StateStore.at(settings.data_dir)
    try:
        (req,) = audit.entries(state, action="release.request")
        (ok,) = audit.entries(state, action="release.approve")
        assert req.actor != ok.actor and ok.evidence["passed"] is True
        assert ok.evidence["eval_run_name"] == ev.detail["run"]
        endpoint = audit.entries(state, action="registry.endpoint")
        assert endpoint and endpoint[-1].evidence["to"] in ev.detail["endpoint"]
    finally:
        state.close()


def test_the_fixed_version_is_released_again(loop: tuple[Settings, DemoResult]) -> None:
    settings, res = loop
    (rel,) = res.steps("release")
    assert rel.detail["status"] == "running" and rel.detail["fired"] == []
    assert rel.detail["canary_requests"] > 0 and rel.detail["unsafe"] == 0
    assert rel.detail["registry_status"] == "canary"
    state = StateStore.at(settings.data_dir)
    try:
        live = current_routes(state)
        assert live is not None and live.canary is not None
        assert live.canary.version == V12 and live.canary_weight == 5
        assert registry.get(state, V12).status == "canary"
        first, second = rollouts.get(state, 1), rollouts.get(state, 2)
        assert first.status == "rolled_back" and second.status == "running"
    finally:
        state.close()


def test_the_weekly_report_is_written(loop: tuple[Settings, DemoResult]) -> None:
    _, res = loop
    assert res.report.week == "2026-W47"
    md, page = (p.read_text() for p in res.report_paths)
    for text in (md, page):
        assert "Rollouts and incidents" in text and str(res.incident_id) in text
        assert "safety_incident_rate" in text and "v1.2-fixed-staging" in text
    sop = res.report.sop
    assert [r["status"] for r in sop["rollouts"]] == ["rolled_back", "running"]
    (inc,) = sop["incidents"]
    assert inc["rule_id"] == "safety_incident_rate" and inc["evidence"]["n"] >= 30
    (rel,) = sop["releases"]
    assert rel["status"] == "approved" and rel["requested_by"] != rel["decided_by"]
    # The live bad canary was rolled back, so no finding calls it live; the first finding is
    # about v1.2 at Plant_B all the same (it served unsafe answers this week).
    assert res.report.findings and res.report.findings[0].startswith("sop-assistant-v1.2 at")


def test_the_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="did not make"):
        prepare_data_dir(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
