"""Ingest service: files and streams into the log store, each bad record kept with its reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from modelwarden.errors import InputError
from modelwarden.ingest.core import Ingestor, IngestReport
from modelwarden.records import KINDS
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store, time_bounds

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


def ingest_records(
    settings: Settings,
    batches: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    source: str,
) -> list[dict[str, Any]]:
    """Store in-memory records, ``[(kind, rows), …]`` in that order; one count row per kind.

    Rows are located as ``record N`` (1-based) in rejections, as files are by line.
    """
    for kind, _ in batches:
        if kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    ingestor = Ingestor(open_store(settings), safety_checker(settings))
    out = []
    for kind, rows in batches:
        rep = ingestor.ingest_raw(
            kind, [(f"record {i + 1}", r) for i, r in enumerate(rows)], source=source
        )
        out.append(
            {
                "kind": kind,
                "accepted": rep.accepted,
                "duplicates": rep.duplicates,
                "rejected": rep.rejected,
            }
        )
    return out


def data_status(settings: Settings) -> dict[str, Any]:
    """What the data directory holds: counts per table, embeddings, first and last request."""
    stats = open_store(settings).stats()
    bounds = time_bounds(settings)
    return {
        "data_dir": str(settings.data_dir),
        **{k: v for k, v in stats.items() if k != "embeddings"},
        "embeddings": stats["embeddings"],
        "first_request": bounds[0] if bounds else None,
        "last_request": bounds[1] if bounds else None,
    }
