"""A small, real OpenAI-compatible model server that answers from the built-in corpus.

It stands in for a fine-tuned model in tests, demos and benchmarks: the answer to a prompt is the
corpus answer of the closest question (:func:`~modelwarden.simulate.corpus.match_question`), in
the quality asked for (``good``: the reference answer, ``poor``: the poor one, ``unsafe``: the one
the safety check flags). ``latency_ms`` delays every answer and ``error_rate`` answers that share
of requests with a 500, so a gateway's timeouts and fallbacks can be exercised for real.
``unsafe_share`` and ``poor_share`` mix worse answers into a version's ``quality``, drawn from
the seeded stream in order of arrival: a version that is *sometimes* unsafe, as a bad fine-tune is.

Endpoints: ``POST /v1/chat/completions`` (plain, and streaming as server-sent events ending in
``data: [DONE]``), ``POST /v1/responses`` (the Responses API, plain and streaming as its typed
events), ``POST /v1/embeddings`` (deterministic unit vectors from the text's hash, as floats or
base64), ``GET /v1/models`` and ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from modelwarden.errors import InputError
from modelwarden.gateway.messages import prompt_text
from modelwarden.simulate.corpus import match_question

Quality = Literal["good", "poor", "unsafe"]
QUALITIES: tuple[str, ...] = ("good", "poor", "unsafe")
NO_MATCH_ANSWER = (
    "I do not have a procedure for that question. Please check the plant's SOP library or ask "
    "your shift supervisor."
)
# Words per streamed chunk: small enough to look like token streaming, large enough to keep the
# number of events per answer modest.
WORDS_PER_CHUNK = 3


def count_tokens(text: str) -> int:
    # Whitespace words, not a tokenizer: close enough for usage figures in tests and demos.
    return len(text.split())


def answer_for(prompt: str, quality: str) -> str:
    qa = match_question(prompt)
    if qa is None:
        return NO_MATCH_ANSWER
    return {"good": qa.answer, "poor": qa.poor_answer, "unsafe": qa.unsafe_answer}[quality]


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}},
        status_code=status,
    )


def check_options(
    quality: str = "good",
    error_rate: float = 0.0,
    unsafe_share: float = 0.0,
    poor_share: float = 0.0,
) -> None:
    """The fake upstream's options: an :class:`InputError` naming the first bad one, else None."""
    if quality not in QUALITIES:
        raise InputError(f"quality must be one of {', '.join(QUALITIES)}", field="quality")
    for name, share in (
        ("error_rate", error_rate),
        ("unsafe_share", unsafe_share),
        ("poor_share", poor_share),
    ):
        if not 0 <= share <= 1:
            raise InputError(f"{name} must be between 0 and 1", field=name)
    if unsafe_share + poor_share > 1:
        raise InputError("unsafe_share and poor_share add up to more than 1", field="poor_share")


def create_app(
    version: str,
    latency_ms: float = 50.0,
    quality: str = "good",
    error_rate: float = 0.0,
    seed: int | None = 0,
    *,
    unsafe_share: float = 0.0,
    poor_share: float = 0.0,
) -> FastAPI:
    """The fake upstream serving one model ``version`` (options as :func:`check_options`)."""
    check_options(quality, error_rate, unsafe_share, poor_share)
    mix = random.Random(None if seed is None else seed + 1)
    rng = random.Random(seed)
    delay = max(latency_ms, 0.0) / 1000
    app = FastAPI(
        title=f"fake upstream {version}",
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.requests = 0

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": version, "requests": app.state.requests}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": version, "object": "model", "created": 0, "owned_by": "modelwarden"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        app.state.requests += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not valid JSON", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list", "invalid_messages")
        if failing():
            await asyncio.sleep(delay)
            return failure()
        prompt = prompt_text(body["messages"])
        answer_quality = quality
        if unsafe_share or poor_share:
            u = mix.random()
            if u < unsafe_share:
                answer_quality = "unsafe"
            elif u < unsafe_share + poor_share:
                answer_quality = "poor"
        text = answer_for(prompt, answer_quality)
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": count_tokens(text),
            "total_tokens": count_tokens(prompt) + count_tokens(text),
        }
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            return StreamingResponse(
                _stream(cid, created, version, text, usage if include_usage else None, delay),
                media_type="text/event-stream",
            )
        await asyncio.sleep(delay)
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": version,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )

    def failing() -> bool:
        return bool(error_rate) and rng.random() < error_rate

    def failure() -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "message": "simulated upstream failure",
                    "type": "server_error",
                    "code": "fake_failure",
                }
            },
            status_code=500,
        )

    @app.post("/v1/responses", response_model=None)
    async def responses(request: Request) -> Response:
        app.state.requests += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not valid JSON", "invalid_json")
        if not isinstance(body, dict) or not isinstance(body.get("input"), (str, list)):
            return _error(400, "'input' must be a string or a list", "invalid_input")
        if failing():
            await asyncio.sleep(delay)
            return failure()
        prompt = _responses_prompt(body["input"])
        text = answer_for(prompt, quality)
        usage = {
            "input_tokens": count_tokens(prompt),
            "output_tokens": count_tokens(text),
            "total_tokens": count_tokens(prompt) + count_tokens(text),
        }
        rid = f"resp_{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            return StreamingResponse(
                _response_events(rid, version, text, usage, delay), media_type="text/event-stream"
            )
        await asyncio.sleep(delay)
        return JSONResponse(_response_object(rid, version, text, usage, "completed"))

    @app.post("/v1/embeddings", response_model=None)
    async def embeddings(request: Request) -> Response:
        app.state.requests += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not valid JSON", "invalid_json")
        inputs = body.get("input") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "'input' must be a string or a non-empty list", "invalid_input")
        if failing():
            await asyncio.sleep(delay)
            return failure()
        await asyncio.sleep(delay)
        as_base64 = body.get("encoding_format") == "base64"
        dims = int(body.get("dimensions") or EMBEDDING_DIMS)
        data = []
        for i, item in enumerate(inputs):
            vec = fake_embedding(str(item), dims)
            value: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_base64 else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(count_tokens(str(x)) for x in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": version,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app


EMBEDDING_DIMS = 8


def fake_embedding(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """A unit vector that depends only on ``text`` (not a meaningful embedding)."""
    raw = hashlib.blake2b(text.encode(), digest_size=64).digest()
    vals = [(raw[i % 64] - 127.5) / 127.5 for i in range(dims)]
    norm = sum(v * v for v in vals) ** 0.5 or 1.0
    return [v / norm for v in vals]


def _responses_prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    for item in reversed(value):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _response_object(
    rid: str, model: str, text: str, usage: dict[str, int] | None, status: str
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{rid[5:]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if status == "completed"
        else [],
        "usage": usage,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


async def _response_events(
    rid: str, model: str, text: str, usage: dict[str, int], delay: float
) -> AsyncIterator[bytes]:
    await asyncio.sleep(delay)
    seq = iter(range(1_000_000))
    yield _event(
        {
            "type": "response.created",
            "sequence_number": next(seq),
            "response": _response_object(rid, model, text, None, "in_progress"),
        }
    )
    item_id = f"msg_{rid[5:]}"
    words = text.split(" ")
    for i in range(0, len(words), WORDS_PER_CHUNK):
        piece = " ".join(words[i : i + WORDS_PER_CHUNK])
        if i + WORDS_PER_CHUNK < len(words):
            piece += " "
        yield _event(
            {
                "type": "response.output_text.delta",
                "sequence_number": next(seq),
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
        )
    yield _event(
        {
            "type": "response.output_text.done",
            "sequence_number": next(seq),
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }
    )
    yield _event(
        {
            "type": "response.completed",
            "sequence_number": next(seq),
            "response": _response_object(rid, model, text, usage, "completed"),
        }
    )


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    data = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _stream(
    cid: str, created: int, model: str, text: str, usage: dict[str, int] | None, delay: float
) -> AsyncIterator[bytes]:
    # The delay is the time to the first token, as a real server's prefill would be.
    await asyncio.sleep(delay)
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""}, None)
    words = text.split(" ")
    for i in range(0, len(words), WORDS_PER_CHUNK):
        piece = " ".join(words[i : i + WORDS_PER_CHUNK])
        if i + WORDS_PER_CHUNK < len(words):
            piece += " "
        yield _chunk(cid, created, model, {"content": piece}, None)
    yield _chunk(cid, created, model, {}, "stop")
    if usage is not None:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield b"data: " + json.dumps(data).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"
