"""Per-record checks of the ingest API: the log store's rules, and what its columns can hold.

``accepted`` in an answer must mean stored. So beyond :func:`modelwarden.records.validate` and
the embedding dimensions, a record is checked against what the store's Arrow columns can hold
(32-bit token counts, 32-bit float vectors) and against text no UTF-8 file can hold (JSON's lone
surrogates). Such a record is spooled as a *bad record* with its field and reason, which the
flusher hands to the one ingest path as a :class:`~modelwarden.ingest.readers.BadLine`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from modelwarden.ingest.core import MAX_RAW_CHARS
from modelwarden.ingest.readers import BadLine
from modelwarden.records import INLINE_EMBEDDER, KEY_FIELD, FieldProblem, validate
from modelwarden.store.schema import SCHEMAS

BAD_RECORD_KEY = "__modelwarden_bad_record__"


def bad_record(raw: Any, problem: FieldProblem) -> dict[str, Any]:
    """A spool item for a record the log store could not take, kept with its field and reason.

    The flusher turns it into a :class:`~modelwarden.ingest.readers.BadLine`, so that the one
    ingest path stores it in the rejected store like a line that could not be read.
    """
    text = json.dumps(raw, ensure_ascii=False, default=str)
    return {BAD_RECORD_KEY: {"field": problem.field, "reason": problem.reason,
                             "text": clean_text(text)[:MAX_RAW_CHARS]}}


def clean_text(text: str) -> str:
    # JSON can carry lone surrogates ("\ud800"), which no UTF-8 file can hold.
    return text.encode("utf-8", "replace").decode("utf-8")


def _unicode_problem(raw: Any) -> FieldProblem | None:
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError):
        return None
    field = "(record)"
    if isinstance(raw, dict):
        for key, value in raw.items():
            try:
                json.dumps({key: value}, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                field = clean_text(str(key))
                break
    return FieldProblem(field=field, reason="is not valid Unicode text (a lone surrogate "
                        "such as \\ud800)")


def _int_limits(kind: str) -> dict[str, tuple[int, int]]:
    out = {}
    for f in SCHEMAS[kind]:
        if pa.types.is_integer(f.type):
            bits = f.type.bit_width
            out[f.name] = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return out


_LIMITS = {kind: _int_limits(kind) for kind in ("requests", "feedback", "escalations")}
FLOAT32_MAX = float(np.finfo(np.float32).max)


def store_problems(kind: str, rec: Any) -> list[FieldProblem]:
    """What the log store's column types cannot hold although the record schema allows it."""
    problems = []
    for name, (lo, hi) in _LIMITS[kind].items():
        v = getattr(rec, name, None)
        if isinstance(v, int) and not lo <= v <= hi:
            problems.append(FieldProblem(field=name, reason=f"must be at most {hi}"))
    if kind == "requests":
        for name in ("prompt_embedding", "response_embedding"):
            vec = getattr(rec, name)
            if vec is not None and any(abs(x) > FLOAT32_MAX for x in vec):
                problems.append(FieldProblem(
                    field=name, reason="values must fit a 32-bit float (|x| <= 3.4e38)"))
    return problems


def check_batch(
    kind: str, records: list[Any], embedders: dict[str, int], batch_id: str
) -> tuple[list[dict[str, Any]], int, list[tuple[str, Any]]]:
    """Per-record results, the number accepted, and the items to spool.

    The rules are the log store's own (:func:`modelwarden.records.validate`, embedding
    dimensions), plus what its column types can hold, so that ``accepted`` means stored.
    """
    results: list[dict[str, Any]] = []
    items: list[tuple[str, Any]] = []
    accepted = 0
    dims = dict(embedders)
    key_field = KEY_FIELD[kind]
    for i, raw in enumerate(records):
        rec, problems = validate(kind, raw)
        unicode = _unicode_problem(raw)
        if rec is not None:
            problems = [*([unicode] if unicode else []), *store_problems(kind, rec)]
            if kind == "requests" and not problems:
                problems = _dimension_problems(rec, dims)
        elif unicode is not None:
            problems = [unicode, *problems]
        key = getattr(rec, key_field, None) if rec is not None else None
        if key is None and isinstance(raw, dict) and isinstance(raw.get(key_field), str):
            key = raw[key_field]
        key = clean_text(key) if key is not None else None
        # What the validator refuses is spooled as it came (the store refuses it the same way);
        # what only the store's columns or UTF-8 cannot hold is spooled with its reason.
        bad = bool(problems) and (rec is not None or unicode is not None)
        items.append((f"batch {batch_id} record {i + 1}",
                      bad_record(raw, problems[0]) if bad else raw))
        if rec is not None and not problems:
            accepted += 1
            results.append({"index": i, "key": key, "status": "accepted"})
        else:
            results.append(
                {
                    "index": i,
                    "key": key,
                    "status": "invalid",
                    "field": problems[0].field,
                    "reason": problems[0].reason,
                    "problems": [p.model_dump() for p in problems],
                }
            )
    return results, accepted, items


def _dimension_problems(rec: Any, dims: dict[str, int]) -> list[FieldProblem]:
    embedder = rec.embedding_model or INLINE_EMBEDDER
    problems = []
    for name in ("prompt_embedding", "response_embedding"):
        vec = getattr(rec, name)
        if vec is None:
            continue
        expected = dims.setdefault(embedder, len(vec))
        if len(vec) != expected:
            problems.append(
                FieldProblem(
                    field=name,
                    reason=f"has {len(vec)} dimensions; embedder {embedder!r} has {expected}",
                )
            )
    return problems


def as_bad_line(raw: Any) -> Any:
    """A spooled bad record as the ingest path's :class:`BadLine`; anything else unchanged."""
    if isinstance(raw, dict) and BAD_RECORD_KEY in raw:
        bad = raw[BAD_RECORD_KEY]
        return BadLine(reason=bad["reason"], text=bad["text"], field=bad["field"])
    return raw
