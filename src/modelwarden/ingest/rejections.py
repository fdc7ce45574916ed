"""A rejected record: where it came from, what was wrong with it, and the raw text kept for it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelwarden.ingest import readers
from modelwarden.records import FieldProblem, clean_text, is_utf8

MAX_RAW_CHARS = 65_536


@dataclass
class Rejection:
    source: str
    location: str
    key: str | None
    problems: list[FieldProblem]
    raw: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "location": self.location,
            "record_key": self.key,
            "field": self.problems[0].field,
            "reason": self.problems[0].reason,
            "problems": [p.model_dump() for p in self.problems],
        }


def raw_text(raw: Any) -> str:
    if isinstance(raw, readers.BadLine):
        return raw.text[:MAX_RAW_CHARS]
    try:
        text = json.dumps(raw, default=str, ensure_ascii=False)
        if not is_utf8(text):
            # JSON escapes keep a lone surrogate exactly as it came, in text UTF-8 can store.
            text = json.dumps(raw, default=str, ensure_ascii=True)
        return text[:MAX_RAW_CHARS]
    except (TypeError, ValueError):
        return clean_text(repr(raw)[:MAX_RAW_CHARS])
