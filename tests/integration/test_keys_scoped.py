"""Keys that mean what they say: plant binding, the admin bootstrap, failed-auth throttling,
request budgets, and audited refusals, over a real server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance import audit
from modelwarden.governance.keys import (
    AuthThrottle,
    ForbiddenError,
    RateLimited,
    create_key,
    list_keys,
    revoke_key,
)
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore


def otlp_export(plant: str) -> dict[str, Any]:
    """One GenAI chat span of ``plant``, as OTLP/HTTP JSON."""
    attrs = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "sop-assistant-v1.2"),
        ("gen_ai.input.messages", '[{"role":"user","parts":[{"type":"text","content":"Hi?"}]}]'),
        (
            "gen_ai.output.messages",
            '[{"role":"assistant","parts":[{"type":"text","content":"Hello."}]}]',
        ),
    ]
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "00f067aa0ba902b7",
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": "1793610000000000000",
        "endTimeUnixNano": "1793610000412500000",
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs],
        "status": {},
    }
    resource = {"attributes": [{"key": "modelwarden.plant_id", "value": {"stringValue": plant}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}


def record(rid: str, plant: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "timestamp": "2026-11-02T10:05:00Z",
        "plant_id": plant,
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "Torque for M12 flange bolts?",
        "generated_response": "85 Nm in a star pattern.",
        "latency_ms": 250,
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    keys = {
        "plant_b": create_key(state, "ingest", name="line b", plant="Plant_B")[0],
        "budget": create_key(state, "ingest", name="small", per_minute=3)[0],
    }
    state.close()
    app = create_app(
        Settings(data_dir=data, embedder="hashing", gateway_auth="required"),
        ServerConfig(flush_interval_s=0.1, run_controller=False),
    )
    with ServerThread(app) as thread, httpx.Client(base_url=thread.url, timeout=10) as http:
        yield {"http": http, "data": data, "keys": keys, "runtime": app.state.runtime}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_stored(http: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if http.get("/healthz").json()["spool"]["pending_records"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the spool did not drain")


def refusals(rt: Any) -> list[audit.Entry]:
    rt.keys.refusals.flush()
    return [e for e in audit.entries(rt.state) if e.action.startswith(("auth.", "http."))]


def test_a_plant_bound_key_cannot_write_another_plants_records(server: dict[str, Any]) -> None:
    http, key = server["http"], server["keys"]["plant_b"]
    res = http.post(
        "/v1/logs", json=[record("b-1", "Plant_B"), record("d-1", "Plant_D")], headers=auth(key)
    )
    assert res.status_code == 200
    body = res.json()
    assert body["accepted"] == 1 and body["invalid"] == 1
    bad = body["results"][1]
    assert bad["status"] == "invalid" and bad["field"] == "plant_id"
    assert "bound to plant 'Plant_B'" in bad["reason"] and "'Plant_D'" in bad["reason"]
    # OTLP: the export names Plant_D on its resource.
    res = http.post("/v1/traces", json=otlp_export("Plant_D"), headers=auth(key))
    assert res.status_code == 200
    assert res.json()["partialSuccess"]["rejectedSpans"] == 1
    assert "plant_id" in res.json()["partialSuccess"]["errorMessage"]
    wait_stored(http)
    con = LogStore(server["data"] / "log").connect()
    stored = con.to_pyarrow(con.table("requests").select("request_id")).column(0).to_pylist()
    assert stored == ["b-1"]
    rejected = con.to_pyarrow(con.table("rejected").drop("raw")).to_pylist()
    assert {r["field"] for r in rejected} == {"plant_id"} and len(rejected) == 2
    entries = refusals(server["runtime"])
    assert [e.subject for e in entries] == ["http:/v1/logs", "http:/v1/traces"]
    assert all(e.actor.startswith("key ") for e in entries)


def test_gateway_errors_have_the_openai_shape(server: dict[str, Any]) -> None:
    http = server["http"]
    res = http.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={**auth(server["keys"]["plant_b"]), "X-Plant-Id": "Plant_D"},
    )
    assert res.status_code == 403
    err = res.json()["error"]
    assert err["type"] == "permission_error" and err["param"] == "plant_id"
    assert err["code"] == "forbidden" and "bound to plant 'Plant_B'" in err["message"]
    res = http.post("/v1/chat/completions", json={"messages": []}, headers=auth("mw_nope"))
    err = res.json()["error"]
    assert res.status_code == 401 and err["type"] == "authentication_error"
    assert set(err) >= {"message", "type", "param", "code"}


def test_healthz_says_nothing_about_the_data_directory(server: dict[str, Any]) -> None:
    text = server["http"].get("/healthz").text
    assert "data_dir" not in text and str(server["data"]) not in text
    assert str(server["data"].name) not in text


def test_failed_authentication_is_throttled_per_client_and_audited(
    server: dict[str, Any],
) -> None:
    http, good = server["http"], server["keys"]["plant_b"]
    for i in range(10):
        res = http.post("/v1/logs", json=[record(f"x{i}", "Plant_B")], headers=auth(f"mw_bad{i}"))
        assert res.status_code == 401
    res = http.post("/v1/logs", json=[record("x", "Plant_B")], headers=auth(good))
    # The address is blocked now, whatever key it sends.
    assert res.status_code == 429 and int(res.headers["Retry-After"]) >= 1
    assert res.json()["error"]["code"] == "rate_limited"
    entries = refusals(server["runtime"])
    assert sum(e.action == "http.refused" for e in entries) == 10
    limited = [e for e in entries if e.action == "auth.rate_limited"]
    assert [e.subject for e in limited] == ["addr:127.0.0.1"]


def test_a_key_prefix_is_throttled_across_addresses() -> None:
    t = AuthThrottle(max_failures=3, window_s=60, block_s=30)
    for i in range(2):
        assert t.fail(f"addr:10.0.0.{i}", "prefix:mw_abcdef", now=100.0 + i) == []
    assert t.fail("addr:10.0.0.9", "prefix:mw_abcdef", now=103.0) == ["prefix:mw_abcdef"]
    with pytest.raises(RateLimited) as exc:
        t.check("addr:10.0.0.50", "prefix:mw_abcdef", now=110.0)
    assert exc.value.headers["Retry-After"] == "23"
    t.check("addr:10.0.0.50", "prefix:mw_abcdef", now=134.0)  # the block has passed
    t.check("addr:10.0.0.1", "prefix:mw_other", now=110.0)  # other prefixes are not blocked
    # Failures spread beyond the window do not add up.
    t2 = AuthThrottle(max_failures=3, window_s=10, block_s=30)
    for i in range(6):
        assert t2.fail("addr:a", now=i * 6.0) == []
    # Clients spraying failures from ever new addresses do not grow what is tracked.
    t3 = AuthThrottle(max_failures=1, window_s=10, block_s=30)
    t3.MAX_TRACKED = 100
    for i in range(5000):
        t3.fail(f"addr:{i}", now=i * 0.1)
    failures, blocked = t3.tracked()
    assert failures <= 101 and blocked <= 301  # at most a block time's worth
    with pytest.raises(RateLimited):
        t3.check("addr:4999", now=500.0)  # the newest block still holds


def test_a_key_budget_is_spent_then_refused_with_retry_after(server: dict[str, Any]) -> None:
    http, key = server["http"], server["keys"]["budget"]
    codes = [
        http.post("/v1/logs", json=[record(f"b{i}", "Plant_A")], headers=auth(key)).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 200]
    res = http.post("/v1/logs", json=[record("b4", "Plant_A")], headers=auth(key))
    assert res.status_code == 429 and 1 <= int(res.headers["Retry-After"]) <= 60
    assert res.json()["error"]["details"]["budget"] == "minute"
    assert [e.action for e in refusals(server["runtime"])] == ["auth.budget_spent"]


def test_keys_above_ingest_need_an_admin_key_once_one_exists(tmp_path: Path) -> None:
    state = StateStore.at(tmp_path / "d")
    # Bootstrap: no admin yet, so the machine's CLI may make any key.
    create_key(state, "operator", name="ops")
    admin, _ = create_key(state, "admin", name="root")
    with pytest.raises(ForbiddenError):
        create_key(state, "operator", name="ops2")
    ops_secret = create_key(state, "ingest", name="line")[0]  # ingest needs no admin
    with pytest.raises(ForbiddenError):
        create_key(state, "reviewer", name="ann", by=ops_secret)
    _, ann = create_key(state, "reviewer", name="ann", by=admin)
    assert ann.role == "reviewer"
    with pytest.raises(ForbiddenError):
        revoke_key(state, ann.id)
    assert revoke_key(state, ann.id, by=admin).revoked_at is not None
    assert [k.role for k in list_keys(state)] == ["operator", "admin", "ingest", "reviewer"]
    actions = [(e.action, e.actor) for e in audit.entries(state)]
    assert actions[:2] == [("keys.create", "cli"), ("keys.create", "cli")]
    assert ("auth.refused", "cli") in actions
    assert ("keys.create", "key 2 (root)") in actions and ("keys.revoke", "key 2 (root)") in actions


def test_keys_create_from_the_cli_needs_the_admin_key(tmp_path: Path, run_cli: Any) -> None:
    data = tmp_path / "d"
    first = run_cli("keys", "create", "--role", "admin", "--format", "json", data=data)
    assert first.code == 0, first.err
    admin = json.loads(first.out)["key"]
    refused = run_cli("keys", "create", "--role", "operator", data=data)
    assert refused.code == 2 and "admin" in refused.err
    ok = run_cli("keys", "create", "--role", "operator", "--key", admin, data=data)
    assert ok.code == 0, ok.err
