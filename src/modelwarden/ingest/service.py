"""Ingest service: files and streams into the log store, each bad record kept with its reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelwarden.embed.service import embed_kinds
from modelwarden.errors import InputError
from modelwarden.ingest.core import Ingestor, IngestReport
from modelwarden.records import KINDS
from modelwarden.safety.service import safety_checker
from modelwarden.settings import Settings
from modelwarden.store import reads
from modelwarden.store.logstore import DEFAULT_GRACE_S
from modelwarden.store.reads import open_store, time_bounds
from modelwarden.windows import parse_time

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


def ingest_files(
    settings: Settings,
    paths: Sequence[str],
    kind: str = "requests",
    *,
    embed: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate and store files (what ``modelwarden ingest`` does): the report as a dict.

    With ``embed``, requests that arrived without vectors are embedded afterwards (the report's
    ``embedding``). ``on_stage`` hears each stage's label before it starts.
    """
    if on_stage:
        on_stage(f"ingesting {kind}")
    out = ingest_paths(settings, paths, kind, progress=progress).to_dict()
    if embed and kind == "requests":
        rep = embed_kinds(
            settings, "prompt", progress=progress, on_total=on_total, on_stage=on_stage
        )
        out["embedding"] = rep[0].to_dict()
    return out


def rejected(
    settings: Settings, limit: int = 50, source: str | None = None
) -> list[dict[str, Any]]:
    """Rejected records, newest first, with their file, line or row, field and reason."""
    return reads.rejected(settings, limit=limit, source=source)


def simulate_traffic(
    settings: Settings,
    *,
    days: int = 28,
    seed: int = 0,
    scenario: str = "stable",
    end: str | None = None,
    scale: float = 1.0,
    out: Path | None = None,
    store: bool = False,
) -> dict[str, Any]:
    """Generate plant traffic, write it to ``out`` (JSONL, events beside it) and/or store it.

    The summary of the traffic, with ``files`` written and ``ingested`` counts per kind.
    """
    if out is None and not store:
        raise InputError(
            "say where the traffic goes: --out FILE, --ingest or --to-gateway URL", field="out"
        )
    # lazy: the simulator (its corpus and HTTP client) is 0.1 s that `ingest` and `rejected`
    # would pay for nothing
    from modelwarden.simulate import service as sim

    end_dt = parse_time(end, "end") if end else None
    data = sim.simulate(days=days, seed=seed, scenarios=scenario, end=end_dt, scale=scale)
    summary = sim.summary(data)
    if out is not None:
        summary["files"] = sim.write_traffic(out, data)
    if store:
        summary["ingested"] = ingest_records(settings, sim.batches(data), source="simulate")
    return summary


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


def compact_store(
    settings: Settings,
    kinds: list[str] | None = None,
    min_files: int = 2,
    grace_s: float = DEFAULT_GRACE_S,
) -> dict[str, Any]:
    """Merge each day partition's part files into one file (``compact``; safe while ``serve``
    runs): directories, files in and out, rows, and how many merged files were deleted."""
    return (
        open_store(settings).compact(kinds or None, min_files=min_files, grace_s=grace_s).to_dict()
    )


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
