"""The chat endpoint's direct path in the HTTP protocol answers exactly as the app would.

Raw sockets, so that keep-alive, ``Connection: close``, HTTP/1.0 and pipelining are what the
server sees; the same requests through the ASGI app (a non-JSON content type that the direct path
hands over, the ``+json`` media type) must give the same answers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import httpx
import pytest

from modelwarden.gateway import fake_upstream
from modelwarden.governance.keys import create_key
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.fast_http import GatewayHttpProtocol
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11 = "sop-assistant-v1.1"
BODY = {
    "model": "x",
    "user": "op-1",
    "messages": [{"role": "user", "content": "What torque for the M12 flange bolts?"}],
}


class Srv:
    def __init__(self, url: str, data: Path, key: str) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.data = data
        self.key = key


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with ServerThread(fake_upstream.create_app(V11, latency_ms=0)) as up:
        yield up.url


@pytest.fixture
def srv(tmp_path: Path, upstream: str) -> Iterator[Srv]:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url=upstream)))
    key = create_key(state, "ingest", name="t")[0]
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1, gateway_auth="required")
    app = create_app(settings, ServerConfig(flush_interval_s=0.1, max_body_bytes=4096))
    with ServerThread(app) as thread:
        assert thread.server.config.http_protocol_class is GatewayHttpProtocol
        yield Srv(thread.url, data, key)


class Replies:
    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []
        self.parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append(
            {"status": self.parser.get_status_code(), "headers": self._headers, "body": self._body}
        )
        self._headers, self._body = {}, b""


def request(
    body: bytes,
    key: str | None,
    *,
    version: str = "1.1",
    extra: str = "",
    ctype: str = "application/json",
) -> bytes:
    head = f"POST /v1/chat/completions HTTP/{version}\r\nHost: t\r\nContent-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body)}\r\n" + extra
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    return head.encode() + b"\r\n" + body


def exchange(
    port: int, data: bytes, n: int, timeout: float = 10
) -> tuple[list[dict[str, Any]], bool]:
    """Send ``data``, read ``n`` responses; also says whether the server closed the socket."""
    replies = Replies()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        closed = False
        while len(replies.done) < n:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            replies.parser.feed_data(chunk)
        if not closed:
            s.settimeout(0.3)
            try:
                closed = s.recv(1) == b""
            except TimeoutError:
                closed = False
    return replies.done, closed


def test_keep_alive_requests_on_one_connection_are_each_answered(srv: Srv) -> None:
    raws = [
        request(json.dumps(BODY).encode(), srv.key, extra=f"X-Request-Id: p{i}\r\n")
        for i in range(4)
    ]
    # Pipelined: all sent before any answer; the answers come back in order.
    replies, closed = exchange(srv.port, b"".join(raws), 4)
    assert [r["status"] for r in replies] == [200] * 4
    assert [r["headers"]["x-request-id"] for r in replies] == ["p0", "p1", "p2", "p3"]
    assert not closed
    # And one more on a connection of its own.
    replies += exchange(srv.port, raws[0].replace(b"p0", b"q0") * 1, 1)[0]
    for r in replies:
        assert json.loads(r["body"])["model"] == V11
        assert r["headers"]["x-modelwarden-route"] == "stable"
        assert r["headers"]["content-type"] == "application/json"
        assert int(r["headers"]["content-length"]) == len(r["body"])
    assert len({r["headers"]["x-request-id"] for r in replies}) == 5
    wait_for_spool(srv.url)
    con = LogStore(srv.data / "log").connect()
    ids = con.to_pyarrow(con.table("requests").select("request_id")).column(0).to_pylist()
    assert sorted(ids) == sorted(r["headers"]["x-request-id"] for r in replies)


@pytest.mark.parametrize("version, extra", [("1.1", "Connection: close\r\n"), ("1.0", "")])
def test_a_connection_that_asks_to_close_is_closed_after_the_answer(
    srv: Srv, version: str, extra: str
) -> None:
    replies, closed = exchange(
        srv.port, request(json.dumps(BODY).encode(), srv.key, version=version, extra=extra), 1
    )
    assert replies[0]["status"] == 200 and closed
    assert replies[0]["headers"]["connection"] == "close"


def test_errors_have_the_apps_shape_and_status(srv: Srv) -> None:
    cases = [
        (request(json.dumps(BODY).encode(), None), 401, "unauthorized"),
        (request(json.dumps(BODY).encode(), "sk-wrong"), 401, "unauthorized"),
        (request(b'{"messages": []}', srv.key), 400, "bad_input"),
        (request(b"{not json", srv.key), 400, "malformed_json"),
        (request(b"[1, 2]", srv.key), 400, "bad_input"),
        (
            request(json.dumps(BODY).encode(), srv.key, ctype="text/plain"),
            415,
            "unsupported_media_type",
        ),
        (
            request(json.dumps({**BODY, "pad": "x" * 5000}).encode(), srv.key),
            413,
            "payload_too_large",
        ),
    ]
    for raw, status, code in cases:
        (reply,), _closed = exchange(srv.port, raw, 1)
        assert reply["status"] == status, (raw[:80], reply)
        assert json.loads(reply["body"])["error"]["code"] == code


def test_the_fast_answer_equals_the_apps_answer(srv: Srv) -> None:
    # ``application/vnd.x+json`` is accepted by the app but not taken by the direct path.
    fast, _ = exchange(srv.port, request(json.dumps(BODY).encode(), srv.key), 1)
    slow, _ = exchange(
        srv.port, request(json.dumps(BODY).encode(), srv.key, ctype="application/vnd.x+json"), 1
    )
    a, b = fast[0], slow[0]
    assert a["status"] == b["status"] == 200
    assert json.loads(a["body"])["choices"] == json.loads(b["body"])["choices"]
    same = ("content-type", "x-modelwarden-route", "x-modelwarden-version", "server")
    assert {h: a["headers"][h] for h in same} == {h: b["headers"][h] for h in same}


def test_streaming_goes_through_the_app(srv: Srv) -> None:
    with httpx.stream(
        "POST",
        f"{srv.url}/v1/chat/completions",
        timeout=10,
        json={**BODY, "stream": True},
        headers={"Authorization": f"Bearer {srv.key}"},
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = resp.read().decode()
    assert text.rstrip().endswith("data: [DONE]")


def test_other_routes_are_untouched(srv: Srv) -> None:
    assert httpx.get(f"{srv.url}/v1/chat/completions").status_code == 405
    assert httpx.get(f"{srv.url}/healthz").json()["status"] == "ok"


def test_a_request_in_flight_at_shutdown_is_answered(tmp_path: Path) -> None:
    slow = ServerThread(fake_upstream.create_app(V11, latency_ms=600)).start()
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(state, RouteSpec(stable=Upstream(version=V11, url=slow.url)))
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    thread = ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.1))).start()
    got: list[Any] = []
    t = threading.Thread(
        target=lambda: got.append(
            exchange(thread.port, request(json.dumps(BODY).encode(), None), 1)
        )
    )
    t.start()
    time.sleep(0.3)
    thread.stop()
    t.join(10)
    slow.stop()
    (replies, closed) = got[0]
    assert replies[0]["status"] == 200 and closed


def test_pipelined_answers_keep_their_order_behind_a_slow_one(
    tmp_path: Path, upstream: str
) -> None:
    # The first request goes to a slow canary (Plant_B only), the ones pipelined behind it to a
    # fast stable version: their answers must still come after the first one's.
    slow = ServerThread(fake_upstream.create_app("sop-assistant-v1.2", latency_ms=400)).start()
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(
        state,
        RouteSpec(
            stable=Upstream(version=V11, url=upstream),
            canary=Upstream(version="sop-assistant-v1.2", url=slow.url),
            canary_weight=100,
            canary_plants=["Plant_B"],
        ),
    )
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    try:
        with ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.1))) as thread:
            raws = [
                request(
                    json.dumps(BODY).encode(),
                    None,
                    extra=f"X-Request-Id: s{i}\r\nX-Plant-Id: "
                    f"{'Plant_B' if i == 0 else 'Plant_A'}\r\n",
                )
                for i in range(3)
            ]
            replies, _ = exchange(thread.port, b"".join(raws), 3)
    finally:
        slow.stop()
    assert [r["headers"]["x-request-id"] for r in replies] == ["s0", "s1", "s2"]
    assert [r["headers"]["x-modelwarden-route"] for r in replies] == ["canary", "stable", "stable"]
