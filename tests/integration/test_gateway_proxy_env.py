"""The gateway reaches its upstreams through the proxy the environment names, unless NO_PROXY
excludes them: a real forward proxy on 127.0.0.1 counts what it forwarded."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.gateway.transport import env_proxy
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

VERSION = "sop-assistant-v1.1"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
QUESTION = "What torque for the M12 flange bolts?"
BODY = {"model": VERSION, "messages": [{"role": "user", "content": QUESTION}]}


class ForwardProxy:
    """An HTTP forward proxy: takes absolute-form requests, forwards them, counts them."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                target = urllib.parse.urlsplit(self.path)
                if not target.scheme:  # not a proxy request
                    self.send_error(400, "absolute-form request expected")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                up = http.client.HTTPConnection(target.netloc, timeout=30)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "proxy-connection", "keep-alive")
                }
                up.request(self.command, target.path or "/", body=body, headers=headers)
                r = up.getresponse()
                data = r.read()
                up.close()
                owner.forwarded.append(f"{self.command} {self.path}")
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    p = ForwardProxy()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    srv = ServerThread(fake_upstream.create_app(VERSION, latency_ms=0)).start()
    yield srv.url
    srv.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@contextmanager
def gateway(tmp_path: Path, upstream: str) -> Iterator[httpx.Client]:
    """A client of a fresh gateway routing to ``upstream``. The client itself goes straight to
    the gateway, whatever the environment says."""
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(state, RouteSpec(stable=Upstream(version=VERSION, url=upstream)))
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    with (
        ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.2))) as srv,
        httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as client,
    ):
        yield client


def ask_gateway(tmp_path: Path, upstream: str) -> tuple[dict[str, object], str]:
    """One plain and one streamed chat completion through a fresh gateway routing to upstream."""
    with gateway(tmp_path, upstream) as client:
        plain = client.post("/v1/chat/completions", json=BODY)
        assert plain.status_code == 200, plain.text
        streamed = client.post("/v1/chat/completions", json={**BODY, "stream": True})
        assert streamed.status_code == 200, streamed.text
        text = ""
        for line in streamed.text.splitlines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
        return plain.json(), text


EXPECTED = fake_upstream.answer_for(QUESTION, "good")


def test_http_proxy_carries_the_upstream_calls(
    tmp_path: Path,
    upstream: str,
    proxy: ForwardProxy,
    clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    with caplog.at_level("WARNING", logger="modelwarden.gateway"):
        answer, streamed = ask_gateway(tmp_path, upstream)
    assert answer["choices"][0]["message"]["content"] == EXPECTED  # type: ignore[index]
    assert streamed == EXPECTED
    # Both calls, plain and streamed, went through the proxy, in absolute form.
    assert proxy.forwarded == [f"POST {upstream}/v1/chat/completions"] * 2
    warnings = [r.getMessage() for r in caplog.records if "through the proxy" in r.getMessage()]
    assert len(warnings) == 1 and proxy.url in warnings[0]


def test_no_proxy_sends_the_calls_direct(
    tmp_path: Path, upstream: str, proxy: ForwardProxy, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "example.com,127.0.0.1")
    answer, streamed = ask_gateway(tmp_path, upstream)
    assert answer["choices"][0]["message"]["content"] == EXPECTED  # type: ignore[index]
    assert streamed == EXPECTED
    assert proxy.forwarded == []


def test_an_unreachable_proxy_fails_the_call_as_an_upstream_failure(
    tmp_path: Path, upstream: str, clean_env: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 9 of 127.0.0.1: the direct upstream would answer, the proxy cannot.
    clean_env.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with gateway(tmp_path, upstream) as client:
        resp = client.post("/v1/chat/completions", json=BODY)
    assert resp.status_code == 502
    assert "ConnectError" in resp.json()["error"]["message"]


def test_env_proxy_rules(clean_env: pytest.MonkeyPatch) -> None:
    assert env_proxy("http://model:8000/v1") is None
    clean_env.setenv("HTTPS_PROXY", "proxy.corp:3128")
    assert env_proxy("http://model:8000/v1") is None  # the scheme's own variable only
    assert env_proxy("https://model/v1") == "http://proxy.corp:3128"
    clean_env.setenv("ALL_PROXY", "http://all.corp:8080")
    assert env_proxy("http://model:8000/v1") == "http://all.corp:8080"
    clean_env.setenv("https_proxy", "http://lower.corp:1")  # lower case wins
    assert env_proxy("https://model/v1") == "http://lower.corp:1"
    # localhost is proxied like any host unless NO_PROXY names it.
    assert env_proxy("http://localhost:8000") == "http://all.corp:8080"
    clean_env.setenv("NO_PROXY", "localhost, .internal,example.com,10.0.0.7:8000")
    assert env_proxy("http://localhost:8000") is None
    assert env_proxy("http://gpu1.internal/v1") is None
    assert env_proxy("https://api.example.com/v1") is None
    assert env_proxy("https://notexample.com/v1") == "http://lower.corp:1"
    assert env_proxy("http://10.0.0.7:8000/v1") is None
    assert env_proxy("http://10.0.0.7:9000/v1") == "http://all.corp:8080"
    clean_env.setenv("no_proxy", "*")
    assert env_proxy("https://anything/v1") is None
