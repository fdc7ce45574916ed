"""Service functions: what the CLI and the HTTP API both call. Library first, thin entrypoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from modelwarden.embed import get_embedder
from modelwarden.embed.base import Embedder
from modelwarden.errors import InputError, NotFoundError
from modelwarden.ingest.core import Ingestor, IngestReport
from modelwarden.kpi import KpiQuery, add_changes, kpi_expr
from modelwarden.records import INLINE_EMBEDDER, KINDS
from modelwarden.safety import SafetyChecker
from modelwarden.settings import Settings
from modelwarden.store.logstore import LogStore, vectors_of

Progress = Callable[[int], None]


# ---- time helpers --------------------------------------------------------------------------------
def parse_time(value: str, field: str = "time") -> datetime:
    """An ISO-8601 date or date-time; dates and zone-less times are taken as UTC."""
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO-8601 date or time", field=field) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def iso_week(value: str) -> tuple[datetime, datetime]:
    """``2026-W47`` → (Monday 00:00 UTC, the next Monday 00:00 UTC)."""
    try:
        year_s, week_s = value.upper().split("-W")
        start_d = date.fromisocalendar(int(year_s), int(week_s), 1)
    except ValueError as exc:
        raise InputError(f"{value!r} is not an ISO week like 2026-W47", field="week") from exc
    start = datetime(start_d.year, start_d.month, start_d.day, tzinfo=UTC)
    return start, start + timedelta(weeks=1)


def week_label(start: datetime) -> str:
    y, w, _ = start.isocalendar()
    return f"{y}-W{w:02d}"


# ---- stores ------------------------------------------------------------------------------------
def open_store(settings: Settings) -> LogStore:
    return LogStore(settings.log_dir, threads=0)


def safety_checker(settings: Settings) -> SafetyChecker:
    return (
        SafetyChecker.from_file(settings.safety_rules) if settings.safety_rules else SafetyChecker()
    )


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


def time_bounds(settings: Settings) -> tuple[datetime, datetime] | None:
    """First and last request timestamp in the store, or None when it is empty."""
    store = open_store(settings)
    if not store.files("requests"):
        return None
    con = store.connect()
    t = con.table("requests")
    row = con.to_pyarrow(t.aggregate(lo=t.timestamp.min(), hi=t.timestamp.max())).to_pylist()[0]
    return row["lo"], row["hi"]


# ---- KPIs --------------------------------------------------------------------------------------
def compute_kpis(settings: Settings, q: KpiQuery) -> list[dict[str, Any]]:
    """KPI rows for the query, each with its change against the previous window."""
    store = open_store(settings)
    con = store.connect()
    step = q.window_length()
    wide = q.model_copy(update={"since": q.since - step}) if (q.since and step) else q
    expr = kpi_expr(con.table("requests"), con.table("feedback"), con.table("escalations"), wide)
    rows = con.to_pyarrow(expr).to_pylist()
    for r in rows:
        ws = r["window_start"]
        if ws is not None and ws.tzinfo is None:
            r["window_start"] = ws.replace(tzinfo=UTC)
    rows = add_changes(rows, q)
    if q.since is not None and step is not None:
        # The extra window before ``since`` only fed the changes of the first window.
        rows = [r for r in rows if r["window_start"] + step > q.since]
    for r in rows:
        if r["window_start"] is None:
            r["window_start"] = q.since
    return rows


# ---- embeddings --------------------------------------------------------------------------------
def resolve_embedder(settings: Settings, name: str | None = None) -> Embedder | None:
    """The embedder to compute vectors with; None for ``inline`` (vectors that came with records)."""
    name = name or settings.embedder
    if name == INLINE_EMBEDDER:
        return None
    return get_embedder(name, settings.threads())


def embedder_key(settings: Settings, name: str | None = None) -> str:
    emb = resolve_embedder(settings, name)
    return INLINE_EMBEDDER if emb is None else emb.name


@dataclass
class EmbedReport:
    embedder: str
    kind: str
    missing: int = 0
    unique_texts: int = 0
    stored: int = 0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


TEXT_COLUMN = {"prompt": "user_prompt", "response": "generated_response"}


def _filtered_requests(
    con: Any,
    since: datetime | None,
    until: datetime | None,
    plant: str | None = None,
    version: str | None = None,
    include_shadow: bool = True,
) -> Any:
    t = con.table("requests")
    if since is not None:
        t = t.filter(t.timestamp >= since)
    if until is not None:
        t = t.filter(t.timestamp < until)
    if plant:
        t = t.filter(t.plant_id == plant)
    if version:
        t = t.filter(t.model_version == version)
    if not include_shadow:
        t = t.filter(t.route.isnull() | (t.route != "shadow"))
    return t


def embed_missing(
    settings: Settings,
    kind: str = "prompt",
    embedder_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> EmbedReport:
    """Embed every stored request of the range that has no ``kind`` vector from this embedder.

    Identical texts are embedded once: operators ask the same questions again and again.
    """
    if kind not in TEXT_COLUMN:
        raise InputError("kind must be prompt or response", field="kind")
    embedder = resolve_embedder(settings, embedder_name)
    if embedder is None:
        raise InputError(
            "inline embeddings come with the records and cannot be computed; "
            "choose --embedder minilm or hashing",
            field="embedder",
        )
    store = open_store(settings)
    report = EmbedReport(embedder=embedder.name, kind=kind)
    con = store.connect()
    t = _filtered_requests(con, since, until)
    col = TEXT_COLUMN[kind]
    t = t.filter(t[col].notnull())
    have = store.embeddings_table(con, kind, embedder.name)
    todo = t.anti_join(have, "request_id").select("request_id", col)
    table = con.to_pyarrow(todo)
    report.missing = table.num_rows
    if table.num_rows == 0:
        return report
    texts = table.column(col).to_pylist()
    uniques, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    report.unique_texts = len(uniques)
    if on_total:
        on_total(len(uniques))
    vecs = embedder.embed(list(uniques), batch_size=settings.embed_batch_size, progress=progress)
    report.stored = store.append_embeddings(
        kind, embedder.name, table.column("request_id"), vecs[inverse]
    )
    return report


@dataclass
class WindowVectors:
    request_ids: list[str]
    texts: list[str]
    vectors: np.ndarray


def window_vectors(
    settings: Settings,
    kind: str,
    embedder: str,
    since: datetime | None,
    until: datetime | None,
    plant: str | None = None,
    version: str | None = None,
) -> WindowVectors:
    """Stored vectors (and their texts) of the requests in a window, oldest first."""
    store = open_store(settings)
    con = store.connect()
    t = _filtered_requests(con, since, until, plant, version, include_shadow=False)
    emb = store.embeddings_table(con, kind, embedder)
    col = TEXT_COLUMN[kind]
    j = t.select("request_id", "timestamp", col).inner_join(emb, "request_id")
    table = con.to_pyarrow(j.order_by(["timestamp", "request_id"]))
    return WindowVectors(
        request_ids=table.column("request_id").to_pylist(),
        texts=table.column(col).to_pylist(),
        vectors=vectors_of(table) if table.num_rows else np.zeros((0, 0), np.float32),
    )


def plants(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> list[str]:
    store = open_store(settings)
    con = store.connect()
    t = _filtered_requests(con, since, until)
    return sorted(
        x
        for x in con.to_pyarrow(t.select("plant_id").distinct()).column("plant_id").to_pylist()
        if x
    )


def versions(
    settings: Settings, since: datetime | None = None, until: datetime | None = None
) -> list[str]:
    store = open_store(settings)
    con = store.connect()
    t = _filtered_requests(con, since, until, include_shadow=False)
    return sorted(
        x
        for x in con.to_pyarrow(t.select("model_version").distinct())
        .column("model_version")
        .to_pylist()
        if x
    )


def rejected(
    settings: Settings, limit: int = 50, source: str | None = None
) -> list[dict[str, Any]]:
    store = open_store(settings)
    con = store.connect()
    t = con.table("rejected")
    if source:
        t = t.filter(t.source == source)
    t = t.order_by([t.rejected_at.desc(), t.source, t.location]).limit(limit)
    return con.to_pyarrow(t.drop("raw")).to_pylist()


def require_data(settings: Settings) -> tuple[datetime, datetime]:
    bounds = time_bounds(settings)
    if bounds is None:
        raise NotFoundError(
            f"no requests stored in {settings.data_dir}; ingest some first "
            "(modelwarden ingest FILE, or modelwarden simulate --ingest)"
        )
    return bounds


def as_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)
