"""The OpenAI-compatible gateway: route, proxy, shadow, and log every request off the hot path.

For each ``POST /v1/chat/completions``, ``POST /v1/responses`` (the Responses API, streaming or
not) and ``POST /v1/embeddings``:

1. the live route table (cached, see :class:`~modelwarden.governance.routes.RouteCache`) and the
   user's sticky bucket pick the stable or the canary upstream;
2. a sampled copy goes to the shadow upstream in the background; its answer is logged, never
   returned, and the live answer never waits for it;
3. the request is proxied, streaming or not, over one shared keep-alive HTTP client. When the
   canary fails (timeout, refused connection, 5xx, 429) before answering, the stable version
   serves the request and the failure is counted against the canary; when the stable version
   fails the client gets a 502 in the error shape. The failed attempt is a record of its own
   (the canary's version, the error, the time until it failed) and the served request's record
   times the stable attempt only, so that the canary's timeouts count against the canary in the
   SOP rules and the rollout judge instead of against the stable version; the two latencies add
   up to what the client waited, which the request-duration metric keeps;
4. a request record (version, route, plant, user, latency, tokens, safety flag) goes to the spool
   without waiting for the disk, and from there into the log store like every other record.

The gateway observes answers, it does not block them: an answer the safety check flags is
returned as it is and counted.

The client's ``model`` field is replaced by the version the route picks: the route table, not
the client, decides which version serves. Streaming requests ask the upstream for token usage
(``stream_options.include_usage``) so that every record has token counts; when the client did
not ask for it, the extra usage chunk is kept from the client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from modelwarden.errors import InputError, WardenError
from modelwarden.gateway.messages import content_text, prompt_text
from modelwarden.gateway.metrics import Metrics
from modelwarden.gateway.transport import PooledTransport
from modelwarden.governance.routes import RouteSource, Upstream, assign
from modelwarden.ingest.validation import clean_text
from modelwarden.records import MAX_ID_CHARS, MAX_PROMPT_CHARS, MAX_RESPONSE_CHARS
from modelwarden.safety.checker import SafetyChecker

log = logging.getLogger("modelwarden.gateway")

UNKNOWN_PLANT = "unknown"
NON_TEXT_PROMPT = "[no text content]"
MAX_ERROR_CHARS = 1000


class UpstreamError(WardenError):
    code = "upstream_error"
    http_status = 502
    headers: dict[str, str] | None = None


class NoRouteError(WardenError):
    code = "no_route"
    http_status = 503


class _Failed(Exception):
    """An upstream attempt that failed before any byte reached the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Api:
    """One OpenAI endpoint the gateway proxies: its path under the upstream's ``/v1``."""

    name: str
    path: str
    # Streaming chat asks for token usage with stream_options; the Responses API always sends it.
    usage_option: bool = False


CHAT = Api("chat", "/chat/completions", usage_option=True)
RESPONSES = Api("responses", "/responses")
EMBEDDINGS = Api("embeddings", "/embeddings")


@dataclass
class Call:
    """One request as the gateway sees it."""

    request_id: str
    started: float
    started_at: datetime
    user: str | None
    plant: str
    session: str | None
    prompt: str
    body: dict[str, Any]
    stream: bool
    extra: dict[str, Any] = field(default_factory=dict)
    api: Api = CHAT
    # When the attempt that answers (or failed) began: ``started`` unless a canary failed first.
    attempt_started: float = 0.0

    def __post_init__(self) -> None:
        self.attempt_started = self.attempt_started or self.started


@dataclass
class Outcome:
    text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    upstream_s: float = 0.0
    total_s: float | None = None
    attempt_s: float | None = None


JSON_HEADERS = {"content-type": "application/json"}


def _encode(payload: dict[str, Any]) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates cannot be UTF-8; escaped, they are still valid JSON for the upstream.
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else clean_text(text[:limit])


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _request_id(headers: Mapping[str, str], ids: random.Random) -> str:
    given = headers.get("x-request-id", "").strip()
    # Derived ids (".shadow", ".canary") must still fit the record's id limit.
    if given and len(given) <= MAX_ID_CHARS - 10 and given.isprintable():
        return given
    # Unique, not secret: an OS-seeded generator, since the OS random source costs a system call
    # per id.
    return f"{ids.getrandbits(128):032x}"


def _derived(call: Call, suffix: str) -> Call:
    """A record of its own for a side request (a shadow copy, a failed attempt)."""
    return Call(
        request_id=f"{call.request_id}.{suffix}",
        started=call.started,
        started_at=call.started_at,
        user=call.user,
        plant=call.plant,
        session=call.session,
        prompt=call.prompt,
        body=call.body,
        stream=call.stream,
        extra={"parent_request_id": call.request_id},
        api=call.api,
        attempt_started=call.attempt_started,
    )


def _user(body: dict[str, Any], headers: Mapping[str, str]) -> str | None:
    for v in (body.get("user"), body.get("safety_identifier"), headers.get("x-user-id")):
        if isinstance(v, str) and v.strip():
            return v.strip()[:MAX_ID_CHARS]
    return None


class Gateway:
    def __init__(
        self,
        client: httpx.AsyncClient,
        routes: RouteSource,
        log_record: Callable[[dict[str, Any]], None],
        metrics: Metrics,
        safety: SafetyChecker,
        *,
        shadow_max_in_flight: int = 64,
        rng: random.Random | None = None,
        transport: PooledTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        # What stamps each record's timestamp: the wall clock, or a simulation's clock (the demo
        # compresses a day of plant traffic into seconds and stamps it in simulated time).
        self.clock = clock or _wall_clock
        # Plain (non-streaming) calls go straight to the client's transport when it is ours.
        self.transport = transport
        self.routes = routes
        self.log_record = log_record
        self.metrics = metrics
        self.safety = safety
        self.shadow_max = shadow_max_in_flight
        self.rng = rng or random.Random()
        self._ids = random.Random()
        self._shadows: set[asyncio.Task[None]] = set()

    # ---- entry -------------------------------------------------------------------------------
    def new_call(
        self, body: Any, headers: Mapping[str, str], key_plant: str | None, api: Api = CHAT
    ) -> Call:
        """The request as the gateway sees it; ``headers`` maps lower-case names to values."""
        if not isinstance(body, dict):
            raise InputError("the body must be a JSON object", field="(body)")
        if api is CHAT:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InputError("'messages' must be a non-empty list", field="messages")
            prompt = prompt_text(messages) or content_text(
                messages[-1].get("content") if isinstance(messages[-1], dict) else None
            )
        elif api is RESPONSES:
            prompt = responses_prompt(body.get("input"))
        else:
            prompt = embeddings_prompt(body.get("input"))
        if api is EMBEDDINGS and body.get("stream"):
            raise InputError("embeddings do not stream", field="stream")
        header_plant = headers.get("x-plant-id", "").strip()
        # A key bound to a plant speaks for that plant only.
        plant = key_plant or header_plant[:MAX_ID_CHARS] or UNKNOWN_PLANT
        session = headers.get("x-session-id", "").strip()[:MAX_ID_CHARS] or None
        return Call(
            request_id=_request_id(headers, self._ids),
            started=time.perf_counter(),
            started_at=self.clock(),
            user=_user(body, headers),
            plant=plant,
            session=session,
            prompt=prompt or NON_TEXT_PROMPT,
            body=body,
            stream=bool(body.get("stream")),
            api=api,
        )

    async def handle(self, call: Call) -> Response:
        table = self.routes.get()
        if table is None:
            raise NoRouteError(
                "no routes are set; set them with: modelwarden routes set --stable VERSION=URL"
            )
        decision = assign(table, call.user, call.plant)
        if (
            table.shadow is not None
            and table.shadow_sample > 0
            and self.rng.random() < table.shadow_sample
        ):
            self._start_shadow(call, table.shadow)
        attempts: list[tuple[str, Upstream]] = [(decision.route, decision.upstream)]
        if decision.route == "canary":
            attempts.append(("stable", table.stable))
        for n, (route, upstream) in enumerate(attempts):
            if n:
                call.attempt_started = time.perf_counter()
            try:
                if call.stream:
                    return await self._stream(call, route, upstream)
                return await self._plain(call, route, upstream)
            except _Failed as failure:
                self._count_failure(call, route, upstream, failure.reason)
                if route == "canary":
                    self._count(self.metrics.canary_fallbacks, upstream.version, call.plant, route)
                    # The failed attempt is a record of its own, so the canary's error rate
                    # shows it; the request itself is logged as served by the stable version.
                    self._finish(
                        _derived(call, "canary-failed"),
                        route,
                        upstream,
                        Outcome(error=f"upstream {failure.reason}"),
                        count=False,
                    )
                    continue
                self._finish(call, route, upstream, Outcome(error=f"upstream {failure.reason}"))
                err = UpstreamError(
                    f"the {route} model server for {upstream.version} failed: {failure.reason}",
                    model_version=upstream.version,
                    route=route,
                )
                err.headers = {"X-Request-Id": call.request_id}
                raise err from None
        raise AssertionError("unreachable: the stable attempt returns or raises")

    # ---- upstream calls ----------------------------------------------------------------------
    def _payload(
        self, call: Call, upstream: Upstream, *, stream: bool
    ) -> tuple[dict[str, Any], bool]:
        payload = dict(call.body)
        payload["model"] = upstream.version
        strip_usage = False
        if stream and call.api.usage_option:
            opts = payload.get("stream_options")
            opts = dict(opts) if isinstance(opts, dict) else {}
            if not opts.get("include_usage"):
                opts["include_usage"] = True
                strip_usage = True
            payload["stream_options"] = opts
        elif not stream:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return payload, strip_usage

    async def _post(
        self, upstream: Upstream, payload: dict[str, Any], api: Api = CHAT
    ) -> tuple[int, str, bytes]:
        """One non-streaming upstream call: status, content type and body."""
        url = upstream.api_base + api.path
        if self.transport is not None:
            status, headers, content = await self.transport.post_json(
                url, _encode(payload), self.client.timeout
            )
            ctype = next(
                (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"),
                "application/json",
            )
            return status, ctype, content
        resp = await self.client.post(url, content=_encode(payload), headers=JSON_HEADERS)
        return resp.status_code, resp.headers.get("content-type", "application/json"), resp.content

    async def _plain(self, call: Call, route: str, upstream: Upstream) -> Response:
        payload, _ = self._payload(call, upstream, stream=False)
        t0 = time.perf_counter()
        try:
            status, ctype, content = await self._post(upstream, payload, call.api)
        except httpx.TimeoutException:
            raise _Failed("timed out") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        upstream_s = time.perf_counter() - t0
        if status >= 500 or (status == 429 and route == "canary"):
            raise _Failed(f"answered HTTP {status}")
        outcome = Outcome(upstream_s=upstream_s)
        if status >= 400:
            outcome.error = (
                f"upstream HTTP {status}: {content[:MAX_ERROR_CHARS].decode(errors='replace')}"
            )
        else:
            try:
                read_answer(call.api, json.loads(content), outcome)
            except (ValueError, AttributeError, IndexError, TypeError, KeyError, binascii.Error):
                raise _Failed(f"answered something that is not a {call.api.name} answer") from None
        outcome.total_s = time.perf_counter() - call.started
        outcome.attempt_s = time.perf_counter() - call.attempt_started
        return Response(
            content=content,
            status_code=status,
            media_type=ctype,
            headers=self._headers(call, route, upstream),
            # The safety check, the record and the metrics wait until the answer is sent.
            background=BackgroundTask(self._finish_soon, call, route, upstream, outcome),
        )

    async def _stream(self, call: Call, route: str, upstream: Upstream) -> Response:
        payload, strip_usage = self._payload(call, upstream, stream=True)
        t0 = time.perf_counter()
        request = self.client.build_request(
            "POST",
            upstream.api_base + call.api.path,
            content=_encode(payload),
            headers=JSON_HEADERS,
        )
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _Failed("timed out") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            body = await resp.aread()
            await resp.aclose()
            if resp.status_code >= 500 or (resp.status_code == 429 and route == "canary"):
                raise _Failed(f"answered HTTP {resp.status_code}")
            outcome = Outcome(
                error=f"upstream HTTP {resp.status_code}: "
                f"{body[:MAX_ERROR_CHARS].decode(errors='replace')}",
                upstream_s=time.perf_counter() - t0,
            )
            self._finish(call, route, upstream, outcome)
            return Response(
                content=body,
                status_code=resp.status_code,
                media_type=resp.headers.get("content-type", "application/json"),
                headers=self._headers(call, route, upstream),
            )
        return StreamingResponse(
            self._relay(call, route, upstream, resp, strip_usage, t0),
            media_type="text/event-stream",
            headers={**self._headers(call, route, upstream), "Cache-Control": "no-cache"},
        )

    async def _relay(
        self,
        call: Call,
        route: str,
        upstream: Upstream,
        resp: httpx.Response,
        strip_usage: bool,
        t0: float,
    ) -> AsyncIterator[bytes]:
        acc = _SseAccumulator(strip_usage)
        outcome = Outcome()
        try:
            async for line in resp.aiter_lines():
                event = acc.feed(line)
                if event is not None:
                    yield event
            tail = acc.flush()
            if tail is not None:
                yield tail
        except httpx.HTTPError as exc:
            outcome.error = f"the upstream stream broke: {type(exc).__name__}: {exc}"[
                :MAX_ERROR_CHARS
            ]
            self._count_failure(call, route, upstream, outcome.error)
            err = {"error": {"code": "upstream_error", "message": outcome.error}}
            yield b"data: " + json.dumps(err).encode() + b"\n\n"
        except BaseException:
            outcome.error = "the client closed the stream before the end"
            raise
        finally:
            await resp.aclose()
            outcome.upstream_s = time.perf_counter() - t0
            outcome.text = acc.text()
            outcome.prompt_tokens = acc.prompt_tokens
            outcome.completion_tokens = acc.completion_tokens
            outcome.total_s = time.perf_counter() - call.started
            outcome.attempt_s = time.perf_counter() - call.attempt_started
            # After the last chunk has gone out, not before it.
            asyncio.get_running_loop().call_soon(self._finish, call, route, upstream, outcome)

    # ---- shadow ------------------------------------------------------------------------------
    def _start_shadow(self, call: Call, upstream: Upstream) -> None:
        if len(self._shadows) >= self.shadow_max:
            self.metrics.shadow_dropped.labels(
                **self.metrics.labels(upstream.version, call.plant, "shadow")
            ).inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(call, upstream))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, call: Call, upstream: Upstream) -> None:
        payload, _ = self._payload(call, upstream, stream=False)
        shadow = _derived(call, "shadow")
        shadow.started = shadow.attempt_started = time.perf_counter()
        shadow.started_at = self.clock()
        outcome = Outcome()
        try:
            status, _ctype, content = await self._post(upstream, payload, call.api)
            outcome.upstream_s = time.perf_counter() - shadow.started
            if status >= 400:
                outcome.error = (
                    f"upstream HTTP {status}: {content[:MAX_ERROR_CHARS].decode(errors='replace')}"
                )
                self._count(self.metrics.upstream_errors, upstream.version, call.plant, "shadow")
            else:
                read_answer(call.api, json.loads(content), outcome)
        except asyncio.CancelledError:
            outcome.error = "the shadow request was cancelled at shutdown"
            self._finish(shadow, "shadow", upstream, outcome)
            raise
        except (
            httpx.HTTPError,
            ValueError,
            AttributeError,
            IndexError,
            TypeError,
            KeyError,
        ) as exc:
            outcome.error = f"shadow upstream failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            self._count(self.metrics.upstream_errors, upstream.version, call.plant, "shadow")
        self._finish(shadow, "shadow", upstream, outcome)

    async def drain(self, timeout: float = 2.0) -> None:
        """Let in-flight shadow copies finish (up to ``timeout``), then cancel the rest."""
        pending = list(self._shadows)
        if not pending:
            return
        _done, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*still, return_exceptions=True)

    # ---- records and metrics -----------------------------------------------------------------
    def _headers(self, call: Call, route: str, upstream: Upstream) -> dict[str, str]:
        return {
            "X-Request-Id": call.request_id,
            "X-ModelWarden-Route": route,
            "X-ModelWarden-Version": upstream.version,
        }

    def _count(self, counter: Any, version: str, plant: str, route: str, n: float = 1) -> None:
        counter.labels(**self.metrics.labels(version, plant, route)).inc(n)

    def _count_failure(self, call: Call, route: str, upstream: Upstream, reason: str) -> None:
        self._count(self.metrics.upstream_errors, upstream.version, call.plant, route)
        log.warning(
            "%s upstream %s (%s) failed for %s: %s",
            route,
            upstream.version,
            upstream.url,
            call.request_id,
            reason,
        )

    async def _finish_soon(
        self, call: Call, route: str, upstream: Upstream, outcome: Outcome
    ) -> None:
        # A coroutine, so that Starlette runs it on the event loop rather than in a thread.
        self._finish(call, route, upstream, outcome)

    def _finish(
        self, call: Call, route: str, upstream: Upstream, outcome: Outcome, count: bool = True
    ) -> None:
        now = time.perf_counter()
        total_s = outcome.total_s or now - call.started
        # The serving version's own time: without a canary attempt that failed before it.
        attempt_s = outcome.attempt_s or now - call.attempt_started
        flagged = self.safety.flags(outcome.text) if outcome.text else False
        if count:
            labels = self.metrics.labels(upstream.version, call.plant, route)
            if route != "shadow":
                self.metrics.gateway_latency.labels(**labels).observe(total_s)
                self.metrics.gateway_overhead.labels(**labels).observe(
                    max(attempt_s - outcome.upstream_s, 0.0)
                )
            self.metrics.gateway_requests.labels(**labels).inc()
            if flagged:
                self.metrics.safety_flags.labels(**labels).inc()
            if outcome.prompt_tokens:
                self.metrics.prompt_tokens.labels(**labels).inc(outcome.prompt_tokens)
            if outcome.completion_tokens:
                self.metrics.completion_tokens.labels(**labels).inc(outcome.completion_tokens)
        record: dict[str, Any] = {
            "request_id": call.request_id,
            "timestamp": _iso(call.started_at),
            "plant_id": call.plant,
            "model_version": upstream.version,
            "user_prompt": _clip(call.prompt, MAX_PROMPT_CHARS),
            "generated_response": _clip(outcome.text, MAX_RESPONSE_CHARS)
            if outcome.error is None or outcome.text
            else None,
            "latency_ms": round(attempt_s * 1000, 3),
            "contains_safety_keyword": flagged,
            "user_id": _clip(call.user, MAX_ID_CHARS),
            "session_id": call.session,
            "route": route,
            "parent_request_id": call.extra.get("parent_request_id"),
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "error": _clip(outcome.error, MAX_ERROR_CHARS),
        }
        try:
            self.log_record(record)
        except Exception:  # a record must never fail the answer it describes
            log.exception("could not log request %s", call.request_id)


def responses_prompt(value: Any) -> str:
    """The prompt of a Responses API request: ``input`` text, or its last user message."""
    if isinstance(value, str):
        if not value.strip():
            raise InputError("'input' must not be empty", field="input")
        return value
    if not isinstance(value, list) or not value:
        raise InputError("'input' must be a string or a non-empty list of items", field="input")
    for item in reversed(value):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(p.get("text", ""))
                    for p in content
                    if isinstance(p, dict) and p.get("type") in ("input_text", "text")
                )
    return ""


def embeddings_prompt(value: Any) -> str:
    """The text of an embeddings request (its inputs joined, one per line)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return "\n".join(value)
        return NON_TEXT_PROMPT  # token ids
    raise InputError("'input' must be a string or a non-empty list", field="input")


def read_answer(api: Api, data: dict[str, Any], outcome: Outcome) -> None:
    """The text and token counts of a plain (non-streaming) upstream answer of ``api``."""
    usage = data.get("usage") or {}
    if api is RESPONSES:
        texts = [
            str(part.get("text", ""))
            for item in data["output"]
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        ]
        outcome.text = "".join(texts)
        outcome.prompt_tokens = _int_or_none(usage.get("input_tokens"))
        outcome.completion_tokens = _int_or_none(usage.get("output_tokens"))
    elif api is EMBEDDINGS:
        vectors = data["data"]
        first = vectors[0].get("embedding") if vectors else None
        # A list of floats, or (encoding_format "base64") little-endian float32 bytes.
        dims = (
            len(first)
            if isinstance(first, list)
            else len(base64.b64decode(first)) // 4
            if isinstance(first, str)
            else None
        )
        shape = f" of {dims} dimensions" if dims else ""
        outcome.text = f"[{len(vectors)} embedding(s){shape}]"
        outcome.prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
    else:
        choice = (data.get("choices") or [{}])[0]
        outcome.text = content_text((choice.get("message") or {}).get("content")) or ""
        outcome.prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
        outcome.completion_tokens = _int_or_none(usage.get("completion_tokens"))


class _SseAccumulator:
    """Re-frames an upstream SSE stream event by event and keeps the text and usage it carries."""

    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.lines: list[str] = []
        self.parts: list[str] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def feed(self, line: str) -> bytes | None:
        if line:
            self.lines.append(line)
            return None
        return self._event()

    def flush(self) -> bytes | None:
        return self._event() if self.lines else None

    def _event(self) -> bytes | None:
        lines, self.lines = self.lines, []
        if not lines:
            return None
        data = "\n".join(ln[5:].lstrip() for ln in lines if ln.startswith("data:"))
        keep = True
        if data and data != "[DONE]":
            try:
                chunk = json.loads(data)
            except ValueError:
                chunk = None
            if isinstance(chunk, dict):
                keep = self._take(chunk)
        if not keep:
            return None
        return ("\n".join(lines) + "\n\n").encode()

    def _take(self, chunk: dict[str, Any]) -> bool:
        kind = chunk.get("type")
        if isinstance(kind, str):  # the Responses API's typed events
            if kind == "response.output_text.delta" and isinstance(chunk.get("delta"), str):
                self.parts.append(chunk["delta"])
            elif kind == "response.completed" and isinstance(chunk.get("response"), dict):
                usage = chunk["response"].get("usage") or {}
                self.prompt_tokens = _int_or_none(usage.get("input_tokens"))
                self.completion_tokens = _int_or_none(usage.get("output_tokens"))
            return True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
            self.completion_tokens = _int_or_none(usage.get("completion_tokens"))
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for c in choices:
                delta = c.get("delta") if isinstance(c, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    self.parts.append(delta["content"])
        # The usage-only chunk was asked for by the gateway, not the client.
        return not (self.strip_usage and usage is not None and not choices)

    def text(self) -> str:
        return "".join(self.parts)


__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "RESPONSES",
    "Api",
    "Call",
    "Gateway",
    "NoRouteError",
    "UpstreamError",
]
