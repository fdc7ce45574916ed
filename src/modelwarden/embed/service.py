"""Embedding service: vectors for stored prompts and answers, and the vectors of a window."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwarden.embed import get_embedder
from modelwarden.embed.base import Embedder
from modelwarden.embed.sampling import sample_mask
from modelwarden.errors import InputError
from modelwarden.records import INLINE_EMBEDDER
from modelwarden.settings import Settings
from modelwarden.store.logstore import vectors_of
from modelwarden.store.reads import filtered_requests, open_store

Progress = Callable[[int], None]

TEXT_COLUMN = {"prompt": "user_prompt", "response": "generated_response"}


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


def embed_missing(
    settings: Settings,
    kind: str = "prompt",
    embedder_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    limit: int | None = None,
) -> EmbedReport:
    """Embed every stored request of the range that has no ``kind`` vector from this embedder.

    Identical texts are embedded once: operators ask the same questions again and again.
    ``limit`` bounds the distinct texts embedded by this call (a slice of background work); the
    requests of the texts left out stay missing for the next call.
    """
    if limit is not None and limit < 1:
        raise InputError("limit must be at least 1", field="limit")
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
    t = filtered_requests(con, since, until)
    col = TEXT_COLUMN[kind]
    t = t.filter(t[col].notnull())
    have = store.embeddings_table(con, kind, embedder.name, *_days(since, until))
    todo = t.anti_join(have, "request_id").select("request_id", "timestamp", col)
    table = con.to_pyarrow(todo)
    report.missing = table.num_rows
    if table.num_rows == 0:
        return report
    texts = table.column(col).to_pylist()
    uniques, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    if limit is not None and len(uniques) > limit:
        keep = inverse < limit
        table, inverse, uniques = table.filter(keep), inverse[keep], uniques[:limit]
    report.unique_texts = len(uniques)
    if on_total:
        on_total(len(uniques))
    vecs = embedder.embed(list(uniques), batch_size=settings.embed_batch_size, progress=progress)
    report.stored = store.append_embeddings(
        kind,
        embedder.name,
        table.column("request_id"),
        vecs[inverse],
        table.column("timestamp"),
    )
    return report


def embed_kinds(
    settings: Settings,
    kind: str = "prompt",
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    embedder_name: str | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[EmbedReport]:
    """:func:`embed_missing` for ``prompt``, ``response`` or ``all`` (both), one report each.

    ``on_stage`` hears what is being embedded before each kind (``embedding prompts (name)``).
    """
    reports = []
    for k in ["prompt", "response"] if kind == "all" else [kind]:
        if on_stage:
            on_stage(f"embedding {k}s ({embedder_key(settings, embedder_name)})")
        reports.append(
            embed_missing(
                settings, k, embedder_name, since, until, progress=progress, on_total=on_total
            )
        )
    return reports


@dataclass
class WindowVectors:
    """The vectors (and texts) of a window's requests, oldest first. ``n_total`` counts the
    window's requests with a vector; when it is more than the rows here, the window was sampled
    (:attr:`sampled`, see :class:`WindowReader`)."""

    request_ids: list[str]
    texts: list[str]
    vectors: np.ndarray
    n_total: int | None = None

    def __post_init__(self) -> None:
        if self.n_total is None:
            self.n_total = len(self.request_ids)

    @property
    def sampled(self) -> bool:
        return (self.n_total or 0) > len(self.request_ids)


def _days(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The UTC days that hold ``[since, until)``."""
    first = since.astimezone(UTC).date() if since is not None else None
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date() if until else None
    return first, last


class WindowReader:
    """Windows of stored vectors of one kind and embedder, read through one store connection:
    a drift run reads two windows per scope, and making a connection lists and registers the
    store's files each time. Use as a context manager; the connection is released on exit.

    A window reads only the vectors of its UTC days. A window with more than ``max_rows``
    requests with a vector (default: the ``drift_window_max`` setting) is sampled before any
    vector is loaded: the ids of its rows are read first, the rows whose id hashes lowest are
    kept (:mod:`modelwarden.embed.sampling`: the same rows on every read and every engine), and
    only their vectors and texts are fetched. Memory is bounded by ``max_rows``, not the window.
    """

    def __init__(
        self, settings: Settings, kind: str, embedder: str, max_rows: int | None = None
    ) -> None:
        if kind not in TEXT_COLUMN:
            raise InputError("kind must be prompt or response", field="kind")
        self.max_rows = settings.drift_window_max if max_rows is None else max_rows
        if self.max_rows < 1:
            raise InputError("max_rows must be at least 1", field="max_rows")
        self.store = open_store(settings)
        self.col = TEXT_COLUMN[kind]
        self.kind, self.embedder = kind, embedder
        self.con = self.store.connect(["requests"])
        self._emb: dict[tuple[date | None, date | None], Any] = {}

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close(self.con)

    def _vectors(self, since: datetime | None, until: datetime | None) -> Any:
        """The vectors of the window's days (and of an older store's flat files), one table per
        range of days on this connection."""
        days = _days(since, until)
        if days not in self._emb:
            self._emb[days] = self.store.embeddings_table(
                self.con, self.kind, self.embedder, *days, name=f"emb_window_{len(self._emb)}"
            )
        return self._emb[days]

    def read(
        self,
        since: datetime | None,
        until: datetime | None,
        plant: str | None = None,
        version: str | None = None,
    ) -> WindowVectors:
        """Stored vectors (and their texts) of the requests in a window, oldest first; at most
        about ``max_rows`` of them, a deterministic uniform sample when there are more."""
        return self.read_scopes(since, until, [(plant, version)])[0]

    def read_scopes(
        self,
        since: datetime | None,
        until: datetime | None,
        scopes: Sequence[tuple[str | None, str | None]],
    ) -> list[WindowVectors]:
        """:meth:`read` of one window for each (plant, version) of ``scopes`` (None: all), with
        one pass over the window's vectors: the ids (and plant, version) of the window's rows
        are read once, each scope's sample is drawn from them, and the vectors of the samples'
        union are fetched in one query (a drift run tests every scope on the same window)."""
        # lazy: Ibis's expression API, loaded by the store's connection anyway
        import ibis

        if not scopes:
            return []
        plants = {p for p, _ in scopes}
        versions = {v for _, v in scopes}
        common_plant = plants.pop() if len(plants) == 1 else None
        common_version = versions.pop() if len(versions) == 1 else None
        t = filtered_requests(
            self.con, since, until, common_plant, common_version, include_shadow=False
        )
        emb = self._vectors(since, until)
        cols = ["request_id", "plant_id", "model_version"]
        have = self.con.to_pyarrow(t.select(*cols).semi_join(emb, "request_id"))
        ids = have.column("request_id").combine_chunks()
        scope_ids: list[pa.Array | None] = []  # the sample's ids; None: every row of the scope
        fetch: list[pa.Array] = []
        totals = []
        for plant, version in scopes:
            mask = _scope_mask(have, plant, version)
            in_scope = _plain(ids.filter(mask)) if mask is not None else ids
            totals.append(len(in_scope))
            if len(in_scope) > self.max_rows:
                keep = pa.array(sample_mask(in_scope, self.max_rows))
                scope_ids.append(pc.unique(in_scope.filter(keep)))
            else:
                scope_ids.append(None)
            fetch.append(scope_ids[-1] if scope_ids[-1] is not None else in_scope)
        rows = t.select("request_id", "timestamp", "plant_id", "model_version", self.col)
        wanted = pc.unique(pa.concat_arrays(fetch))
        if len(wanted) < len(pc.unique(ids)):
            # Only the samples' (and the small scopes') rows: their vectors and nothing else.
            chosen = pa.table({"request_id": wanted})
            rows = rows.semi_join(ibis.memtable(chosen), "request_id")
        j = rows.inner_join(emb, "request_id")
        table = _one_vector_per_row(self.con.to_pyarrow(j.order_by(["timestamp", "request_id"])))
        # Each scope's rows by index into one copy of the fetched rows (an Arrow filter of the
        # vector column per scope costs more than the query).
        all_ids = table.column("request_id").to_pylist()
        all_texts = table.column(self.col).to_pylist()
        all_vectors = vectors_of(table) if table.num_rows else np.zeros((0, 0), np.float32)
        out = []
        for (plant, version), chosen_ids, total in zip(scopes, scope_ids, totals, strict=True):
            mask = _scope_mask(table, plant, version)
            if chosen_ids is not None:
                in_sample = pc.is_in(table.column("request_id"), value_set=chosen_ids)
                mask = in_sample if mask is None else pc.and_(mask, in_sample)
            if mask is None:
                idx = np.arange(table.num_rows)
            else:
                idx = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))
            out.append(
                WindowVectors(
                    request_ids=[all_ids[i] for i in idx],
                    texts=[all_texts[i] for i in idx],
                    vectors=all_vectors[idx] if idx.size else np.zeros((0, 0), np.float32),
                    n_total=total,
                )
            )
        return out


def _plain(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def _scope_mask(table: pa.Table, plant: str | None, version: str | None) -> Any:
    """Rows of ``table`` in the scope (an Arrow boolean array), None for every row."""
    mask = None
    if plant:
        mask = pc.fill_null(pc.equal(table.column("plant_id"), plant), False)
    if version:
        v = pc.fill_null(pc.equal(table.column("model_version"), version), False)
        mask = v if mask is None else pc.and_(mask, v)
    return mask


def _one_vector_per_row(table: pa.Table) -> pa.Table:
    """``table`` (ordered by time and id) with one row per request: a vector kept twice (the flat
    files of an older store and a day read by a reader that straddled their move) counts once."""
    if table.num_rows < 2:
        return table
    ids, ts = table.column("request_id"), table.column("timestamp")
    n = table.num_rows
    same = pc.and_(
        pc.equal(ids.slice(1), ids.slice(0, n - 1)), pc.equal(ts.slice(1), ts.slice(0, n - 1))
    )
    if not pc.any(same).as_py():
        return table
    keep = np.ones(n, dtype=bool)
    keep[1:] = ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    return table.filter(pa.array(keep))


def window_vectors(
    settings: Settings,
    kind: str,
    embedder: str,
    since: datetime | None,
    until: datetime | None,
    plant: str | None = None,
    version: str | None = None,
    max_rows: int | None = None,
) -> WindowVectors:
    """Stored vectors (and their texts) of the requests in a window, oldest first; sampled
    above ``max_rows`` (default: the ``drift_window_max`` setting), see :class:`WindowReader`."""
    with WindowReader(settings, kind, embedder, max_rows) as reader:
        return reader.read(since, until, plant, version)
