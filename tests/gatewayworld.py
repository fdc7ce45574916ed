"""A real gateway (the ``serve`` app on a real socket) in front of real fake upstreams, for tests.

``Gw`` wraps a running server: an official ``openai`` client for it, the route table, the records
it has stored and its metrics. ``fake_upstreams`` starts fake OpenAI-compatible model servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

from modelwarden.gateway import fake_upstream
from modelwarden.governance.routes import RouteSpec, Upstream, set_routes
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, wait_for_spool
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore
from modelwarden.store.state import StateStore

V11, V12, V13 = "sop-assistant-v1.1", "sop-assistant-v1.2", "sop-assistant-v1.3"


@contextmanager
def fake_upstreams(**specs: tuple[str, dict[str, Any]]) -> Iterator[dict[str, str]]:
    """``name=(version, fake_upstream.create_app keyword arguments)`` → ``{name: base URL}``."""
    threads = {
        name: ServerThread(fake_upstream.create_app(version, **kw)).start()
        for name, (version, kw) in specs.items()
    }
    try:
        yield {name: t.url for name, t in threads.items()}
    finally:
        for t in threads.values():
            t.stop()


class Gw:
    def __init__(self, data: Path, thread: ServerThread) -> None:
        self.data = data
        self.thread = thread
        self.url = thread.url
        self.state = StateStore.at(data)

    def client(self, key: str = "no-key-needed", **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kw)

    def routes(self, **spec: Any) -> None:
        set_routes(self.state, RouteSpec(**spec), created_by="test")
        self.thread.server.config.app.state.runtime.routes.invalidate()

    def records(self, n: int | None = None) -> dict[str, dict[str, Any]]:
        """The stored request records by id; with ``n``, wait (up to 15 s) until there are n."""
        deadline = time.monotonic() + 15
        while True:
            wait_for_spool(self.url)
            con = LogStore(self.data / "log").connect()
            try:
                rows = con.to_pyarrow(con.table("requests")).to_pylist()
            except Exception:  # no table before the first record
                rows = []
            if n is None or len(rows) >= n or time.monotonic() > deadline:
                return {r["request_id"]: r for r in rows}
            time.sleep(0.05)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


@contextmanager
def gateway(data: Path, stable_url: str, **config: Any) -> Iterator[Gw]:
    """A gateway on ``data`` with ``stable_url`` as the stable route (``V11``)."""
    settings = Settings(data_dir=data, embedder="hashing", embed_threads=1)
    cfg = ServerConfig(**{"flush_interval_s": 0.1, "upstream_timeout_s": 10, **config})
    thread = ServerThread(create_app(settings, cfg)).start()
    g = Gw(data, thread)
    try:
        g.routes(stable=Upstream(version=V11, url=stable_url))
        yield g
    finally:
        thread.stop()
        g.state.close()
