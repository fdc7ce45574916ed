"""Running an ASGI app with uvicorn: in the foreground (``modelwarden serve``) or in a thread.

The thread form runs a real server on a real port inside the current process, for embedding
ModelWarden in another program, for tests and for benchmarks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from modelwarden.net import tls_context


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def uvicorn_config(
    app: Any, host: str, port: int, *, log_level: str = "warning", access_log: bool = False
) -> uvicorn.Config:
    # lazy: the fast protocol imports the whole gateway; fake-upstream runs without it
    from modelwarden.server.fast_http import protocol_for

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        # httptools; for ModelWarden's app, with the gateway's fast path (see fast_http).
        http=protocol_for(app),
        log_level=log_level,
        access_log=access_log,
        # Long enough that a client reusing connections between requests keeps them.
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def serve_forever(
    app: Any, host: str, port: int, *, log_level: str = "info", access_log: bool = False
) -> None:
    uvicorn.Server(
        uvicorn_config(app, host, port, log_level=log_level, access_log=access_log)
    ).run()


class ServerThread:
    """A uvicorn server on ``host:port`` in a daemon thread; ``url`` once it is started."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(uvicorn_config(app, self.host, self.port, log_level=log_level))
        self.thread = threading.Thread(
            target=self.server.run, name=f"uvicorn-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on port {self.port} did not start in {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int | None = None) -> Iterator[ServerThread]:
    with ServerThread(app, host, port) as srv:
        yield srv


def wait_for_spool(
    base_url: str, timeout: float = 15, headers: dict[str, str] | None = None
) -> None:
    """Block until the server at ``base_url`` has moved every acknowledged record into the store.

    For read-your-writes: the ingest API answers once a batch is durable, and the log store (which
    the read API queries) takes it in a moment later.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=5, headers=headers, verify=tls_context()) as http:
        while True:
            spool = http.get("/healthz").json()["spool"]
            if spool["pending_records"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{spool['pending_records']} records still in the spool")
            time.sleep(0.05)
