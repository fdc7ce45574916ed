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

Compaction (:meth:`LogStore.compact`) merges the part files of one directory (a day partition, an
embedder's vectors, the rejected records) into one ``compact-*.parquet``. It is crash safe and
never shows a reader a row twice or not at all:

1. the merged file is written under a hidden temporary name and fsync'd;
2. a manifest ``.compaction-*.json`` naming the inputs and the output is written atomically;
3. the merged file is renamed into place. From this moment readers skip the inputs: a directory's
   live files are its Parquet files minus the inputs of every manifest whose output is present
   (manifests are read before and after the directory is listed, so a compaction running at the
   same time cannot make a reader see both or neither);
4. after a grace period (readers that listed the inputs earlier may still be reading them) the
   inputs are deleted, then the manifest.

A crash before step 3 leaves a manifest whose output does not exist (removed, with any temporary
file, by the next compaction) and the inputs still live; a crash after it leaves inputs that are
already skipped and are deleted later.
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
MANIFEST_PREFIX = ".compaction-"
COMPACT_PREFIX = "compact-"
# Superseded inputs stay this long after a compaction, for readers that listed them before it.
DEFAULT_GRACE_S = 600.0
ROW_GROUP_ROWS = 128 * 1024


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
        row_group_size=ROW_GROUP_ROWS,
    )
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_json_atomic(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _manifests(d: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in d.glob(f"{MANIFEST_PREFIX}*.json"):
        try:
            out[p.name] = json.loads(p.read_text())
        except FileNotFoundError:
            continue  # retired while this reader looked
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the compaction manifest {p}: {exc}") from exc
    return out


def live_files(d: Path) -> list[Path]:
    """The Parquet files of one directory that hold its rows (superseded inputs left out)."""
    before = _manifests(d)
    try:
        names = {e.name for e in os.scandir(d) if e.name.endswith(".parquet") and e.is_file()}
    except FileNotFoundError:
        return []
    manifests = {**before, **_manifests(d)}
    skip: set[str] = set()
    for m in manifests.values():
        if m.get("output") in names:
            skip.update(m.get("inputs", []))
    return [d / n for n in sorted(names - skip)]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns; columns added since it was written are null."""
    cols = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


@dataclass
class CompactResult:
    directories: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    retired: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "directories": self.directories,
            "files_in": self.files_in,
            "files_out": self.files_out,
            "rows": self.rows,
            "retired": self.retired,
        }


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
        if not d.exists():
            return []
        return sorted(str(p) for sub in self._dirs(d) for p in live_files(sub))

    def embedding_files(self, kind: str, embedder: str) -> list[str]:
        d = self.embedding_dir(kind, embedder)
        return [str(p) for p in live_files(d)] if d.exists() else []

    @staticmethod
    def _dirs(top: Path) -> list[Path]:
        return [Path(dirpath) for dirpath, _dirs, _files in os.walk(top)]

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

    # ---- compaction --------------------------------------------------------------------------
    def compact(
        self,
        kinds: list[str] | None = None,
        *,
        min_files: int = 2,
        small_bytes: int | None = None,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> CompactResult:
        """Merge the live part files of each directory of ``kinds`` (default: every table and the
        embeddings) into one file per directory; see the module's docstring for the protocol.

        Only files smaller than ``small_bytes`` (when given) are merged, and only where there are
        at least ``min_files`` of them. Inputs superseded more than ``grace_s`` seconds ago are
        deleted.
        """
        if min_files < 2:
            raise InputError("min_files must be at least 2", field="min_files")
        for kind in kinds or []:
            if kind not in SCHEMAS and kind != "embeddings":
                raise InputError(f"unknown table {kind!r}", field="kind")
        result = CompactResult()
        tops = [self.root / k for k in (kinds or [*SCHEMAS, "embeddings"])]
        with self.lock():
            for top in tops:
                if not top.exists():
                    continue
                for d in self._dirs(top):
                    result.retired += self._clean(d, grace_s)
                    live = live_files(d)
                    if small_bytes is not None:
                        live = [p for p in live if p.stat().st_size < small_bytes]
                    if len(live) < min_files:
                        continue
                    schema = SCHEMAS.get(top.name) or pq.read_schema(live[0])
                    result.rows += self._merge(d, live, schema)
                    result.directories += 1
                    result.files_in += len(live)
                    result.files_out += 1
                    if grace_s <= 0:
                        result.retired += self._clean(d, grace_s)
        return result

    @staticmethod
    def _merge(d: Path, inputs: list[Path], schema: pa.Schema) -> int:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{COMPACT_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = d / f".{name}.tmp"
        vector_cols = {f.name for f in schema if pa.types.is_fixed_size_list(f.type)}
        rows = 0
        pending: list[pa.Table] = []
        with pq.ParquetWriter(
            tmp,
            schema,
            compression="zstd",
            compression_level=1,
            use_dictionary=[f.name for f in schema if f.name not in vector_cols],
        ) as writer:
            for path in inputs:
                pending.append(_conform(pq.read_table(path), schema))
                if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                    table = pa.concat_tables(pending)
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                    rows += table.num_rows
                    pending = []
            if pending:
                table = pa.concat_tables(pending)
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                rows += table.num_rows
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        manifest = d / f"{MANIFEST_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}.json"
        _write_json_atomic(
            {
                "output": name,
                "inputs": [p.name for p in inputs],
                "created_at": datetime.now(UTC).isoformat(),
            },
            manifest,
        )
        os.replace(tmp, d / name)
        _fsync_dir(d)
        return rows

    @staticmethod
    def _clean(d: Path, grace_s: float) -> int:
        """Under the lock: drop what crashed compactions left, delete expired superseded inputs."""
        for tmp in [*d.glob(f".{COMPACT_PREFIX}*.tmp"), *d.glob(f"{MANIFEST_PREFIX}*.tmp")]:
            tmp.unlink(missing_ok=True)
        manifests = _manifests(d)
        now = datetime.now(UTC)
        retired = 0
        changed = True
        while changed:
            changed = False
            outputs = {m["output"] for m in manifests.values()}
            for name, m in sorted(manifests.items()):
                if not (d / m["output"]).exists():
                    # Crashed before its output was renamed into place: the inputs are live.
                    (d / name).unlink(missing_ok=True)
                elif (now - datetime.fromisoformat(m["created_at"])).total_seconds() < grace_s:
                    continue
                elif any(i in outputs for i in m["inputs"]):
                    # An input is another compaction's output whose own inputs still exist:
                    # deleting it would make those live again. That one goes first.
                    continue
                else:
                    for i in m["inputs"]:
                        (d / i).unlink(missing_ok=True)
                    _fsync_dir(d)
                    (d / name).unlink(missing_ok=True)
                    retired += len(m["inputs"])
                _fsync_dir(d)
                del manifests[name]
                changed = True
                break
        return retired

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
