"""The gateway keeps its upstream connections alive: one connection for sequential requests."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httptools
import httpx
import pytest

from modelwarden.gateway.transport import PooledTransport, new_client
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

VERSION = "sop-assistant-v1.1"
ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": VERSION,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "85 Nm."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
).encode()


class CountingUpstream:
    """A real HTTP/1.1 server on a port that answers every request with one chat completion and
    counts the connections it accepts; ``close=True`` answers with ``Connection: close``."""

    def __init__(self, close: bool = False) -> None:
        self.close = close
        self.connections = 0
        self.requests = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _Conn(asyncio.Protocol):
    def __init__(self, owner: CountingUpstream) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner.connections += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.owner.requests += 1
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + b"content-length: "
            + str(len(ANSWER)).encode()
            + b"\r\n"
            + (b"connection: close\r\n" if self.owner.close else b"")
            + b"\r\n"
        )
        self.transport.write(head + ANSWER)  # type: ignore[attr-defined]
        if self.owner.close:
            self.transport.close()


@pytest.fixture
def upstream() -> Iterator[CountingUpstream]:
    up = CountingUpstream()
    yield up
    up.stop()


BODY = json.dumps({"model": VERSION, "messages": [{"role": "user", "content": "torque?"}]})


def test_the_transport_reuses_one_connection(upstream: CountingUpstream) -> None:
    async def run() -> None:
        transport = PooledTransport()
        client = new_client(
            timeout=httpx.Timeout(10), max_connections_per_origin=8, transport=transport
        )
        url = f"{upstream.url}/v1/chat/completions"
        for _ in range(5):
            status, _headers, body = await transport.post_json(
                url, BODY.encode(), httpx.Timeout(10)
            )
            assert (status, body) == (200, ANSWER)
        for _ in range(5):
            resp = await client.post(
                url, content=BODY, headers={"content-type": "application/json"}
            )
            assert resp.content == ANSWER
        await client.aclose()

    asyncio.run(run())
    assert (upstream.requests, upstream.connections) == (10, 1)


def test_an_upstream_that_closes_gets_a_new_connection_each_time() -> None:
    up = CountingUpstream(close=True)
    try:

        async def run() -> None:
            transport = PooledTransport()
            for _ in range(3):
                status, _h, _b = await transport.post_json(
                    f"{up.url}/v1/chat/completions", BODY.encode(), httpx.Timeout(10)
                )
                assert status == 200

        asyncio.run(run())
        assert (up.requests, up.connections) == (3, 3)
    finally:
        up.stop()


def test_the_gateway_reuses_its_upstream_connection(
    tmp_path: Path, upstream: CountingUpstream
) -> None:
    data = tmp_path / "warden-data"
    state = StateStore.at(data)
    set_routes(state, RouteSpec(stable=Upstream(version=VERSION, url=upstream.url)))
    state.close()
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    with (
        ServerThread(create_app(settings, ServerConfig(flush_interval_s=0.2))) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as http,
    ):
        for _ in range(8):
            resp = http.post(
                "/v1/chat/completions", content=BODY, headers={"content-type": "application/json"}
            )
            assert resp.status_code == 200
            assert resp.json()["choices"][0]["message"]["content"] == "85 Nm."
    assert (upstream.requests, upstream.connections) == (8, 1)
