"""Reading request bodies under a size limit, with the content type and JSON checked.

Bodies are read by hand rather than by FastAPI's model binding: the ingest API must answer per
record (a bad record never fails its batch) and the gateway must pass unknown fields through to
the upstream untouched.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from modelwarden.errors import MalformedBody
from modelwarden.server.errors import PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media_type(request: Request, allowed: tuple[str, ...]) -> str:
    media = media_type(request)
    if media in allowed or (media.endswith("+json") and "application/json" in allowed):
        return media
    shown = media or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted here; send {' or '.join(allowed)}",
        field="content-type",
        accepted=list(allowed),
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing one larger than ``limit`` bytes before reading all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is larger than this server's limit of {limit} bytes; send smaller batches",
        limit_bytes=limit,
    )


def _no_constant(name: str) -> Any:
    # Python reads NaN and Infinity; JSON has neither, and no field here can hold them.
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise MalformedBody("the body is empty; send a JSON document")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise MalformedBody("the body is not UTF-8 text", position=exc.start) from exc
    except json.JSONDecodeError as exc:
        raise MalformedBody(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except RecursionError as exc:
        raise MalformedBody("the JSON document is nested too deeply") from exc


def parse_ndjson(body: bytes) -> list[Any]:
    """One JSON value per line; a bad line fails the body, since its records cannot be told apart."""
    out = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line, parse_constant=_no_constant))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise MalformedBody(f"line {n} is not valid JSON", line=n) from exc
    return out


async def read_json(request: Request, limit: int, *, ndjson: bool = False) -> Any:
    """Check the content type and size, then parse the body (JSON, or NDJSON when allowed)."""
    media = require_media_type(request, JSON_TYPES + (NDJSON_TYPES if ndjson else ()))
    body = await read_body(request, limit)
    if media in NDJSON_TYPES:
        return parse_ndjson(body)
    return parse_json(body)
