"""``/metrics``: Prometheus text with bounded labels, after real gateway and ingest traffic."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from modelwarden.gateway import fake_upstream
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

V11, V12 = "sop-assistant-v1.1", "sop-assistant-v1.2"
GATEWAY_LABELS = {"model_version", "plant", "route"}
# The outputs (drift, SOP rules, incidents, review queues) have labels of their own, all bounded.
OUTPUT_LABELS = {"kind", "scope", "rule", "state", "severity", "queue"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_metrics_after_gateway_and_ingest_traffic(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    key, _ = create_key(state, "ingest")
    up = ServerThread(fake_upstream.create_app(V11, latency_ms=20)).start()
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=up.url),
            canary=Upstream(version=V12, url=f"http://127.0.0.1:{free_port()}"),
            canary_weight=100,
            canary_plants=["Plant_A"],
        ),
    )
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "x", "messages": [{"role": "user", "content": "lubrication schedule?"}]}
    with (
        ServerThread(create_app(settings, ServerConfig(flush_interval_s=30))) as srv,
        httpx.Client(base_url=srv.url, timeout=10, headers=auth) as http,
    ):
        for i in range(4):
            r = http.post(
                "/v1/chat/completions",
                json={**body, "user": f"u{i}"},
                headers={"X-Plant-Id": "Plant_B"},
            )
            assert r.status_code == 200
        # The canary is down: served by stable, counted against the canary.
        assert (
            http.post(
                "/v1/chat/completions",
                json={**body, "user": "u9"},
                headers={"X-Plant-Id": "Plant_A"},
            ).status_code
            == 200
        )
        ingest = http.post("/v1/logs", json=[{"request_id": "x"}, {"request_id": "y"}])
        assert ingest.json()["invalid"] == 2
        # Gateway records are written after their answers went out; give the last one a moment.
        deadline = time.monotonic() + 5
        while True:
            resp = http.get("/metrics")
            if "modelwarden_spool_depth_records 8.0" in resp.text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    up.stop()

    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    m = samples(resp.text)

    def get(name: str, **labels: str) -> float:
        return m[(name, frozenset(labels.items()))]

    b = {"model_version": V11, "plant": "Plant_B", "route": "stable"}
    assert get("modelwarden_gateway_requests_total", **b) == 4
    assert get("modelwarden_gateway_request_duration_seconds_count", **b) == 4
    assert get("modelwarden_gateway_request_duration_seconds_sum", **b) >= 4 * 0.02
    assert get("modelwarden_gateway_request_duration_seconds_bucket", **b, le="0.01") == 0
    assert get("modelwarden_gateway_request_duration_seconds_bucket", **b, le="+Inf") == 4
    assert get("modelwarden_gateway_overhead_seconds_count", **b) == 4
    assert get("modelwarden_gateway_overhead_seconds_sum", **b) < 4 * 0.02
    assert get("modelwarden_prompt_tokens_total", **b) == 4 * 2
    canary = {"model_version": V12, "plant": "Plant_A", "route": "canary"}
    assert get("modelwarden_upstream_errors_total", **canary) == 1
    assert get("modelwarden_canary_fallbacks_total", **canary) == 1
    assert (
        get(
            "modelwarden_gateway_requests_total", model_version=V11, plant="Plant_A", route="stable"
        )
        == 1
    )
    assert get("modelwarden_ingest_invalid_records_total") == 2
    # Nothing was moved into the store yet (a 30 s flush interval): 5 gateway records, and the
    # failed canary attempt, and the two invalid ingest records wait in the spool.
    assert get("modelwarden_spool_depth_records") == 5 + 1 + 2
    assert get("modelwarden_spool_depth_bytes") > 0

    for family in text_string_to_metric_families(resp.text):
        if family.name.startswith("modelwarden_"):
            for s in family.samples:
                allowed = GATEWAY_LABELS | OUTPUT_LABELS
                assert set(s.labels) - {"le"} <= allowed, (s.name, s.labels)
