"""The governance HTTP API on a real server: registry, release flow, rollouts, incidents, evals,
audit and policy; every write with the right role, every refusal audited."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from console_world import V11, V12, V13, V14, V15, build, copy_of, start_live_rollout
from test_rollback_transaction import Sink

from modelwarden.evals.service import BOOTSTRAP_RESAMPLES
from modelwarden.governance import audit, incidents, registry
from modelwarden.governance.routes import current_routes
from modelwarden.governance.service import scorecard_text
from modelwarden.policy.spec import Notify, default_policy, policy_path
from modelwarden.rollout import store as rollout_store
from modelwarden.rollout.rollback import STEPS
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    world = build(tmp_path_factory.mktemp("template") / "data")
    world["state"].close()
    yield world


@pytest.fixture
def server(template: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    world = copy_of(template, tmp_path / "data")
    start_live_rollout(world)
    app = create_app(world["settings"], ServerConfig(run_controller=False, flush_interval_s=0.1))
    with ServerThread(app) as srv:
        yield {**world, "url": srv.url}
    world["state"].close()


def http(server: dict[str, Any], who: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server['keys'][who]}"} if who else {}
    return httpx.Client(base_url=server["url"], headers=headers, timeout=30)


def refusals(server: dict[str, Any]) -> list[audit.Entry]:
    return audit.entries(server["state"], action="http.refused")


def test_registry_reads(server: dict[str, Any]) -> None:
    with http(server) as c:
        versions = {v["version"]: v["status"] for v in c.get("/v1/registry/versions").json()}
        assert versions == {
            V11: "stable",
            V12: "canary",
            V13: "quarantined",
            V14: "quarantined",
            V15: "quarantined",
        }
        quarantined = c.get("/v1/registry/versions", params={"status": "quarantined"}).json()
        assert sorted(v["version"] for v in quarantined) == [V13, V14, V15]
        detail = c.get(f"/v1/registry/versions/{V13}").json()
        assert detail["version"]["status"] == "quarantined"
        assert [r["status"] for r in detail["release_requests"]] == ["open"]
        assert detail["release_requests"][0]["requested_by"].endswith("(board)")
        assert [e["action"] for e in detail["audit"]][-1] == "release.request"
        assert c.get(f"/v1/registry/versions/{V15}/evidence").status_code == 200
        card = c.get(f"/v1/registry/versions/{V13}/scorecard")
        assert card.status_code == 200, card.text
        assert card.json()["version"] == V13
        # `eval scorecard` shows the same intervals: one number of resamples, one seed
        cli_card = json.loads(scorecard_text(server["settings"], V13, "json"))
        assert card.json()["n_boot"] == cli_card["n_boot"] == BOOTSTRAP_RESAMPLES
        assert card.json()["metrics"] == cli_card["metrics"] and cli_card["metrics"]
        missing = c.get("/v1/registry/versions/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_registry_writes_need_an_operator(server: dict[str, Any]) -> None:
    body = {"version": "sop-assistant-v2.0", "endpoint": "http://127.0.0.1:9200/v1"}
    with http(server) as c:
        res = c.post("/v1/registry/versions", json=body)
        assert res.status_code == 401 and res.json()["error"]["code"] == "unauthorized"
    for who in ("ann", "board", "ingest"):
        with http(server, who) as c:
            res = c.post("/v1/registry/versions", json=body)
            assert res.status_code == 403, (who, res.text)
            res = c.post(f"/v1/registry/versions/{V14}/quarantine", json={"reason": "x"})
            assert res.status_code == 403
    refused = refusals(server)
    assert len(refused) == 7
    assert refused[0].actor == "anonymous" and refused[0].evidence["status"] == 401
    assert {e.actor for e in refused[1:]} == {
        f"key {registry.identify(server['state'], server['keys'][w]).id} ({w})"
        for w in ("ann", "board", "ingest")
    }
    assert audit.verify(server["state"]).ok
    with http(server, "ops") as c:
        res = c.post("/v1/registry/versions", json=body)
        assert res.status_code == 201 and res.json()["status"] == "staging"
        assert c.post("/v1/registry/versions", json=body).status_code == 409
        res = c.post(
            "/v1/registry/versions/sop-assistant-v2.0/promote", json={"to": "shadow", "reason": "t"}
        )
        assert res.status_code == 200 and res.json()["status"] == "shadow"
        res = c.post(
            "/v1/registry/versions/sop-assistant-v2.0/quarantine", json={"reason": "bad answers"}
        )
        assert res.status_code == 200 and res.json()["status"] == "quarantined"
        assert res.json()["changed"] is True
        res = c.post(f"/v1/registry/versions/{V12}/promote", json={"to": "stable"})
        assert res.status_code == 409 and "rollout" in res.json()["error"]["message"]
        res = c.post("/v1/registry/versions", json={**body, "color": "red"})
        assert res.status_code == 422


def test_the_release_flow_keeps_four_eyes(server: dict[str, Any]) -> None:
    runs = server["runs"]
    with http(server, "board") as c:
        own = c.post(f"/v1/registry/versions/{V13}/approve", json={"eval_run": str(runs[V13])})
        assert own.status_code == 403 and "different key" in own.json()["error"]["message"]
        other = c.post(f"/v1/registry/versions/{V14}/approve", json={"eval_run": str(runs[V14])})
        assert other.status_code == 200, other.text
        assert other.json()["approved"] is True and other.json()["comparison"]["passed"]
    assert registry.get(server["state"], V14).status == "staging"
    assert registry.get(server["state"], V13).status == "quarantined"
    refused = refusals(server)
    assert len(refused) == 1 and "different key" in refused[0].reason
    with http(server, "ops") as c:
        res = c.post(f"/v1/registry/versions/{V13}/approve", json={"eval_run": str(runs[V13])})
        assert res.status_code == 403  # an operator is not an approver
        res = c.post(f"/v1/registry/versions/{V15}/release-requests", json={"reason": "fixed"})
        assert res.status_code == 201 and res.json()["status"] == "open"
        again = c.post(f"/v1/registry/versions/{V15}/release-requests", json={})
        assert again.status_code == 409
    with http(server, "ann") as c:
        res = c.post(f"/v1/registry/versions/{V15}/release-requests", json={})
        assert res.status_code == 403
    with http(server, "board2") as c:
        res = c.post(f"/v1/registry/versions/{V13}/approve", json={"eval_run": "fixed-v14"})
        assert res.status_code == 400 and res.json()["error"]["field"] == "eval_run"
        res = c.post(f"/v1/registry/versions/{V13}/approve", json={"eval_run": "fixed-v13"})
        assert res.status_code == 200 and res.json()["approved"] is True


def test_rollouts_over_http(server: dict[str, Any]) -> None:
    with http(server) as c:
        view = c.get("/v1/rollouts/current").json()
        assert view["active"] and view["rollout"]["version"] == V12
        assert view["rollout"]["status"] == "running" and view["rollout"]["step"] == 0
        assert view["routes"]["canary"]["version"] == V12
        assert {r["rule_id"] for r in view["rules"]} >= {"safety_incident_rate", "p95_latency"}
        assert [r["version"] for r in c.get("/v1/rollouts").json()] == [V12, V15]
        res = c.post("/v1/rollouts/current/pause", json={"reason": "night shift"})
        assert res.status_code == 401
    with http(server, "board") as c:
        assert c.post("/v1/rollouts/current/pause", json={"reason": "x"}).status_code == 403
    with http(server, "ops") as c:
        assert c.post("/v1/rollouts/current/pause", json={"reason": ""}).status_code == 422
        assert c.post("/v1/rollouts/current/explode", json={"reason": "x"}).status_code == 422
        res = c.post("/v1/rollouts/current/pause", json={"reason": "night shift"})
        assert res.status_code == 200 and res.json()["rollout"]["status"] == "paused"
        assert c.post("/v1/rollouts/current/pause", json={"reason": "again"}).status_code == 409
        assert c.post("/v1/rollouts/current/promote", json={"reason": "x"}).status_code == 409
        res = c.post("/v1/rollouts/current/resume", json={"reason": "morning"})
        assert res.json()["rollout"]["status"] == "running"
        res = c.post("/v1/rollouts/current/promote", json={"reason": "looks good"})
        assert res.json()["rollout"]["step"] == 1
        res = c.post("/v1/rollouts/current/rollback", json={"reason": "customer complaint"})
        assert res.status_code == 200 and not res.json()["active"]
        assert res.json()["routes"]["canary"] is None
        # The SOP rollback quarantined the canary: it cannot be rolled out again as it is.
        res = c.post("/v1/rollouts", json={"version": V12})
        assert res.status_code == 409 and "quarantined" in res.json()["error"]["message"]
        res = c.post("/v1/rollouts/current/pause", json={"reason": "x"})
        assert res.status_code == 409  # nothing under way any more
    ops = [
        (e.action, e.reason)
        for e in audit.entries(server["state"], subject=V12)
        if e.action in ("rollout.pause", "rollout.resume", "rollout.advance")
    ]
    assert ops == [
        ("rollout.pause", "night shift"),
        ("rollout.resume", "morning"),
        ("rollout.advance", "looks good"),
    ]
    last = rollout_store.list_rollouts(server["state"])[0]
    assert last.version == V12 and last.status == "rolled_back"
    assert last.end_reason is not None and last.end_reason.endswith("customer complaint")


def test_an_operators_rollback_is_the_sop_rollback_with_their_name_and_reason(
    template: dict[str, Any], tmp_path: Path
) -> None:
    world = copy_of(template, tmp_path / "data")
    state, settings = world["state"], world["settings"]
    start_live_rollout(world)
    sink = Sink()
    policy_path(settings.data_dir).write_text(
        default_policy()
        .model_copy(update={"notify": Notify(webhook_url=sink.url, retry_backoff_s=0.1)})
        .to_yaml()
    )
    # The controller runs (it delivers notifications); its hold is far from over.
    config = ServerConfig(flush_interval_s=0.1, tick_interval_s=3600)
    try:
        with (
            ServerThread(create_app(settings, config)) as srv,
            httpx.Client(base_url=srv.url, timeout=30) as c,
        ):
            refused = c.post(
                "/v1/rollouts/current/rollback",
                json={"reason": "x"},
                headers={"Authorization": f"Bearer {world['keys']['ann']}"},
            )
            assert refused.status_code == 403
            res = c.post(
                "/v1/rollouts/current/rollback",
                json={"reason": "operators report wrong torque values"},
                headers={"Authorization": f"Bearer {world['keys']['ops']}"},
            )
            assert res.status_code == 200, res.text
            view = res.json()
            deadline = time.monotonic() + 15
            while not sink.bodies and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        sink.close()
    ops = registry.identify(state, world["keys"]["ops"])
    actor = registry.key_actor(ops)
    # 1. 100 % of traffic on the stable version.
    assert view["routes"]["canary"] is None and view["routes"]["stable"]["version"] == V11
    live = current_routes(state)
    assert live is not None and live.canary is None and live.stable.version == V11
    # 2. The canary is quarantined, with the operator's reason.
    info = registry.get(state, V12)
    assert info.status == "quarantined"
    assert info.quarantine_reason and "operators report wrong torque values" in (
        info.quarantine_reason
    )
    # 3. The rollout ended as rolled back, tied to its incident.
    r = view["rollout"]
    assert r["status"] == "rolled_back" and r["incident_id"]
    assert r["end_reason"].endswith(f"by {actor}: operators report wrong torque values")
    # 4. The incident: trigger, every step of the transaction, the RCA extract.
    inc = incidents.get(state, r["incident_id"])
    assert inc.rule_id == "manual" and inc.rollout_id == r["id"] and inc.status == "mitigated"
    assert inc.trigger["actor"] == actor and inc.trigger["source"] == "operator"
    assert inc.trigger["reason"] == "operators report wrong torque values"
    assert set(inc.steps) == set(STEPS)
    assert inc.rca_dir and (Path(inc.rca_dir) / "requests.parquet").exists()
    # 5. The notification went out, naming who and why.
    assert sink.bodies and sink.bodies[0]["incident_id"] == inc.id
    assert "operators report wrong torque values" in sink.bodies[0]["text"]
    # Every step is in the audit log under the operator's name.
    opened = audit.entries(state, action="incident.open", subject=inc.id)
    assert [e.actor for e in opened] == [actor]
    assert opened[0].reason == f"{actor} rolled back {V12}: operators report wrong torque values"
    assert any(
        e.action == "registry.transition" and e.actor == actor and "torque" in e.reason
        for e in audit.entries(state, subject=V12)
    )
    state.close()


def test_incidents_over_http(server: dict[str, Any]) -> None:
    inc = server["incident"]
    with http(server) as c:
        items = c.get("/v1/incidents").json()
        assert [i["id"] for i in items] == [inc]
        assert items[0]["rule_id"] == "safety_incident_rate" and items[0]["version"] == V15
        assert c.get("/v1/incidents", params={"status": "closed"}).json() == []
        detail = c.get(f"/v1/incidents/{inc}").json()
        assert detail["timeline"] and "notifications" in detail
        jl = c.get(f"/v1/incidents/{inc}/rca/requests", params={"format": "jsonl"})
        assert jl.status_code == 200 and jl.headers["content-type"] == "application/x-ndjson"
        lines = jl.text.splitlines()
        assert len(lines) == 400 and f'"{V15}"' in jl.text
        pa = c.get(f"/v1/incidents/{inc}/rca/requests", params={"format": "parquet"})
        path = Path(server["settings"].data_dir) / "dl.parquet"
        path.write_bytes(pa.content)
        assert pq.read_table(path).num_rows == 400
        assert c.get(f"/v1/incidents/{inc}/rca/secrets").status_code == 422
        assert c.get("/v1/incidents/INC-nope/rca/requests").status_code == 404
        assert c.post(f"/v1/incidents/{inc}/resolve", json={"note": "x"}).status_code == 401
    with http(server, "ann") as c:
        assert c.post(f"/v1/incidents/{inc}/resolve", json={"note": "x"}).status_code == 403
    with http(server, "ops") as c:
        res = c.post(f"/v1/incidents/{inc}/resolve", json={"note": "template regression"})
        assert res.status_code == 200 and res.json()["status"] == "closed"
        assert res.json()["note"] == "template regression"


def test_evals_audit_and_policy(server: dict[str, Any]) -> None:
    with http(server) as c:
        runs = c.get("/v1/evals/runs").json()
        assert {r["name"] for r in runs} == {"baseline-v11", "fixed-v13", "fixed-v14"}
        assert [r["model"] for r in c.get("/v1/evals/runs", params={"model": V13}).json()] == [V13]
        one = c.get("/v1/evals/runs/fixed-v13").json()
        assert one["model"] == V13 and one["comparison"] is None
        assert c.get("/v1/evals/runs/nope").status_code == 404
        assert c.get("/v1/evals/comparisons").json() == []
        entries = c.get("/v1/audit/entries", params={"limit": 5}).json()
        assert len(entries) == 5 and entries[0]["seq"] > entries[-1]["seq"]
        rel = c.get("/v1/audit/entries", params={"action": "release.*"}).json()
        assert sorted(e["subject"] for e in rel) == [V13, V14]
        verified = c.get("/v1/audit/verify").json()
        assert verified["ok"] is True and verified["head_seq"] == entries[0]["seq"]
        pol = c.get("/v1/policy").json()
        assert pol["source"] == "built-in" and pol["policy"]["sop_id"] == "SOP-MLOPS-003"
        sop = c.get("/v1/policy/sop")
        assert sop.headers["content-type"].startswith("text/markdown")
        assert "SOP-MLOPS-003" in sop.text and "safety_incident_rate" in sop.text
        paths = c.get("/openapi.json").json()["paths"]
        for p in (
            "/v1/registry/versions/{version}/approve",
            "/v1/rollouts/current/{operation}",
            "/v1/incidents/{incident_id}/rca/{table}",
            "/v1/evals/runs",
            "/v1/audit/verify",
            "/v1/policy/sop",
        ):
            assert p in paths
