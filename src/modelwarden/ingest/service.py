"""Ingest service: files and streams into the log store, each bad record kept with its reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modelwarden.errors import InputError
from modelwarden.ingest.core import Ingestor, IngestReport
from modelwarden.records import KINDS
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store

Progress = Callable[[int], None]


def ingest_paths(
    settings: Settings, paths: Sequence[str], kind: str, progress: Progress | None = None
) -> IngestReport:
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    ingestor = Ingestor(open_store(settings), safety_checker(settings))
    total = IngestReport(kind=kind)
    for path in paths:
        total.merge(ingestor.ingest_path(path, kind, progress))
    return total
