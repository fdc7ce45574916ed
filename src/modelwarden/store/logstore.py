"""The log store: append-only, partitioned Parquet in the data directory, read through Ibis.

Layout under ``DATA/log``::

    requests/date=YYYY-MM-DD/part-*.parquet      one file per batch and UTC day
    feedback/date=YYYY-MM-DD/part-*.parquet
    escalations/date=YYYY-MM-DD/part-*.parquet
    embeddings/kind=prompt/embedder=NAME/part-*.parquet   (request_id, vector, embedded_at)
    rejected/part-*.parquet                      every rejected record with its reason
    embedders.json                               the dimension of each embedder

Every file is written to a temporary name, fsync'd, renamed into place and its directory fsync'd,
so a crash leaves either the whole batch or none of it. Appends hold an exclusive file lock, so
two writers cannot both accept the same key. Appends are idempotent by key (``request_id`` for
requests, ``event_id`` for events): a key already stored is counted as a duplicate, not written.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelwarden.errors import DimensionError, InputError, StoreError
from modelwarden.store import duckdb_sql
from modelwarden.store.schema import (
    EMBEDDING_KINDS,
    KEYS,
    PARTITIONED,
    SCHEMAS,
    embedding_schema,
)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that readers see all of it or nothing, and it survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    vector_cols = [f.name for f in table.schema if pa.types.is_fixed_size_list(f.type)]
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=1,
        use_dictionary=[f.name for f in table.schema if f.name not in vector_cols],
        row_group_size=128 * 1024,
    )
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass
class AppendResult:
    accepted: int = 0
    duplicates: int = 0
    files: list[str] = field(default_factory=list)


class LogStore:
    """Handle on ``DATA/log``. Cheap to create; safe to use from several processes."""

    def __init__(self, root: Path, threads: int = 0) -> None:
        self.root = Path(root)
        self.threads = threads

    # ---- paths -------------------------------------------------------------------------------
    def kind_dir(self, kind: str) -> Path:
        if kind not in SCHEMAS:
            raise InputError(f"unknown table {kind!r}", field="kind")
        return self.root / kind

    def embedding_dir(self, kind: str, embedder: str) -> Path:
        if kind not in EMBEDDING_KINDS:
            raise InputError(f"embedding kind must be one of {EMBEDDING_KINDS}", field="kind")
        return self.root / "embeddings" / f"kind={kind}" / f"embedder={_safe(embedder)}"

    def files(self, kind: str) -> list[str]:
        d = self.kind_dir(kind)
        return sorted(str(p) for p in d.rglob("*.parquet")) if d.exists() else []

    def embedding_files(self, kind: str, embedder: str) -> list[str]:
        d = self.embedding_dir(kind, embedder)
        return sorted(str(p) for p in d.glob("*.parquet")) if d.exists() else []

    @contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _part_name() -> str:
        now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"part-{now}-{uuid.uuid4().hex[:8]}.parquet"

    # ---- writes ------------------------------------------------------------------------------
    def append(self, kind: str, table: pa.Table) -> AppendResult:
        """Append validated rows of ``kind``; rows whose key is stored already are skipped."""
        if kind not in PARTITIONED:
            raise InputError(f"cannot append to {kind!r}", field="kind")
        schema = SCHEMAS[kind]
        table = table.select(schema.names).cast(schema)
        if table.num_rows == 0:
            return AppendResult()
        key = KEYS[kind]
        with self.lock():
            mask, _n_stored = duckdb_sql.keep_mask(table.column(key), self.files(kind), key)
            new = table.filter(pa.array(mask))
            result = AppendResult(accepted=new.num_rows, duplicates=table.num_rows - new.num_rows)
            if new.num_rows:
                days = pc.cast(new.column("timestamp"), pa.date32())
                for day in pc.unique(days).to_pylist():
                    part = new.filter(pc.equal(days, pa.scalar(day, pa.date32())))
                    path = self.kind_dir(kind) / f"date={day.isoformat()}" / self._part_name()
                    write_parquet_atomic(part, path)
                    result.files.append(str(path))
        return result

    def append_rejected(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(SCHEMAS["rejected"].names).cast(SCHEMAS["rejected"])
        with self.lock():
            write_parquet_atomic(table, self.kind_dir("rejected") / self._part_name())

    def embedders(self) -> dict[str, int]:
        path = self.root / "embedders.json"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        return {str(k): int(v) for k, v in data.items()}

    def register_embedder(self, embedder: str, dim: int) -> None:
        """Record ``embedder``'s dimension; a different one for the same name is an error."""
        known = self.embedders()
        if embedder in known:
            if known[embedder] != dim:
                raise DimensionError(
                    f"embedder {embedder!r} has {known[embedder]} dimensions in this store; "
                    f"got {dim}",
                    field="embedding",
                )
            return
        known[embedder] = dim
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "embedders.json.tmp"
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "embedders.json")

    def append_embeddings(
        self, kind: str, embedder: str, request_ids: pa.Array | list[str], vectors: np.ndarray
    ) -> int:
        """Store vectors keyed by (request_id, kind, embedder); returns how many were new."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise DimensionError("vectors must be a 2-D array", field="vectors")
        n, dim = vectors.shape
        ids = (
            pa.array(request_ids, pa.string())
            if not isinstance(request_ids, pa.Array)
            else request_ids
        )
        if len(ids) != n:
            raise InputError("one request_id per vector is required", field="request_ids")
        if n == 0:
            return 0
        if not np.isfinite(vectors).all():
            raise InputError("vectors contain NaN or infinite values", field="vectors")
        flat = pa.array(vectors.reshape(-1), pa.float32())
        table = pa.table(
            {
                "request_id": ids.cast(pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
                "embedded_at": pa.repeat(
                    pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), n
                ),
            },
            schema=embedding_schema(dim),
        )
        target = self.embedding_dir(kind, embedder)  # checks the kind before anything is kept
        with self.lock():
            self.register_embedder(embedder, dim)
            files = self.embedding_files(kind, embedder)
            mask, _ = duckdb_sql.keep_mask(table.column("request_id"), files, "request_id")
            new = table.filter(pa.array(mask))
            if new.num_rows:
                write_parquet_atomic(new, target / self._part_name())
        return new.num_rows

    # ---- reads -------------------------------------------------------------------------------
    def connect(self) -> Any:
        """An Ibis DuckDB connection with a view per table (empty tables when nothing is stored)."""
        con = duckdb_sql.ibis_connect(self.threads)
        for kind in SCHEMAS:
            files = self.files(kind)
            if files:
                con.raw_sql(
                    f'CREATE OR REPLACE VIEW "{kind}" AS SELECT '
                    + ", ".join(f'"{n}"' for n in SCHEMAS[kind].names)
                    + f" FROM {duckdb_sql.read_parquet_sql(files)}"
                )
            else:
                con.con.register(kind, SCHEMAS[kind].empty_table())
        return con

    def embeddings_table(self, con: Any, kind: str, embedder: str) -> Any:
        """An Ibis table (request_id, vector) for one embedding kind and embedder, maybe empty."""
        files = self.embedding_files(kind, embedder)
        name = f"emb_{kind}_{_safe(embedder).replace('-', '_').replace('.', '_')}"
        if files:
            con.raw_sql(
                f'CREATE OR REPLACE VIEW "{name}" AS SELECT request_id, vector '
                f"FROM {duckdb_sql.read_parquet_sql(files)}"
            )
        else:
            dim = self.embedders().get(embedder, 1)
            con.con.register(
                name, embedding_schema(dim).empty_table().select(["request_id", "vector"])
            )
        return con.table(name)

    def count(self, kind: str) -> int:
        files = self.files(kind)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.count(k) for k in SCHEMAS}
        out["embeddings"] = {
            f"{kind}/{name}": sum(
                pq.ParquetFile(f).metadata.num_rows for f in self.embedding_files(kind, name)
            )
            for name in self.embedders()
            for kind in EMBEDDING_KINDS
        }
        return out


def vectors_of(table: pa.Table, column: str = "vector") -> np.ndarray:
    """A (n, dim) float32 array from an Arrow list or fixed-size-list column."""
    col = table.column(column).combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(n, -1)
