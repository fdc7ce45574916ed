"""``modelwarden serve`` on a uvicorn that is not the one the gateway's fast path was built for.

A real server process is started through a small launcher that first replaces uvicorn's httptools
module by a copy without ``STATUS_LINE`` (as a uvicorn that renamed it would be); the launcher
then runs the real ``modelwarden`` command. The fast path's own detection must notice, warn once
and leave every request to uvicorn's standard path: chat completions and ingest still work. The
same launcher without the change is the control: no warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.store.state import StateStore

V11 = "sop-assistant-v1.1"
LAUNCHER = """
import importlib
import sys
import types

mode = sys.argv.pop(1)
real = importlib.import_module("uvicorn.protocols.http.httptools_impl")
if mode == "renamed":
    changed = types.ModuleType(real.__name__)
    changed.__dict__.update(real.__dict__)
    changed._STATUS_LINES = changed.__dict__.pop("STATUS_LINE")
    sys.modules[real.__name__] = changed

from modelwarden.cli import main

sys.argv[0] = "modelwarden"
main()
"""
WARNING = "the gateway's fast path is off"


def serve(tmp_path: Path, mode: str) -> tuple[str, str]:
    """Start the launcher in ``mode``, send a chat request and an ingest batch; return the answers'
    models joined with the server's stderr."""
    data = tmp_path / mode / "warden-data"
    state = StateStore.at(data)
    key = create_key(state, "operator", name="ops")[0]
    ingest = create_key(state, "ingest", name="ingest")[0]
    upstream = ServerThread(fake_upstream.create_app(V11, latency_ms=1)).start()
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url=upstream.url)))
    state.close()
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    stderr = tmp_path / mode / "stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [
                *(sys.executable, str(launcher), mode, "--data", str(data), "serve"),
                *("--port", str(port), "--log-level", "warning", "--gateway-auth", "required"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "MODELWARDEN_EMBEDDER": "hashing"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, stderr.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=10) as http:
            models = []
            for n in range(3):  # a kept-alive connection, several requests on it
                resp = http.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "PPE for acid?"}]},
                    headers={"Authorization": f"Bearer {key}", "X-User-Id": f"op-{n}"},
                )
                assert resp.status_code == 200, resp.text
                assert resp.headers["x-modelwarden-version"] == V11
                models.append(resp.json()["model"])
            refused = http.post("/v1/chat/completions", json={"messages": []})
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
            batch = http.post(
                "/v1/logs",
                json=[
                    {
                        "request_id": f"{mode}-1",
                        "timestamp": "2026-11-02T10:05:00Z",
                        "plant_id": "Plant_B",
                        "model_version": V11,
                        "user_prompt": "Coolant?",
                        "generated_response": "6 to 8 percent.",
                        "latency_ms": 200,
                    }
                ],
                headers={"Authorization": f"Bearer {ingest}"},
            )
            assert batch.status_code == 200 and batch.json()["accepted"] == 1, batch.text
    finally:
        proc.terminate()
        proc.wait(30)
        upstream.stop()
    return ",".join(models), stderr.read_text()


@pytest.mark.timeout(240)
def test_a_changed_uvicorn_falls_back_to_the_standard_path_with_a_warning(
    tmp_path: Path,
) -> None:
    models, err = serve(tmp_path, "renamed")
    assert models == ",".join([V11] * 3)
    assert err.count(WARNING) == 1, err[-3000:]
    assert "STATUS_LINE" in err and "uvicorn's standard path" in err
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.timeout(240)
def test_the_pinned_uvicorn_keeps_the_fast_path_without_a_warning(tmp_path: Path) -> None:
    models, err = serve(tmp_path, "as-is")
    assert models == ",".join([V11] * 3)
    assert WARNING not in err and "Traceback" not in err, err[-3000:]
