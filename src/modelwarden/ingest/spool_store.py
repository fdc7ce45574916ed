"""What the flusher does with a spooled batch: the one ingest path, and rejected records kept."""

from __future__ import annotations

import json
import logging
from typing import Any

from modelwarden.ingest.core import Ingestor, rejections_table
from modelwarden.ingest.rejections import MAX_RAW_CHARS, Rejection
from modelwarden.ingest.validation import as_bad_line, clean_text
from modelwarden.records import KEY_FIELD, FieldProblem
from modelwarden.store.logstore import LogStore

log = logging.getLogger("modelwarden.ingest")


class SpoolStore:
    def __init__(self, store: LogStore, ingestor: Ingestor) -> None:
        self.store = store
        self.ingestor = ingestor

    def store_batch(self, kind: str, items: Any, source: str) -> None:
        self.ingestor.ingest_raw(kind, [(loc, as_bad_line(raw)) for loc, raw in items], source)

    def unstorable(self, kind: str, item: tuple[str, Any], source: str, exc: Exception) -> None:
        """Keep a record the store refused (past validation) in the rejected store, with why."""
        location, raw = item
        key = raw.get(KEY_FIELD[kind]) if isinstance(raw, dict) else None
        text = json.dumps(raw, ensure_ascii=False, default=str)
        problem = FieldProblem(field="(record)", reason=f"the log store could not take it: {exc}")
        rejection = Rejection(
            source,
            location,
            clean_text(str(key)) if key else None,
            [problem],
            clean_text(text)[:MAX_RAW_CHARS],
        )
        self.store.append_rejected(rejections_table(kind, [rejection]))
        log.error("%s %s could not be stored and was kept as rejected: %s", kind, location, exc)
