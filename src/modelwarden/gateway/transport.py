"""A lean HTTP/1.1 keep-alive transport for the gateway's one shared ``httpx.AsyncClient``.

httpcore's connection pool re-scans every pooled connection, and polls every idle socket, for
each request it places; with the few dozen connections a busy gateway keeps to its upstreams that
made the pool, not the network, the gateway's bottleneck (about 200 requests/s on two cores).
This transport keeps idle connections per origin in a LIFO list, notices a closed one from the
event loop's own callbacks instead of polling, and parses responses with ``httptools`` (the parser
uvicorn uses). It speaks what upstream model servers speak: HTTP/1.1, plain or TLS, with
Content-Length, chunked or read-to-close bodies.

Proxies come from the environment, as for most HTTP clients: ``HTTP_PROXY``, ``HTTPS_PROXY`` and
``ALL_PROXY`` (any case) name one for an upstream's scheme, and ``NO_PROXY`` lists the hosts that
are reached directly (see :func:`env_proxy`). An upstream a proxy applies to is reached through
httpx's own transport with that proxy (a warning says so once per upstream): slower, but it speaks
to forward proxies and tunnels through them. Every other upstream takes the fast path.

Everything above the transport (timeouts, content decoding, streaming) is still httpx's; errors
are raised as httpx's own exceptions, so callers cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

log = logging.getLogger("modelwarden.gateway")

# Reading stops while this much response body waits unread, so a slow client cannot make the
# gateway buffer a whole stream.
HIGH_WATER = 1 << 20


def env_proxy(url: str | httpx.URL) -> str | None:
    """The proxy the environment names for ``url``, or None when it is reached directly.

    ``HTTP_PROXY`` / ``HTTPS_PROXY`` (by the URL's scheme), else ``ALL_PROXY``, in either case
    (lower case wins), unless ``NO_PROXY`` names the host: ``*``, a host or IP address (with an
    optional port), or a domain that covers its subdomains (``example.com`` and ``.example.com``
    both cover ``api.example.com``). The rule is the standard library's
    (:func:`urllib.request.getproxies_environment`, :func:`urllib.request.proxy_bypass_environment`);
    ``localhost`` is not excluded unless ``NO_PROXY`` says so.
    """
    u = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(u.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = u.host if u.port is None else f"{u.host}:{u.port}"
    # The environment-only check (``proxy_bypass`` would also ask macOS's system settings); the
    # type stubs omit it.
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class _Expired(Exception):
    pass


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class _Conn(asyncio.Protocol):
    """One upstream connection, parsing one response at a time."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.error: Exception | None = None
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.keep_alive = False
        self.complete = False
        self.received_any = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but speak the same API.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        self._lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    # ---- httptools callbacks -------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        # Asked now: once the message is complete the parser no longer knows.
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # ---- state ---------------------------------------------------------------------------------
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.error = self.error or exc
        self.close()
        self._wake()

    def _lost(self, exc: Exception | None) -> None:
        was_open = not self.closed
        self.closed = True
        if self.head_done and not self.complete and was_open:
            headers = {k.lower() for k, _ in self.headers}
            if b"content-length" in headers or b"transfer-encoding" in headers:
                self.error = self.error or httpx.RemoteProtocolError(
                    "the upstream closed the connection in the middle of a response"
                )
            else:
                self.complete = True  # a body that runs to the end of the connection
        elif not self.head_done and self.error is None:
            self.error = httpx.RemoteProtocolError(
                "the upstream closed the connection without a response"
                + (f" ({exc})" if exc else "")
            )
        self._wake()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        fut = self.waiter = loop.create_future()
        # A timer on the future costs less than asyncio.wait_for's extra task on every read.
        timer = loop.call_later(timeout, _expire, fut) if timeout is not None else None
        try:
            await fut
        except _Expired:
            self.close()
            raise httpx.ReadTimeout("timed out waiting for the upstream") from None
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    async def read_head(self, timeout: float | None) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.wait(timeout)

    async def body(self, timeout: float | None) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.paused and self.buffered < HIGH_WATER // 2 and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                yield chunk
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            await self.wait(timeout)

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.error is None and self.keep_alive


class _Body(httpx.AsyncByteStream):
    def __init__(self, pool: PooledTransport, conn: _Conn, timeout: float | None) -> None:
        self.pool = pool
        self.conn = conn
        self.timeout = timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.conn.body(self.timeout):
                yield chunk
        except OSError as exc:
            self.conn.close()
            raise httpx.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        if self.done:
            return
        self.done = True
        self.pool.release(self.conn)


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin, reused newest first."""

    def __init__(
        self,
        *,
        max_connections_per_origin: int = 256,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_per_origin = max_connections_per_origin
        self.keepalive_expiry = keepalive_expiry
        self.ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open: dict[tuple[str, str, int], int] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._targets: dict[str, tuple[tuple[str, str, int], bytes]] = {}
        # Per origin, httpx's transport through the environment's proxy, or None (direct).
        self._proxied: dict[tuple[str, str, int], httpx.AsyncHTTPTransport | None] = {}
        self._proxy_transports: dict[str, httpx.AsyncHTTPTransport] = {}

    # ---- proxies -------------------------------------------------------------------------------
    def _via_proxy(
        self, origin: tuple[str, str, int], url: httpx.URL
    ) -> httpx.AsyncHTTPTransport | None:
        """httpx's transport through the proxy the environment names for ``origin``, or None.

        Decided once per origin, from the environment as it is then.
        """
        if origin in self._proxied:
            return self._proxied[origin]
        proxy = env_proxy(url)
        inner = None
        if proxy is not None:
            inner = self._proxy_transports.get(proxy)
            if inner is None:
                try:
                    inner = httpx.AsyncHTTPTransport(proxy=proxy, verify=self.ssl_context or True)
                except (ImportError, ValueError, httpx.InvalidURL) as exc:
                    raise httpx.ProxyError(
                        f"the proxy {_shown(proxy)} named by the environment cannot be used: {exc}"
                    ) from exc
                self._proxy_transports[proxy] = inner
            scheme, host, port = origin
            log.warning(
                "upstream %s://%s:%d is reached through the proxy %s (HTTP(S)_PROXY/ALL_PROXY; "
                "NO_PROXY does not exclude it), over httpx's slower transport",
                scheme,
                host,
                port,
                _shown(proxy),
            )
        if len(self._proxied) >= 1024:  # route tables name a handful of upstreams
            self._proxied.clear()
        self._proxied[origin] = inner
        return inner

    # ---- pool ----------------------------------------------------------------------------------
    def _slot(self, origin: tuple[str, str, int]) -> asyncio.Semaphore:
        sem = self._slots.get(origin)
        if sem is None:
            sem = self._slots[origin] = asyncio.Semaphore(self.max_per_origin)
        return sem

    def _take_idle(self, origin: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_expiry:
                return conn
            conn.close()
        return None

    def release(self, conn: _Conn) -> None:
        """Back to the pool if the response was read to its end; otherwise closed."""
        if conn.reusable():
            conn._reset()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.close()
        self._slot(conn.origin).release()

    async def _connect(self, origin: tuple[str, str, int], timeout: float | None) -> _Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if scheme == "https":
            ctx = self.ssl_context or ssl.create_default_context()
        try:
            _transport, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(origin),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=host if ctx else None,
                ),
                timeout,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    # ---- requests ------------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        origin = (scheme, url.host, port)
        inner = self._via_proxy(origin, url)
        if inner is not None:
            return await inner.handle_async_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _head(request, url, body)

        conn = await self._start(origin, head + body, timeouts)
        status = conn.parser.get_status_code()
        return httpx.Response(
            status,
            headers=conn.headers,
            stream=_Body(self, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _start(
        self, origin: tuple[str, str, int], data: bytes, timeouts: dict[str, float | None]
    ) -> _Conn:
        """Take a connection slot, send ``data`` and read the response head."""
        sem = self._slot(origin)
        if sem.locked():
            try:
                await asyncio.wait_for(sem.acquire(), timeouts.get("pool"))
            except TimeoutError:
                raise httpx.PoolTimeout("no free upstream connection in time") from None
        else:
            await sem.acquire()
        try:
            return await self._exchange(origin, data, timeouts)
        except BaseException:
            sem.release()
            raise

    async def post_json(
        self, url: str, body: bytes, timeout: httpx.Timeout
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """POST a JSON ``body`` to ``url`` and read the whole answer: status, headers, body.

        The gateway's non-streaming calls, without building httpx's request and response objects
        (and their URL parsing, cookie handling and header normalising) for every request. Errors
        are httpx's, as for :meth:`handle_async_request`.
        """
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        origin, head = target
        inner = self._via_proxy(origin, httpx.URL(url))
        if inner is not None:
            return await _post_via(inner, url, body, timeout)
        timeouts = {"connect": timeout.connect, "read": timeout.read, "pool": timeout.pool}
        data = b"".join((head, str(len(body)).encode(), b"\r\n\r\n", body))
        conn = await self._start(origin, data, timeouts)
        status = conn.parser.get_status_code()
        headers = conn.headers
        chunks: list[bytes] = []
        try:
            async for chunk in conn.body(timeouts["read"]):
                chunks.append(chunk)
        except OSError as exc:
            conn.close()
            raise httpx.ReadError(str(exc)) from exc
        finally:
            self.release(conn)
        return status, headers, b"".join(chunks)

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes]:
        u = httpx.URL(url)
        if u.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {u.scheme!r}")
        origin = (u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80))
        head = (
            b"POST "
            + (u.raw_path or b"/")
            + b" HTTP/1.1\r\nHost: "
            + u.netloc
            + b"\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
            + b"Content-Type: application/json\r\nContent-Length: "
        )
        if len(self._targets) >= 1024:  # route tables name a handful of upstreams
            self._targets.clear()
        self._targets[url] = (origin, head)
        return origin, head

    async def _exchange(
        self, origin: tuple[str, str, int], data: bytes, timeouts: dict[str, float | None]
    ) -> _Conn:
        # A kept-alive connection may have been closed by the upstream just as it was reused;
        # the request then never reached it, and one retry on a new connection is safe.
        for attempt in (0, 1):
            conn = self._take_idle(origin) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"))
            assert conn.transport is not None
            try:
                conn.transport.write(data)
                await conn.read_head(timeouts.get("read"))
                return conn
            except httpx.RemoteProtocolError:
                conn.close()
                if reused and not conn.received_any:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for inner in self._proxy_transports.values():
            await inner.aclose()
        self._proxy_transports.clear()
        self._proxied.clear()


async def _post_via(
    inner: httpx.AsyncHTTPTransport, url: str, body: bytes, timeout: httpx.Timeout
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    request = httpx.Request(
        "POST",
        url,
        content=body,
        headers={"Content-Type": "application/json", "Accept-Encoding": "identity"},
        extensions={"timeout": timeout.as_dict()},
    )
    resp = await inner.handle_async_request(request)
    try:
        content = await resp.aread()
    finally:
        await resp.aclose()
    return resp.status_code, list(resp.headers.raw), content


def _shown(proxy: str) -> str:
    """A proxy URL without its password, for logs and errors."""
    u = httpx.URL(proxy)
    return str(u.copy_with(password="***")) if u.password else proxy


def _head(request: httpx.Request, url: httpx.URL, body: bytes) -> bytes:
    target = url.raw_path or b"/"
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    names = set()
    for name, value in request.headers.raw:
        names.add(name.lower())
        lines.append(name + b": " + value)
    if b"host" not in names:
        lines.append(b"Host: " + url.netloc)
    if body and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def new_client(
    *,
    timeout: httpx.Timeout,
    max_connections_per_origin: int,
    keepalive_expiry: float = 30.0,
    transport: PooledTransport | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """The gateway's shared client: httpx on top of :class:`PooledTransport`."""
    return httpx.AsyncClient(
        transport=transport
        or PooledTransport(
            max_connections_per_origin=max_connections_per_origin, keepalive_expiry=keepalive_expiry
        ),
        timeout=timeout,
        trust_env=False,
        **kwargs,
    )


__all__ = ["PooledTransport", "env_proxy", "new_client"]
