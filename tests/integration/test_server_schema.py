"""Schemathesis over ``/openapi.json``: whatever a client sends, the server never answers 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

ST = shutil.which("st", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (the test extra)")
@pytest.mark.timeout(480)
def test_no_server_errors_for_generated_requests(tmp_path: Path) -> None:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    # One worker: hypothesis parses lambdas with `ast`, which is not thread-safe on Python 3.11.
    # An ingest key: writes are exercised with and without it; route changes stay forbidden, so
    # the gateway keeps a working upstream (a route to nowhere would rightly answer 502).
    key, _ = create_key(state, "ingest")
    upstream = ServerThread(fake_upstream.create_app("sop-assistant-v1.1", latency_ms=0)).start()
    set_routes(state, RouteSpec(stable=Upstream(version="sop-assistant-v1.1", url=upstream.url)))
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    app = create_app(settings, ServerConfig(flush_interval_s=0.2, max_body_bytes=256 * 1024))
    with ServerThread(app) as srv:
        spec = httpx.get(f"{srv.url}/openapi.json", timeout=10).json()
        operations = {
            (method.upper(), path)
            for path, item in spec["paths"].items()
            for method in item
            if method in ("get", "put", "post", "delete", "patch")
        }
        res = subprocess.run(
            [
                ST,
                "run",
                f"{srv.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "-H",
                f"Authorization: Bearer {key}",
                "--max-examples",
                "15",
                "--seed",
                "7",
                "--workers",
                "1",
                "--max-time",
                "120",
                "--no-shrink",
                "--warnings",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=420,
            check=False,
        )
    upstream.stop()
    assert "Server error" not in res.stdout, res.stdout[-6000:]
    assert "Tested:" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.returncode == 0, res.stdout[-6000:]
    # Every route is in the contract, and every operation in it was exercised.
    assert {
        ("POST", "/v1/logs"),
        ("POST", "/v1/feedback"),
        ("POST", "/v1/escalations"),
        ("POST", "/v1/traces"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/kpis"),
        ("GET", "/v1/drift"),
        ("GET", "/v1/reports/weekly"),
        ("GET", "/v1/routes"),
        ("PUT", "/v1/routes"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    } <= operations
    n = len(operations)
    assert f"Selected: {n}/{n}" in res.stdout, res.stdout[-3000:]
    assert f"Tested: {n}\n" in res.stdout, res.stdout[-3000:]
