"""The ingest API on a real server: per-record answers, the spool, limits, errors and keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelwarden.governance.keys import create_key, list_keys, revoke_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

MAX_BODY = 64 * 1024


def record(rid: str, **over: Any) -> dict[str, Any]:
    base = {
        "request_id": rid,
        "timestamp": "2026-11-02T10:05:00Z",
        "plant_id": "Plant_B",
        "model_version": "sop-assistant-v1.1",
        "user_prompt": "What is the lubrication schedule for the main conveyor?",
        "generated_response": "Every 200 operating hours with ISO VG 46 oil.",
        "latency_ms": 250,
    }
    base.update(over)
    return base


class Srv:
    def __init__(self, data: Path, thread: ServerThread, keys: dict[str, str]) -> None:
        self.data = data
        self.thread = thread
        self.url = thread.url
        self.keys = keys
        self.http = httpx.Client(base_url=thread.url, timeout=10)

    def auth(self, role: str = "ingest") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def post(
        self,
        path: str,
        body: Any,
        role: str | None = "ingest",
        content_type: str = "application/json",
    ) -> httpx.Response:
        headers = {"content-type": content_type, **(self.auth(role) if role else {})}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post(path, content=content, headers=headers)

    def wait_stored(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get("/healthz").json()["spool"]["pending_records"] == 0:
                return
            time.sleep(0.05)
        raise AssertionError("the spool did not drain into the store")

    def stored(self, kind: str, column: str) -> list[Any]:
        con = LogStore(self.data / "log").connect()
        return con.to_pyarrow(con.table(kind).select(column)).column(column).to_pylist()

    def rejected(self) -> list[dict[str, Any]]:
        con = LogStore(self.data / "log").connect()
        return con.to_pyarrow(con.table("rejected").drop("raw")).to_pylist()


def start(tmp_path: Path, **config: Any) -> tuple[Path, ServerThread, dict[str, str]]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    keys = {
        role: create_key(state, role, name=f"test {role}")[0]
        for role in ("ingest", "reviewer", "operator")
    }
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    cfg = ServerConfig(max_body_bytes=MAX_BODY, **config)
    return data, ServerThread(create_app(settings, cfg)).start(), keys


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Srv]:
    data, thread, keys = start(tmp_path, flush_interval_s=0.1)
    s = Srv(data, thread, keys)
    yield s
    s.http.close()
    thread.stop()


def assert_error_shape(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "field", "details"}
    return body["error"]


def test_invalid_records_are_rejected_with_field_and_reason_while_valid_ones_are_stored(
    srv: Srv,
) -> None:
    batch = {
        "records": [
            record("ok-1"),
            record("bad-latency", latency_ms=-3),
            record("ok-2", human_feedback_score=4),
            record("bad-ts", timestamp="2026-11-02 10:05"),
            "not an object",
        ]
    }
    resp = srv.post("/v1/logs", batch)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["received"], body["accepted"], body["invalid"]) == (5, 2, 3)
    by_index = {r["index"]: r for r in body["results"]}
    assert [by_index[i]["status"] for i in range(5)] == [
        "accepted",
        "invalid",
        "accepted",
        "invalid",
        "invalid",
    ]
    assert by_index[1]["key"] == "bad-latency"
    assert by_index[1]["field"] == "latency_ms"
    assert "greater than or equal to 0" in by_index[1]["reason"]
    assert by_index[3]["field"] == "timestamp"
    assert "time zone" in by_index[3]["reason"]
    assert by_index[4]["field"] == "(record)"

    srv.wait_stored()
    assert sorted(srv.stored("requests", "request_id")) == ["ok-1", "ok-2"]
    rejected = {r["record_key"]: r for r in srv.rejected()}
    assert rejected["bad-latency"]["field"] == "latency_ms"
    assert rejected["bad-ts"]["field"] == "timestamp"
    assert rejected["bad-latency"]["source"] == "http:/v1/logs"
    assert len(rejected) == 3


def test_a_bare_list_a_single_object_and_ndjson_are_batches_too(srv: Srv) -> None:
    assert srv.post("/v1/logs", [record("list-1"), record("list-2")]).json()["accepted"] == 2
    assert srv.post("/v1/logs", record("single")).json()["accepted"] == 1
    nd = "\n".join(json.dumps(record(f"nd-{i}")) for i in range(3)).encode() + b"\n"
    resp = srv.post("/v1/logs", nd, content_type="application/x-ndjson")
    assert resp.json()["accepted"] == 3
    srv.wait_stored()
    assert sorted(srv.stored("requests", "request_id")) == [
        "list-1",
        "list-2",
        "nd-0",
        "nd-1",
        "nd-2",
        "single",
    ]


def test_resending_a_batch_adds_nothing(srv: Srv) -> None:
    batch = [record(f"dup-{i}") for i in range(5)]
    for _ in range(3):
        assert srv.post("/v1/logs", batch).json()["accepted"] == 5
    srv.wait_stored()
    assert sorted(srv.stored("requests", "request_id")) == [f"dup-{i}" for i in range(5)]


def test_feedback_and_escalations_are_stored_as_events(srv: Srv) -> None:
    srv.post("/v1/logs", [record("r-1")])
    fb = srv.post(
        "/v1/feedback",
        {"request_id": "r-1", "timestamp": "2026-11-02T11:00:00Z", "score": 2},
        role="reviewer",
    )
    assert fb.status_code == 200, fb.text
    event_id = fb.json()["results"][0]["key"]
    assert event_id
    bad = srv.post(
        "/v1/feedback", [{"request_id": "r-1", "timestamp": "2026-11-02T11:00:00Z", "score": 9}]
    )
    assert bad.json()["results"][0]["field"] == "score"
    esc = srv.post(
        "/v1/escalations",
        [
            {
                "request_id": "r-1",
                "timestamp": "2026-11-02T12:00:00Z",
                "reason": "wrong oil grade",
                "category": "incorrect",
                "confirmed": True,
            }
        ],
    )
    assert esc.json()["accepted"] == 1
    srv.wait_stored()
    assert srv.stored("feedback", "event_id") == [event_id]
    assert srv.stored("escalations", "reason") == ["wrong oil grade"]


def test_malformed_json_is_400_in_the_error_shape(srv: Srv) -> None:
    err = assert_error_shape(
        srv.post("/v1/logs", b'{"records": [ {"request_id": '), 400, "malformed_json"
    )
    assert err["details"]["line"] == 1
    assert_error_shape(srv.post("/v1/logs", b""), 400, "malformed_json")
    assert_error_shape(srv.post("/v1/logs", b"\xff\xfe{}"), 400, "malformed_json")
    assert_error_shape(srv.post("/v1/logs", {"records": "nope"}), 400, "malformed_json")
    assert_error_shape(srv.post("/v1/logs", 42), 400, "malformed_json")


def test_wrong_content_type_is_415(srv: Srv) -> None:
    err = assert_error_shape(
        srv.post("/v1/logs", [record("x")], content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    assert err["field"] == "content-type"
    no_type = srv.http.post("/v1/logs", content=b"[]", headers=srv.auth())
    assert_error_shape(no_type, 415, "unsupported_media_type")
    form = srv.post("/v1/logs", b"a=1", content_type="application/x-www-form-urlencoded")
    assert_error_shape(form, 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_413_declared_or_streamed(srv: Srv) -> None:
    big = [record(f"big-{i}", user_prompt="x" * 2000) for i in range(40)]
    body = json.dumps(big).encode()
    assert len(body) > MAX_BODY
    err = assert_error_shape(srv.post("/v1/logs", body), 413, "payload_too_large")
    assert err["details"]["limit_bytes"] == MAX_BODY

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    streamed = srv.http.post(
        "/v1/logs", content=chunks(), headers={"content-type": "application/json", **srv.auth()}
    )
    assert_error_shape(streamed, 413, "payload_too_large")
    srv.wait_stored()
    assert srv.stored("requests", "request_id") == []


def test_writes_need_a_key_with_a_suitable_role(srv: Srv) -> None:
    assert_error_shape(srv.post("/v1/logs", [record("k")], role=None), 401, "unauthorized")
    wrong = srv.http.post(
        "/v1/logs", json=[record("k")], headers={"Authorization": "Bearer mw_not-a-key"}
    )
    assert_error_shape(wrong, 401, "unauthorized")
    basic = srv.http.post("/v1/logs", json=[record("k")], headers={"Authorization": "Basic eDp5"})
    assert_error_shape(basic, 401, "unauthorized")
    err = assert_error_shape(srv.post("/v1/logs", [record("k")], role="reviewer"), 403, "forbidden")
    assert err["details"]["role"] == "reviewer"
    routes = srv.http.put(
        "/v1/routes",
        headers=srv.auth("ingest"),
        json={"stable": {"version": "v1", "url": "http://127.0.0.1:9"}},
    )
    assert_error_shape(routes, 403, "forbidden")
    assert_error_shape(srv.http.put("/v1/routes", json={}), 401, "unauthorized")
    assert_error_shape(
        srv.post("/v1/traces", {"resourceSpans": []}, role=None), 401, "unauthorized"
    )
    # Reads need no key.
    assert srv.http.get("/v1/kpis").status_code == 200
    assert srv.post("/v1/logs", [record("k")], role="operator").status_code == 200


def test_a_revoked_key_stops_working(srv: Srv) -> None:
    assert srv.post("/v1/logs", [record("before")]).status_code == 200
    state = StateStore.at(srv.data)
    ingest_key = next(k for k in list_keys(state) if k.role == "ingest")
    revoke_key(state, ingest_key.id)
    state.close()
    time.sleep(1.1)  # the key cache's lifetime
    assert_error_shape(srv.post("/v1/logs", [record("after")]), 401, "unauthorized")


def test_an_acknowledged_batch_is_on_disk_in_the_spool_before_the_store_has_it(
    tmp_path: Path,
) -> None:
    data, thread, keys = start(tmp_path, flush_interval_s=60)
    s = Srv(data, thread, keys)
    try:
        assert s.post("/v1/logs", [record("spooled-1"), record("spooled-2")]).status_code == 200
        segments = sorted((data / "spool").glob("seg-*.jsonl"))
        assert len(segments) == 1
        line = json.loads(segments[0].read_bytes().splitlines()[0])
        assert [raw["request_id"] for _loc, raw in line["items"]] == ["spooled-1", "spooled-2"]
        assert s.stored("requests", "request_id") == []
        assert s.http.get("/healthz").json()["spool"]["pending_records"] == 2
    finally:
        s.http.close()
        thread.stop()
    # A clean shutdown moves everything into the store and leaves no segment behind.
    assert sorted(s.stored("requests", "request_id")) == ["spooled-1", "spooled-2"]
    assert list((data / "spool").glob("seg-*.jsonl")) == []


def test_errors_everywhere_share_the_shape(srv: Srv) -> None:
    assert_error_shape(srv.http.get("/v1/nothing-here"), 404, "not_found")
    assert_error_shape(srv.http.delete("/v1/logs"), 405, "method_not_allowed")
    err = assert_error_shape(
        srv.http.get("/v1/kpis", params={"window": "fortnight"}), 422, "invalid_parameter"
    )
    assert err["field"] == "window"
    err = assert_error_shape(
        srv.http.get("/v1/kpis", params={"since": "yesterday"}), 400, "bad_input"
    )
    assert err["field"] == "since"
    assert_error_shape(
        srv.http.get("/v1/kpis", params={"by": "plant_id,plant_id"}), 400, "bad_input"
    )
    assert_error_shape(srv.http.get("/v1/reports/weekly"), 404, "not_found")


def test_openapi_documents_every_endpoint(srv: Srv) -> None:
    doc = srv.http.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/logs", "post"),
        ("/v1/feedback", "post"),
        ("/v1/escalations", "post"),
        ("/v1/traces", "post"),
        ("/v1/kpis", "get"),
        ("/v1/drift", "get"),
        ("/v1/reports/weekly", "get"),
        ("/v1/chat/completions", "post"),
        ("/v1/routes", "get"),
        ("/v1/routes", "put"),
        ("/metrics", "get"),
        ("/healthz", "get"),
    ]:
        assert method in paths[path], (path, method)
    schemas = doc["components"]["schemas"]
    assert "RequestRecord" in schemas and "ErrorBody" in schemas
    assert "HTTPValidationError" not in json.dumps(doc)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
