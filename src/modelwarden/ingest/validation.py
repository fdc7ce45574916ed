"""Per-record checks of the ingest API: the log store's rules, answered record by record.

``accepted`` in an answer must mean stored. :func:`modelwarden.records.validate` already refuses
what the store's columns cannot hold (32-bit token counts, 32-bit float vectors, text UTF-8
cannot encode); this adds the embedding dimensions, which depend on the store. A record the
flusher could not judge the same way from its spooled copy (a dimension problem, or text with a
lone surrogate, which the spool cannot write as it is) is spooled as a *bad record* with its
field and reason, which the flusher hands to the one ingest path as a
:class:`~modelwarden.ingest.readers.BadLine`.
"""

from __future__ import annotations

import json
from typing import Any

from modelwarden.ingest.readers import BadLine
from modelwarden.ingest.rejections import MAX_RAW_CHARS
from modelwarden.records import (
    KEY_FIELD,
    FieldProblem,
    clean_text,
    dimension_problems,
    validate,
)

BAD_RECORD_KEY = "__modelwarden_bad_record__"

__all__ = [
    "BAD_RECORD_KEY",
    "as_bad_line",
    "bad_record",
    "check_batch",
    "clean_text",
    "plant_problem",
]


def bad_record(raw: Any, problem: FieldProblem, key: str | None = None) -> dict[str, Any]:
    """A spool item for a record the log store could not take, kept with its field and reason.

    The flusher turns it into a :class:`~modelwarden.ingest.readers.BadLine`, so that the one
    ingest path stores it in the rejected store like a line that could not be read.
    """
    text = json.dumps(raw, ensure_ascii=False, default=str)
    return {
        BAD_RECORD_KEY: {
            "field": problem.field,
            "reason": problem.reason,
            "text": clean_text(text)[:MAX_RAW_CHARS],
            "key": key,
        }
    }


def _spools_as_it_came(raw: Any) -> bool:
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except (TypeError, ValueError):
        return True
    return True


def plant_problem(bound: str | None, plant_id: str) -> FieldProblem | None:
    """Why a key bound to plant ``bound`` may not write a record of ``plant_id``, if it may not."""
    if bound is None or plant_id == bound:
        return None
    return FieldProblem(
        field="plant_id",
        reason=f"the API key is bound to plant {bound!r} and cannot write records of "
        f"plant {plant_id!r}",
    )


def check_batch(
    kind: str,
    records: list[Any],
    embedders: dict[str, int],
    batch_id: str,
    plant: str | None = None,
    hints: list[dict[str, str]] | None = None,
) -> tuple[list[dict[str, Any]], int, list[tuple[str, Any]]]:
    """Per-record results, the number accepted, and the items to spool.

    The rules are the log store's own (:func:`modelwarden.records.validate`, which includes
    what its column types can hold, and the embedding dimensions), so ``accepted`` means stored.
    ``plant`` is the plant the sender's key is bound to, if any: a request record of another
    plant is rejected with field ``plant_id`` (kept in the rejected store with its reason).
    ``hints`` (one per record) explain a missing field from where the record came from, e.g.
    the span attribute that was looked for; a refusal of that field then carries it.
    """
    results: list[dict[str, Any]] = []
    items: list[tuple[str, Any]] = []
    accepted = 0
    dims = dict(embedders)
    key_field = KEY_FIELD[kind]
    for i, raw in enumerate(records):
        rec, problems = validate(kind, raw)
        if rec is not None and kind == "requests":
            wrong_plant = plant_problem(plant, rec.plant_id)  # type: ignore[attr-defined]
            problems = [wrong_plant] if wrong_plant else dimension_problems(rec, dims)
        hint = hints[i] if hints is not None and i < len(hints) else None
        hinted = False
        if problems and hint and problems[0].field in hint:
            problems = [
                FieldProblem(
                    field=problems[0].field,
                    reason=f"{problems[0].reason} ({hint[problems[0].field]})",
                ),
                *problems[1:],
            ]
            hinted = True
        key = getattr(rec, key_field, None) if rec is not None else None
        if key is None and isinstance(raw, dict) and isinstance(raw.get(key_field), str):
            key = raw[key_field]
        key = clean_text(key) if key is not None else None
        # What the validator refuses is spooled as it came (the store refuses it the same way);
        # a dimension problem, or text the spool cannot write as it is, goes with its reason.
        bad = bool(problems) and (hinted or rec is not None or not _spools_as_it_came(raw))
        items.append(
            (f"batch {batch_id} record {i + 1}", bad_record(raw, problems[0], key) if bad else raw)
        )
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


def as_bad_line(raw: Any) -> Any:
    """A spooled bad record as the ingest path's :class:`BadLine`; anything else unchanged."""
    if isinstance(raw, dict) and BAD_RECORD_KEY in raw:
        bad = raw[BAD_RECORD_KEY]
        return BadLine(
            reason=bad["reason"], text=bad["text"], field=bad["field"], key=bad.get("key")
        )
    return raw
