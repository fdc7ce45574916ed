"""A small client for applications: request logs, the feedback button and escalations.

    from modelwarden.client import Client

    mw = Client("http://127.0.0.1:8400", key="mw_...")
    rid = mw.log({"plant_id": "Plant_A", "model_version": "sop-v1.3", "user_prompt": q,
                  "generated_response": a, "latency_ms": 412.0})
    mw.feedback(rid, 4)                      # the user's 1-5 score
    mw.escalate(rid, "safety", "skips the lockout step")

    @mw.record_call(plant_id="Plant_A")     # logs prompt, answer and latency of each call
    def ask(prompt: str) -> str: ...

Nothing is sent on the caller's thread: records wait in a bounded queue and a background thread
posts them in batches, retrying with backoff while ModelWarden is down. No method raises because
ModelWarden is unreachable; what could not be kept is counted in ``client.stats``. Queued records
are sent at ``flush()``, ``close()`` and at interpreter exit.

:class:`AsyncClient` has the same methods for asyncio code, with ``await flush()`` and
``await aclose()``; its network work also happens on the sender thread, so the event loop never
waits for ModelWarden.

This package imports only httpx and tenacity (no numpy, no store), so it is cheap to add to an
application.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from modelwarden.client.core import (
    ClientStats,
    DropPolicy,
    Sender,
    as_record,
    new_id,
    now_iso,
)

F = TypeVar("F", bound=Callable[..., Any])

_last_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modelwarden_last_request_id", default=None
)


def last_request_id() -> str | None:
    """The request id of the last call :meth:`Client.record_call` recorded in this context
    (for the feedback button that follows the answer)."""
    return _last_request_id.get()


def _prompt_from(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    for name in ("prompt", "question", "input", "query"):
        if isinstance(kwargs.get(name), str):
            return str(kwargs[name])
    messages = kwargs.get("messages")
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, Mapping) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, str):
                    return content
    return next((a for a in args if isinstance(a, str)), None)


def _answer_from(result: Any) -> str | None:
    if isinstance(result, str):
        return result
    text = getattr(result, "output_text", None)  # the Responses API
    if isinstance(text, str):
        return text
    choices = getattr(result, "choices", None)  # chat completions
    if choices:
        content = getattr(getattr(choices[0], "message", None), "content", None)
        if isinstance(content, str):
            return content
    return None


def _usage(result: Any) -> dict[str, Any]:
    usage = getattr(result, "usage", None)
    if usage is None:
        return {}
    prompt = getattr(usage, "prompt_tokens", None) or getattr(usage, "input_tokens", None)
    completion = getattr(usage, "completion_tokens", None) or getattr(usage, "output_tokens", None)
    out = {}
    if isinstance(prompt, int):
        out["prompt_tokens"] = prompt
    if isinstance(completion, int):
        out["completion_tokens"] = completion
    return out


class Client:
    """Sends records to ModelWarden's ingest API in the background; never raises when it is down.

    ``batch_size`` records go in one request; a partial batch waits at most ``flush_interval``
    seconds. At most ``max_queue`` records wait in memory; beyond that the ``oldest`` (default)
    or the ``newest`` are dropped and counted. A batch is retried with exponential backoff for
    ``retry_for`` seconds, then dropped and counted.
    """

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        batch_size: int = 200,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        drop: DropPolicy = "oldest",
        retry_for: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._sender = Sender(
            url,
            key,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            drop=drop,
            retry_for=retry_for,
            timeout=timeout,
        )

    @property
    def stats(self) -> ClientStats:
        """Counts so far: queued, sent, invalid, dropped (full queue / given up), retries."""
        return self._sender.snapshot()

    def log(self, record: Mapping[str, Any]) -> str:
        """Queue one request record; returns its ``request_id`` (made here when it has none).

        ``timestamp`` defaults to now. The server validates the record; an invalid one is kept
        in its rejected store and counted in ``stats.invalid``.
        """
        rec = as_record(record)
        self._sender.put("requests", rec)
        return str(rec["request_id"])

    def feedback(
        self,
        request_id: str,
        score: int,
        comment: str | None = None,
        *,
        user_id: str | None = None,
    ) -> str:
        """Queue the user's 1-5 score for a request; returns the event's id."""
        event: dict[str, Any] = {
            "event_id": new_id(),
            "request_id": request_id,
            "score": score,
        }
        if comment is not None:
            event["comment"] = comment
        if user_id is not None:
            event["user_id"] = user_id
        self._sender.put("feedback", event)
        return str(event["event_id"])

    def escalate(
        self,
        request_id: str,
        category: str,
        reason: str,
        confirmed: bool = False,
        *,
        reporter: str | None = None,
    ) -> str:
        """Queue an escalation of an answer (``safety``, ``accuracy``, ...); returns its id."""
        event: dict[str, Any] = {
            "event_id": new_id(),
            "request_id": request_id,
            "category": category,
            "reason": reason,
            "confirmed": confirmed,
        }
        if reporter is not None:
            event["reporter"] = reporter
        self._sender.put("escalations", event)
        return str(event["event_id"])

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send what is queued; True once done, False if ``timeout`` passed first."""
        return self._sender.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush and stop (also done at interpreter exit)."""
        return self._sender.close(timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def record_call(
        self,
        *,
        plant_id: str,
        model_version: str | None = None,
        prompt: Callable[..., str | None] | None = None,
        answer: Callable[[Any], str | None] | None = None,
        **fields: Any,
    ) -> Callable[[F], F]:
        """A decorator that logs each call of an LLM function: prompt, answer and latency.

        The prompt is ``prompt(*args, **kwargs)`` if given, else the ``prompt``/``question``
        argument, the last user message of ``messages`` or the first string argument. The
        answer is ``answer(result)`` if given, else the result itself when it is a string, or
        the text of an OpenAI chat completion or response. ``model_version`` defaults to the
        result's ``model``, then the ``model`` argument. A call that raises is logged with its
        error and the exception goes on to the caller unchanged. Works on ``async def`` too.
        """

        def build(
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            result: Any,
            error: BaseException | None,
            started: float,
            request_id: str,
            timestamp: float,
        ) -> None:
            try:
                text = prompt(*args, **kwargs) if prompt else _prompt_from(args, kwargs)
                rec: dict[str, Any] = {
                    "request_id": request_id,
                    "timestamp": now_iso(timestamp),
                    "plant_id": plant_id,
                    "model_version": model_version
                    or getattr(result, "model", None)
                    or kwargs.get("model")
                    or "unknown",
                    "user_prompt": text,
                    "latency_ms": (time.perf_counter() - started) * 1000,
                    **fields,
                }
                if error is not None:
                    rec["error"] = f"{type(error).__name__}: {error}"[:500]
                else:
                    rec["generated_response"] = answer(result) if answer else _answer_from(result)
                    rec.update(_usage(result))
                self._sender.put("requests", rec)
            except Exception:  # the application's call matters more than its log record
                self._sender.count_dropped(1)

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def awrapper(*args: Any, **kwargs: Any) -> Any:
                    request_id, timestamp = new_id(), time.time()
                    _last_request_id.set(request_id)
                    started = time.perf_counter()
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        build(args, kwargs, None, exc, started, request_id, timestamp)
                        raise
                    build(args, kwargs, result, None, started, request_id, timestamp)
                    return result

                return awrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                request_id, timestamp = new_id(), time.time()
                _last_request_id.set(request_id)
                started = time.perf_counter()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    build(args, kwargs, None, exc, started, request_id, timestamp)
                    raise
                build(args, kwargs, result, None, started, request_id, timestamp)
                return result

            return wrapper  # type: ignore[return-value]

        return decorate


class AsyncClient(Client):
    """:class:`Client` for asyncio code: queueing never waits; ``await flush()`` / ``aclose()``."""

    async def flush(self, timeout: float | None = 30.0) -> bool:  # type: ignore[override]
        return await asyncio.to_thread(self._sender.flush, timeout)

    async def aclose(self, timeout: float | None = 30.0) -> bool:
        return await asyncio.to_thread(self._sender.close, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush and stop from synchronous code (also done at interpreter exit)."""
        return self._sender.close(timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "Client", "ClientStats", "last_request_id"]
