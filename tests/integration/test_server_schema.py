"""Schemathesis over ``/openapi.json``: whatever a client sends, with or without a key, the server
never answers 5xx, and every answer conforms to the contract (status code, content type, headers
and body schema).

Two bounded runs (an ingest key, then no key) of the examples, fuzzing and stateful phases over
every operation, with a fixed seed: about 1,300 generated cases together (at least 500 asserted),
in about a minute on two cores. The three read endpoints that compute over the whole store get
fewer examples each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
MIN_CASES = 500
CONFIG = """
request-timeout = 60
generation.max-examples = 15

# Reads that compute over the whole store: a few examples each are enough.
[[operations]]
include-path-regex = "^/v1/(reports/weekly|drift|kpis)$"
generation.max-examples = 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("schema") / "warden-data"
    state = StateStore.at(data)
    # An ingest key: writes are exercised with and without it; route changes stay forbidden, so
    # the gateway keeps a working upstream (a route to nowhere would rightly answer 502).
    key, _ = create_key(state, "ingest")
    upstream = ServerThread(fake_upstream.create_app("sop-assistant-v1.1", latency_ms=0)).start()
    set_routes(state, RouteSpec(stable=Upstream(version="sop-assistant-v1.1", url=upstream.url)))
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    config = ServerConfig(
        flush_interval_s=0.2,
        max_body_bytes=256 * 1024,
        run_controller=False,
        # Generated requests without a key or with a broken one are refused by the hundred;
        # the failed-auth throttle would answer them 429 instead of showing the 401 and 403.
        auth_max_failures=1_000_000,
    )
    with ServerThread(create_app(settings, config)) as srv:
        yield srv.url, key
    upstream.stop()


def run_schemathesis(url: str, tmp: Path, headers: list[str]) -> tuple[dict[str, Any], str]:
    assert ST is not None
    cfg = tmp / "schemathesis.toml"
    cfg.write_text(CONFIG)
    report = tmp / "report.json"
    res = subprocess.run(
        [
            ST,
            "--config-file",
            str(cfg),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            *[arg for h in headers for arg in ("-H", h)],
            "--phases",
            "examples,fuzzing,stateful",
            "--seed",
            "7",
            # One worker: hypothesis parses lambdas with `ast`, not thread-safe on Python 3.11.
            "--workers",
            "1",
            "--no-shrink",
            "--warnings",
            "off",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = res.stdout[-6000:] + res.stderr[-2000:]
    assert report.exists(), out
    summary: dict[str, Any] = json.loads(report.read_text())
    assert res.returncode == 0, out
    return summary, out


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (the test extra)")
@pytest.mark.timeout(600)
def test_generated_requests_with_and_without_a_key_get_conforming_answers(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, key = server
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    operations = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    # Every route is in the contract.
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
        ("GET", "/v1/notifications"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    } <= operations
    runs = {}
    for name, headers in (("key", [f"Authorization: Bearer {key}"]), ("no key", [])):
        (tmp_path / name).mkdir()
        runs[name] = run_schemathesis(url, tmp_path / name, headers)
    total = 0
    for name, (summary, out) in runs.items():
        assert summary["complete"] and summary["stop_reason"] == "completed", (name, out)
        assert summary["failures"] == [] and summary["errors"] == [], (name, out)
        cases = summary["test_cases"]
        assert cases["with_failures"] == 0 and cases["errored"] == 0, (name, cases)
        # Every operation in the contract was exercised, in both runs.
        ops = summary["operations"]
        assert ops["selected"] == ops["tested"] == len(operations), (name, ops)
        assert ops["errored"] == 0 and ops["skipped"] == 0, (name, ops)
        total += cases["generated"]
    assert total >= MIN_CASES, {n: s["test_cases"] for n, (s, _) in runs.items()}
