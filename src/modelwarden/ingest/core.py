"""Ingest: validate records, keep the bad ones with their reasons, store the good ones.

One path for every source (files, stdin, the HTTP API): raw records are validated one by one
(:func:`modelwarden.records.validate`), or column by column for typed Parquet
(:mod:`modelwarden.ingest.columnar`). A bad record never blocks the valid records beside it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from modelwarden.errors import InputError
from modelwarden.ingest import columnar, readers
from modelwarden.ingest.rejections import Rejection, raw_text
from modelwarden.kpi import rollups
from modelwarden.records import (
    INLINE_EMBEDDER,
    KINDS,
    FieldProblem,
    RequestRecord,
    clean_text,
    dimension_problems,
    validate,
)
from modelwarden.safety.checker import SafetyChecker
from modelwarden.store.logstore import LogStore
from modelwarden.store.schema import SCHEMAS

SAMPLE_REJECTIONS = 5

Progress = Callable[[int], None]


@dataclass
class IngestReport:
    kind: str
    sources: list[str] = field(default_factory=list)
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    embeddings_stored: int = 0
    first_rejections: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: IngestReport) -> None:
        for s in other.sources:
            if s not in self.sources:
                self.sources.append(s)
        self.read += other.read
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.embeddings_stored += other.embeddings_stored
        room = SAMPLE_REJECTIONS - len(self.first_rejections)
        self.first_rejections.extend(other.first_rejections[: max(room, 0)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sources": self.sources,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "embeddings_stored": self.embeddings_stored,
            "first_rejections": self.first_rejections,
        }


def rejections_table(kind: str, rejections: Sequence[Rejection]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.table(
        {
            "rejected_at": [now] * len(rejections),
            "kind": [kind] * len(rejections),
            "source": [r.source for r in rejections],
            "location": [r.location for r in rejections],
            "record_key": [r.key for r in rejections],
            "field": [r.problems[0].field for r in rejections],
            "reason": [r.problems[0].reason for r in rejections],
            "problems": [json.dumps([p.model_dump() for p in r.problems]) for r in rejections],
            "raw": [r.raw for r in rejections],
        },
        schema=SCHEMAS["rejected"],
    )


def _requests_table(
    recs: Sequence[RequestRecord], sources: Sequence[str], now: datetime
) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [] for n in SCHEMAS["requests"].names}
    for r, src in zip(recs, sources, strict=True):
        cols["request_id"].append(r.request_id)
        cols["timestamp"].append(r.timestamp)
        cols["plant_id"].append(r.plant_id)
        cols["model_version"].append(r.model_version)
        cols["user_prompt"].append(r.user_prompt)
        cols["generated_response"].append(r.generated_response)
        cols["latency_ms"].append(r.latency_ms)
        cols["human_feedback_score"].append(r.human_feedback_score)
        cols["contains_safety_keyword"].append(r.contains_safety_keyword)
        cols["safety_computed"].append(False)
        cols["user_id"].append(r.user_id)
        cols["session_id"].append(r.session_id)
        cols["route"].append(r.route)
        cols["parent_request_id"].append(r.parent_request_id)
        cols["prompt_tokens"].append(r.prompt_tokens)
        cols["completion_tokens"].append(r.completion_tokens)
        cols["error"].append(r.error)
        cols["source"].append(src)
        cols["ingested_at"].append(now)
    return pa.table(cols, schema=SCHEMAS["requests"])


def _events_table(
    kind: str, recs: Sequence[Any], sources: Sequence[str], now: datetime
) -> pa.Table:
    schema = SCHEMAS[kind]
    cols: dict[str, list[Any]] = {n: [] for n in schema.names}
    for r, src in zip(recs, sources, strict=True):
        data = r.model_dump()
        for n in schema.names:
            if n == "source":
                cols[n].append(src)
            elif n == "ingested_at":
                cols[n].append(now)
            else:
                cols[n].append(data.get(n))
    return pa.table(cols, schema=schema)


class Ingestor:
    """Validates and stores records of one store; the CLI, the API and the gateway share it."""

    def __init__(self, store: LogStore, safety: SafetyChecker | None = None) -> None:
        self.store = store
        self.safety = safety or SafetyChecker()

    # ---- entry points ------------------------------------------------------------------------
    def ingest_path(self, path: str, kind: str, progress: Progress | None = None) -> IngestReport:
        if kind not in KINDS:
            raise InputError(f"--kind must be one of {', '.join(KINDS)}", field="kind")
        readers.check_readable(path)
        fmt = readers.detect_format(path)
        report = IngestReport(kind=kind, sources=[path])
        if fmt == "parquet":
            pf = readers.open_parquet(path)
            if kind == "requests" and columnar.is_native(pf.schema_arrow):
                for batch in pf.iter_batches(batch_size=256 * 1024):
                    part = self.ingest_arrow(
                        pa.Table.from_batches([batch]), source=path, row_offset=report.read
                    )
                    report.merge(part)
                    if progress:
                        progress(batch.num_rows)
                return report
            chunks = readers.read_parquet_rows(path)
        elif fmt == "csv":
            chunks = readers.read_csv(path)
        else:
            chunks = readers.read_jsonl(path)
        for chunk in chunks:
            report.merge(self.ingest_raw(kind, chunk, source=path))
            if progress:
                progress(len(chunk))
        return report

    def ingest_raw(self, kind: str, items: Sequence[tuple[str, Any]], source: str) -> IngestReport:
        """Validate and store raw records given as ``(location, raw)`` pairs."""
        source = clean_text(source)  # a file name need not be UTF-8
        report = IngestReport(kind=kind, sources=[source], read=len(items))
        good: list[Any] = []
        good_loc: list[str] = []
        rejections: list[Rejection] = []
        for location, raw in items:
            if isinstance(raw, readers.BadLine):
                rejections.append(
                    Rejection(
                        source,
                        location,
                        raw.key,
                        [FieldProblem(field=raw.field, reason=raw.reason)],
                        raw_text(raw),
                    )
                )
                continue
            rec, problems = validate(kind, raw)
            if rec is None:
                key = raw.get("request_id") if isinstance(raw, dict) else None
                rejections.append(
                    Rejection(
                        source,
                        location,
                        clean_text(str(key)) if key is not None else None,
                        problems,
                        raw_text(raw),
                    )
                )
            else:
                good.append(rec)
                good_loc.append(location)
        if kind == "requests":
            good, good_loc, more = self._check_inline_dims(good, good_loc, source)
            rejections.extend(more)
        self._store(kind, good, source, report)
        order = {loc: i for i, (loc, _) in enumerate(items)}
        rejections.sort(key=lambda r: order.get(r.location, 0))
        self._reject(kind, rejections, report)
        return report

    def ingest_arrow(self, table: pa.Table, source: str, row_offset: int = 0) -> IngestReport:
        """The columnar path for typed request tables (Parquet, Arrow)."""
        source = clean_text(source)  # a file name need not be UTF-8
        report = IngestReport(kind="requests", sources=[source], read=table.num_rows)
        result = columnar.validate_requests(table, self.store.embedders(), source, row_offset)
        good = result.table
        if good.num_rows:
            flags = good.column("contains_safety_keyword")
            if flags.null_count:
                good = columnar.fill_safety(good, self.safety)
            now = pa.repeat(
                pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), good.num_rows
            )
            good = good.set_column(good.schema.get_field_index("ingested_at"), "ingested_at", now)
            appended = self.store.append("requests", good)
            report.accepted = appended.accepted
            report.duplicates = appended.duplicates
            rollups.update(self.store, "requests", appended.files)
            for (kind, embedder), (ids, vectors, stamps) in result.embeddings.items():
                report.embeddings_stored += self.store.append_embeddings(
                    kind, embedder, ids, vectors, stamps
                )
        self._reject("requests", result.rejections, report)
        return report

    # ---- helpers -----------------------------------------------------------------------------
    def _check_inline_dims(
        self, recs: list[Any], locs: list[str], source: str
    ) -> tuple[list[Any], list[str], list[Rejection]]:
        dims = dict(self.store.embedders())
        keep: list[Any] = []
        keep_loc: list[str] = []
        rejected: list[Rejection] = []
        for rec, loc in zip(recs, locs, strict=True):
            problems = dimension_problems(rec, dims)
            if problems:
                rejected.append(
                    Rejection(
                        source,
                        loc,
                        rec.request_id,
                        problems,
                        raw_text(rec.model_dump(mode="json")),
                    )
                )
            else:
                keep.append(rec)
                keep_loc.append(loc)
        return keep, keep_loc, rejected

    def _store(self, kind: str, recs: list[Any], source: str, report: IngestReport) -> None:
        if not recs:
            return
        now = datetime.now(UTC)
        sources = [source] * len(recs)
        if kind == "requests":
            computed = []
            for r in recs:
                missing = r.contains_safety_keyword is None
                if missing:
                    r.contains_safety_keyword = self.safety.flags(r.generated_response)
                computed.append(missing)
            table = _requests_table(recs, sources, now)
            table = table.set_column(
                table.schema.get_field_index("safety_computed"),
                "safety_computed",
                pa.array(computed, pa.bool_()),
            )
        else:
            table = _events_table(kind, recs, sources, now)
        appended = self.store.append(kind, table)
        report.accepted += appended.accepted
        report.duplicates += appended.duplicates
        rollups.update(self.store, kind, appended.files)
        if kind == "requests":
            report.embeddings_stored += self._store_inline_embeddings(recs)

    def _store_inline_embeddings(self, recs: Sequence[RequestRecord]) -> int:
        groups: dict[tuple[str, str], tuple[list[str], list[list[float]], list[datetime]]] = {}
        for r in recs:
            embedder = r.embedding_model or INLINE_EMBEDDER
            for kind, vec in (("prompt", r.prompt_embedding), ("response", r.response_embedding)):
                if vec is not None:
                    ids, vecs, stamps = groups.setdefault((kind, embedder), ([], [], []))
                    ids.append(r.request_id)
                    vecs.append(vec)
                    stamps.append(r.timestamp)
        stored = 0
        for (kind, embedder), (ids, vecs, stamps) in groups.items():
            stored += self.store.append_embeddings(
                kind,
                embedder,
                ids,
                np.asarray(vecs, dtype=np.float32),
                pa.array(stamps, pa.timestamp("us", tz="UTC")),
            )
        return stored

    def _reject(self, kind: str, rejections: Sequence[Rejection], report: IngestReport) -> None:
        if not rejections:
            return
        self.store.append_rejected(rejections_table(kind, rejections))
        report.rejected += len(rejections)
        report.first_rejections.extend(r.to_dict() for r in rejections[:SAMPLE_REJECTIONS])


__all__ = ["IngestReport", "Ingestor", "Rejection"]
