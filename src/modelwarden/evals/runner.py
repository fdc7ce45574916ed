"""Run a golden set against any OpenAI-compatible endpoint, score the answers, store the run.

Generations go out through one ``httpx.AsyncClient`` with at most ``concurrency`` requests in
flight. Connection errors, timeouts, 408, 429 and 5xx answers are retried up to ``retries`` times
with exponential backoff and jitter (a ``Retry-After`` header, when sent, is honoured up to a
minute); any other 4xx answer fails the item at once, because asking again cannot change it.

Every answer is cached in the state store under :func:`cache_key`: the endpoint, the model, the
messages and the decoding parameters. Running the same golden set twice at the same endpoint
therefore costs no requests, while a version served from another endpoint (a fixed build in
staging) is always asked again; ``use_cache=False`` asks again and refreshes the cache. A run
records how many answers came from the cache and when its oldest answer was generated
(``params.oldest_answer_at``), so a release gate can refuse answers older than the version's
last change. With a temperature above zero the cache returns the first sample, which keeps runs
reproducible at the price of not resampling. Items that ask exactly the same thing (a golden set
may repeat a question with other references or tags) are asked once and share the answer.

The endpoint is a base URL, spelled as ``registry add`` takes it: ``http://host:port`` or
``http://host:port/v1`` (``/v1`` is added when missing, as the gateway does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelwarden.embed.service import resolve_embedder
from modelwarden.errors import InputError, WardenError
from modelwarden.evals.golden import GoldenItem, GoldenSet
from modelwarden.evals.metrics import Evaluator
from modelwarden.evals.store import (
    cached_generations,
    check_run_name,
    insert_run,
    require_free_name,
    store_generations,
)
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

DEFAULT_ENDPOINT = "http://127.0.0.1:8400/v1"
RETRY_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_S = 60.0
# Cached generations are written in batches, so an interrupted run keeps most of its answers
# without a disk sync per answer.
CACHE_FLUSH_EVERY = 32

Progress = Callable[[int], None]


class UpstreamError(WardenError):
    """The model endpoint answered no item at all."""

    code = "upstream_error"
    http_status = 502


class RunOptions(BaseModel):
    """How to generate: the model, where it is served, decoding parameters and client limits."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    endpoint: str = DEFAULT_ENDPOINT
    concurrency: int = Field(default=8, ge=1, le=256)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    retries: int = Field(default=3, ge=0, le=20)
    timeout: float = Field(default=30.0, gt=0)
    backoff: float = Field(default=0.5, ge=0, description="seconds before the first retry")
    use_cache: bool = True
    name: str | None = None
    api_key: str | None = Field(default=None, repr=False)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        v = v.removesuffix("/chat/completions").rstrip("/")
        if not v.startswith(("http://", "https://")) or not v.split("://", 1)[1]:
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8400/v1")
        # The same base URL the registry and the gateway take: /v1 is added when missing.
        return v if v.endswith("/v1") else v + "/v1"

    @classmethod
    def build(cls, **values: Any) -> RunOptions:
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "options"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise InputError(f"{where}: {msg}", field=where) from exc

    def decoding(self) -> dict[str, Any]:
        """The decoding parameters sent with every request (and part of the cache key)."""
        out: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out

    def stored_params(self) -> dict[str, Any]:
        return {
            **self.decoding(),
            "concurrency": self.concurrency,
            "retries": self.retries,
            "timeout": self.timeout,
            "use_cache": self.use_cache,
        }


def cache_key(
    model: str, messages: Sequence[Any], decoding: dict[str, Any], endpoint: str = ""
) -> str:
    """sha256 over the canonical JSON of what determines an answer: where it was asked (the
    endpoint's base URL), the model, the messages and the decoding parameters."""
    payload = json.dumps(
        {"endpoint": endpoint, "model": model, "messages": list(messages), "decoding": decoding},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Generation:
    item_id: str
    output: str | None = None
    latency_ms: float | None = None
    attempts: int = 0
    cached: bool = False
    error: str | None = None
    usage: dict[str, Any] | None = None
    generated_at: datetime | None = None


class _Failed(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        msg = err.get("message") if isinstance(err, dict) else None
    except ValueError:
        msg = None
    where = f" from {resp.request.url}" if resp.status_code == 404 else ""
    return f"HTTP {resp.status_code}{where}" + (f": {msg}" if msg else "")


def _content(body: Any) -> str:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _Failed("the answer has no choices[0].message.content", retryable=False) from exc
    if isinstance(content, list):
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    if not isinstance(content, str):
        raise _Failed("the answer's message content is not text", retryable=False)
    return content


class _Client:
    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.url = f"{opts.endpoint}/chat/completions"
        headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(opts.timeout),
            limits=httpx.Limits(
                max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency
            ),
            headers=headers,
        )
        self.gate = asyncio.Semaphore(opts.concurrency)
        self.requests = 0
        self.jitter = random.Random()

    async def _once(self, payload: dict[str, Any]) -> tuple[str, float, dict[str, Any] | None]:
        self.requests += 1
        t0 = time.perf_counter()
        try:
            resp = await self.http.post(self.url, json=payload)
        except httpx.TransportError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc or 'no detail'}", retryable=True) from exc
        latency = (time.perf_counter() - t0) * 1000.0
        if resp.status_code >= 500 or resp.status_code in RETRY_STATUSES:
            raise _Failed(_error_text(resp), retryable=True, retry_after=_retry_after(resp))
        if resp.status_code >= 400:
            raise _Failed(_error_text(resp), retryable=False)
        try:
            body = resp.json()
        except ValueError as exc:
            raise _Failed("the answer is not JSON", retryable=False) from exc
        usage = body.get("usage") if isinstance(body, dict) else None
        return _content(body), latency, usage if isinstance(usage, dict) else None

    async def generate(self, item: GoldenItem) -> Generation:
        payload = {
            "model": self.opts.model,
            "messages": item.chat_messages(),
            **self.opts.decoding(),
        }
        gen = Generation(item.id)
        for attempt in range(self.opts.retries + 1):
            gen.attempts = attempt + 1
            try:
                async with self.gate:
                    gen.output, gen.latency_ms, gen.usage = await self._once(payload)
                gen.error, gen.generated_at = None, datetime.now(UTC)
                return gen
            except _Failed as exc:
                gen.error = str(exc)
                if not exc.retryable or attempt == self.opts.retries:
                    return gen
                delay = self.opts.backoff * 2**attempt * (1 + 0.25 * self.jitter.random())
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                await asyncio.sleep(delay)
        return gen

    async def close(self) -> None:
        await self.http.aclose()


def generate(
    state: StateStore,
    items: Sequence[GoldenItem],
    opts: RunOptions,
    progress: Progress | None = None,
) -> tuple[dict[str, Generation], int]:
    """Answers for ``items`` (from the cache where possible) and the HTTP requests it took.

    Items that ask the same thing (same cache key) are asked once and share the answer."""
    decoding = opts.decoding()
    keys = {
        it.id: cache_key(opts.model, it.chat_messages(), decoding, opts.endpoint) for it in items
    }
    hits = _cached(state, keys.values()) if opts.use_cache else {}
    out: dict[str, Generation] = {}
    todo: dict[str, GoldenItem] = {}  # one item per distinct key
    for it in items:
        hit = hits.get(keys[it.id])
        if hit is None:
            todo.setdefault(keys[it.id], it)
            continue
        out[it.id] = Generation(
            it.id,
            hit["output"],
            hit["latency_ms"],
            attempts=0,
            cached=True,
            usage=hit["usage"],
            generated_at=_aware(hit["created_at"]),
        )
    if progress and out:
        progress(len(out))
    requests = 0
    if todo:
        fresh, requests = _run_coroutine(
            _generate_all(state, list(todo.values()), keys, opts, progress)
        )
        by_key = {keys[g.item_id]: g for g in fresh.values()}
        for it in items:
            if it.id in out:
                continue
            g = by_key[keys[it.id]]
            out[it.id] = g if g.item_id == it.id else dataclasses.replace(g, item_id=it.id)
            if g.item_id != it.id and progress:
                progress(1)
    return out, requests


def _aware(v: datetime | None) -> datetime | None:
    return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)


def _run_coroutine(coro: Any) -> Any:
    """``asyncio.run``, also from code that already runs an event loop (a notebook, a server):
    there the coroutine gets a loop of its own in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _cached(state: StateStore, keys: Any) -> dict[str, dict[str, Any]]:
    return cached_generations(state, keys)


async def _generate_all(
    state: StateStore,
    items: Sequence[GoldenItem],
    keys: dict[str, str],
    opts: RunOptions,
    progress: Progress | None,
) -> tuple[dict[str, Generation], int]:
    client = _Client(opts)
    pending: list[dict[str, Any]] = []
    by_id = {it.id: it for it in items}

    def flush() -> None:
        store_generations(state, pending)
        pending.clear()

    out: dict[str, Generation] = {}
    tasks = [asyncio.ensure_future(client.generate(it)) for it in items]
    try:
        for fut in asyncio.as_completed(tasks):
            gen = await fut
            out[gen.item_id] = gen
            if gen.output is not None:
                pending.append(
                    {
                        "key": keys[gen.item_id],
                        "model": opts.model,
                        "request": {
                            "messages": by_id[gen.item_id].chat_messages(),
                            "decoding": opts.decoding(),
                        },
                        "output": gen.output,
                        "latency_ms": gen.latency_ms,
                        "usage": gen.usage,
                        "endpoint": opts.endpoint,
                        "created_at": gen.generated_at or datetime.now(UTC),
                    }
                )
                if len(pending) >= CACHE_FLUSH_EVERY:
                    flush()
            if progress:
                progress(1)
    finally:
        for t in tasks:
            t.cancel()
        flush()
        await client.close()
    return out, client.requests


@dataclass
class RunResult:
    run: dict[str, Any]
    generations: dict[str, Generation]

    @property
    def failed(self) -> list[Generation]:
        return [g for g in self.generations.values() if g.output is None]


def run_eval(
    settings: Settings,
    golden: GoldenSet,
    opts: RunOptions,
    *,
    state: StateStore | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Generate, score with :class:`~modelwarden.evals.metrics.Evaluator` and store one run.

    Raises :class:`UpstreamError` (and stores nothing) when no item got an answer; a run where
    some items failed is stored with status ``partial`` and those items' errors.
    """
    if opts.name is not None:
        check_run_name(opts.name)
    own = state is None
    st = state or StateStore.of(settings)
    try:
        if opts.name is not None:
            # Before any request: a taken name would otherwise be found after the whole run.
            require_free_name(st, opts.name)
        t0 = time.perf_counter()
        gens, requests = generate(st, golden.items, opts, progress)
        duration = time.perf_counter() - t0
        answered = {k: g.output for k, g in gens.items() if g.output is not None}
        if not answered:
            first = next((g.error for g in gens.values() if g.error), "no answer")
            raise UpstreamError(
                f"{opts.endpoint} answered none of the {len(golden)} items "
                f"(first error: {first}); nothing was stored",
                field="endpoint",
            )
        embedder = resolve_embedder(settings)
        evaluator = Evaluator(embedder=embedder, safety=safety_checker(settings, embedder))
        latencies = {k: g.latency_ms for k, g in gens.items() if g.latency_ms is not None}
        scores = evaluator.score(golden, answered, latencies=latencies)
        items = []
        for pos, it in enumerate(golden.items):
            g = gens[it.id]
            s = scores.items.get(it.id)
            items.append(
                {
                    "item_id": it.id,
                    "position": pos,
                    "prompt": it.question,
                    "reference": it.references[0] if it.references else None,
                    "output": g.output,
                    "error": g.error if g.output is None else None,
                    "metrics": dict(s.metrics) if s else {},
                    "violations": dict(s.violations) if s else {},
                    "tags": dict(it.tags),
                    "details": dict(s.details) if s else {},
                    "latency_ms": g.latency_ms,
                    "attempts": g.attempts,
                    "cached": g.cached,
                }
            )
        failed = len(golden) - len(answered)
        made = [g.generated_at for g in gens.values() if g.output is not None and g.generated_at]
        params = {
            **opts.stored_params(),
            "oldest_answer_at": min(made).isoformat() if made else None,
        }
        run = insert_run(
            st,
            {
                "name": opts.name,
                "model": opts.model,
                "endpoint": opts.endpoint,
                "golden_name": golden.name,
                "golden_version": golden.version,
                "golden_hash": golden.content_hash,
                "status": "complete" if failed == 0 else "partial",
                "params": params,
                "signatures": scores.signatures,
                "corpus": scores.corpus,
                "embedder": embedder.name if embedder is not None else None,
                "n_items": len(golden),
                "n_answered": len(answered),
                "n_failed": failed,
                "n_cached": sum(g.cached for g in gens.values()),
                "n_requests": requests,
                "duration_s": duration,
            },
            items,
        )
        return RunResult(run=run, generations=gens)
    finally:
        if own:
            st.close()


__all__ = [
    "DEFAULT_ENDPOINT",
    "Generation",
    "RunOptions",
    "RunResult",
    "UpstreamError",
    "cache_key",
    "generate",
    "run_eval",
]
