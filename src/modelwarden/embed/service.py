"""Embedding service: vectors for stored prompts and answers, and the vectors of a window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from modelwarden.embed import get_embedder
from modelwarden.embed.base import Embedder
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
    have = store.embeddings_table(con, kind, embedder.name)
    todo = t.anti_join(have, "request_id").select("request_id", col)
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
        kind, embedder.name, table.column("request_id"), vecs[inverse]
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
    request_ids: list[str]
    texts: list[str]
    vectors: np.ndarray


class WindowReader:
    """Windows of stored vectors of one kind and embedder, read through one store connection:
    a drift run reads two windows per scope, and making a connection lists and registers the
    store's files each time. Use as a context manager; the connection is released on exit."""

    def __init__(self, settings: Settings, kind: str, embedder: str) -> None:
        if kind not in TEXT_COLUMN:
            raise InputError("kind must be prompt or response", field="kind")
        self.store = open_store(settings)
        self.col = TEXT_COLUMN[kind]
        self.con = self.store.connect(["requests"])
        self.emb = self.store.embeddings_table(self.con, kind, embedder)

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close(self.con)

    def read(
        self,
        since: datetime | None,
        until: datetime | None,
        plant: str | None = None,
        version: str | None = None,
    ) -> WindowVectors:
        """Stored vectors (and their texts) of the requests in a window, oldest first."""
        t = filtered_requests(self.con, since, until, plant, version, include_shadow=False)
        j = t.select("request_id", "timestamp", self.col).inner_join(self.emb, "request_id")
        table = self.con.to_pyarrow(j.order_by(["timestamp", "request_id"]))
        return WindowVectors(
            request_ids=table.column("request_id").to_pylist(),
            texts=table.column(self.col).to_pylist(),
            vectors=vectors_of(table) if table.num_rows else np.zeros((0, 0), np.float32),
        )


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
    with WindowReader(settings, kind, embedder) as reader:
        return reader.read(since, until, plant, version)
