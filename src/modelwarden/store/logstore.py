"""The log store: append-only, partitioned Parquet under a log root, read through Ibis.

Layout under the log root (``DATA/log`` by default; several servers may share one)::

    requests/date=YYYY-MM-DD/part-*.parquet      one file per batch and UTC day
    feedback/date=YYYY-MM-DD/part-*.parquet
    escalations/date=YYYY-MM-DD/part-*.parquet
    embeddings/kind=prompt/embedder=NAME/date=YYYY-MM-DD/part-*.parquet
                                                 (request_id, vector, embedded_at), by the UTC
                                                 day of the request the vector belongs to
    rejected/part-*.parquet                      every rejected record with its reason
    embedders.json                               the dimension of each embedder
    _index/<directory>.sqlite, .lock             each directory's key index and lock

Part file names carry the writing instance's name (``part-<time>-<instance>-<random>.parquet``),
so writers sharing a log root never collide. Every file is written to a temporary name, fsync'd,
renamed into place and its directory fsync'd, so a crash leaves either the whole batch or none of
it.

**Idempotency.** Appends are idempotent by key (``request_id`` for requests, ``event_id`` for
events, ``request_id`` for vectors) within the directory the row belongs to: a request's key is
unique in the UTC day of its timestamp. Each directory has a key index
(:mod:`modelwarden.store.keyindex`) and a lock; an append locks and consults only the directories
it writes to, so its cost does not grow with the store, and writers in different processes (or
servers sharing the log root on one file system) accept each key once.

**Embeddings by day.** A vector is stored under the UTC day of its request, so a drift window
reads only its days' vectors (:meth:`LogStore.embeddings_table` with ``first``/``last``) however
long the store's history is. Stores written before kept every vector of an embedder in one flat
directory (``embedder=NAME/part-*.parquet``, no ``date=``); those files are still read (with
every window, since their days are unknown) and never counted twice: an append skips the keys
the flat files hold, and compaction moves the flat files' vectors into their requests' days in
the same one-step directory swap as any merge (:meth:`LogStore.compact`). The log lake has no
version number of its own (the Alembic revisions are the state database's), so old stores are
read as they are and converted by the next ``modelwarden compact`` rather than by a migration
step that would have to rewrite every vector before the first read.

**Compaction and readers.** Compaction merges some part files of a directory into one. Any reader
that lists the Parquet files under the log root (``read_parquet('log/**/*.parquet')`` in DuckDB,
a pyarrow dataset, Spark) sees every row exactly once at every moment, because a directory's
files change only by

* an append adding a new file (its rows are new), or
* a compaction replacing the whole directory in one step: the merged file and hard links of the
  directory's other files are put in a staging directory outside the log root, which is then
  swapped with the directory by one ``renameat2(RENAME_EXCHANGE)``. A path lookup resolves the
  directory's name to the old or the new directory, never a mix, and each holds every row of
  the directory once. The old directory, now outside the log root, is deleted after a grace
  period.

A plain reader that listed a directory before a swap and opens one of its files after it gets an
error (file not found), never a wrong count. This store's own readers (:meth:`LogStore.connect`)
do not: they hold each directory open and read its files through that handle, which keeps
pointing at the generation they listed until the grace period ends.

A crash before the swap leaves a staging directory that is deleted later and the directory as it
was; after it, an old generation outside the log root. File systems without the exchange (NFS,
some FUSE) fall back to two renames, with a window of microseconds in which a listing misses
the directory; a warning says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import math
import os
import re
import resource
import shutil
import socket
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelwarden.errors import DimensionError, InputError, StoreError
from modelwarden.store import engines
from modelwarden.store.keyindex import KeyIndex
from modelwarden.store.schema import (
    EMBEDDING_KINDS,
    KEYS,
    PARTITIONED,
    SCHEMAS,
    embedding_schema,
)

log = logging.getLogger("modelwarden.store")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_INSTANCE = re.compile(r"[^A-Za-z0-9]+")
ENV_INSTANCE = "MODELWARDEN_INSTANCE"
INDEX_DIR = "_index"
MANIFEST_PREFIX = ".compaction-"  # left by stores written before the directory swap
COMPACT_PREFIX = "compact-"
# Old generations of a compacted directory stay this long, for readers that listed them before.
DEFAULT_GRACE_S = 600.0
STAGE_PREFIX = "stage-"
OLD_PREFIX = "old-"
# A staging directory this old was left by a crash (a merge is one bounded slice).
STALE_STAGE_S = 24 * 3600.0
ROW_GROUP_ROWS = 128 * 1024


def _safe(name: str) -> str:
    return _SAFE_NAME.sub("_", name)


def default_instance() -> str:
    """This writer's name in part file names: ``MODELWARDEN_INSTANCE`` or the host name."""
    raw = os.environ.get(ENV_INSTANCE) or socket.gethostname() or "local"
    return _SAFE_INSTANCE.sub("", raw)[:32] or "local"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    vector_cols = {f.name for f in schema if pa.types.is_fixed_size_list(f.type)}
    return {
        "compression": "zstd",
        "compression_level": 1,
        "use_dictionary": [f.name for f in schema if f.name not in vector_cols],
    }


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that readers see all of it or nothing, and it survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **_parquet_options(table.schema))
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _manifests(d: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in d.glob(f"{MANIFEST_PREFIX}*.json"):
        try:
            out[p.name] = json.loads(p.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the compaction manifest {p}: {exc}") from exc
    return out


def live_files(d: Path) -> list[Path]:
    """The Parquet files of one directory that hold its rows.

    Inputs superseded under the older manifest protocol (still present until the directory is
    next compacted) are left out.
    """
    try:
        names = {e.name for e in os.scandir(d) if e.name.endswith(".parquet") and e.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return []
    skip: set[str] = set()
    for m in _manifests(d).values():
        if m.get("output") in names:
            skip.update(m.get("inputs", []))
    return [d / n for n in sorted(names - skip)]


DAY_PREFIX = "date="


def utc_days(days: Any, n: int) -> pa.Array:
    """``days`` (dates, or timestamps of requests) as ``n`` UTC days (a date32 array)."""
    if isinstance(days, pa.ChunkedArray):
        days = days.combine_chunks()
    try:
        arr = days if isinstance(days, pa.Array) else pa.array(days)
        if pa.types.is_timestamp(arr.type):
            if arr.type.tz is None:
                raise InputError("the days' timestamps need a time zone (UTC)", field="days")
            # Arrow takes the date in the timestamp's own zone: the UTC day is wanted.
            arr = pc.cast(arr, pa.timestamp(arr.type.unit, tz="UTC"))
        arr = pc.cast(arr, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as exc:
        raise InputError(
            f"days must be dates or UTC timestamps, one per vector: {exc}", field="days"
        ) from None
    if len(arr) != n:
        raise InputError(f"one day per vector is required: {len(arr)} for {n}", field="days")
    if arr.null_count:
        raise InputError("days must not be missing", field="days")
    return arr


def embedding_dirs(top: Path, first: date | None = None, last: date | None = None) -> list[Path]:
    """The directories of one kind and embedder that a read of days ``first`` to ``last``
    (either open) lists: ``top`` itself (the flat files of a store written before days, whose
    days are unknown) and its days in range."""
    lo = f"{DAY_PREFIX}{first.isoformat()}" if first else None
    hi = f"{DAY_PREFIX}{last.isoformat()}" if last else None
    try:
        names = sorted(
            e.name for e in os.scandir(top) if e.name.startswith(DAY_PREFIX) and e.is_dir()
        )
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [top] + [
        top / name for name in names if (lo is None or name >= lo) and (hi is None or name <= hi)
    ]


# ---- the atomic directory swap ---------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LIBC: Any = None
_warned_no_exchange = False


def _renameat2() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return getattr(_LIBC, "renameat2", None) if _LIBC else None


def exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step; False where the file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), f"{a} <-> {b}")


def _replace_dir(stage: Path, d: Path, old: Path) -> Path:
    """Put ``stage`` where ``d`` is; returns where the old ``d`` went."""
    global _warned_no_exchange
    if exchange(stage, d):
        return stage
    if not _warned_no_exchange:
        _warned_no_exchange = True
        log.warning(
            "this file system cannot swap directories atomically; compaction uses two renames, "
            "so a reader listing %s at that instant may miss it",
            d.parent,
        )
    os.rename(d, old)
    os.rename(stage, d)
    return old


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns; columns added since it was written are null."""
    cols = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def _merge_into(path: Path, inputs: Sequence[Path], schema: pa.Schema) -> int:
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    pending: list[pa.Table] = []
    with pq.ParquetWriter(tmp, schema, **_parquet_options(schema)) as writer:
        for p in inputs:
            pending.append(_conform(pq.read_table(p), schema))
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
    os.replace(tmp, path)
    return rows


def _first_occurrences(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True for the first row of each key."""
    n = len(keys)
    idx = pa.table({"k": keys, "i": pa.array(np.arange(n, dtype=np.int64))})
    first = idx.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min")
    mask = np.zeros(n, dtype=bool)
    mask[first.to_numpy()] = True
    return mask


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 16), hard))


_PROC_FD = Path("/proc/self/fd")


@dataclass(frozen=True)
class CompactionPolicy:
    """Size-tiered merging: a directory keeps fewer than ``fanout`` files in each size tier.

    Tier 0 holds files under ``base_bytes``, tier *t* files up to ``base_bytes * fanout**t``;
    files of ``max_bytes`` or more are never merged again. With the defaults a directory holds at
    most 7 files per tier in 5 tiers (35) plus its files over 512 MiB, and each row is rewritten
    about once per tier, so replaying or ingesting N records costs O(N log N) writes at worst.
    """

    fanout: int = 8
    base_bytes: int = 256 * 1024
    max_bytes: int = 512 * 1024 * 1024
    max_inputs: int = 64

    def tier(self, size: int) -> int:
        if size < self.base_bytes:
            return 0
        return 1 + int(math.log(size / self.base_bytes, self.fanout))

    def pick(self, files: Sequence[Path]) -> list[Path]:
        """The files to merge next in one directory (empty when none need merging)."""
        tiers: dict[int, list[Path]] = {}
        for p in files:
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            if size < self.max_bytes:
                tiers.setdefault(self.tier(size), []).append(p)
        for t in sorted(tiers):
            if len(tiers[t]) >= self.fanout:
                return sorted(tiers[t])[: self.max_inputs]
        return []


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

    def add(self, other: CompactResult) -> None:
        self.directories += other.directories
        self.files_in += other.files_in
        self.files_out += other.files_out
        self.rows += other.rows
        self.retired += other.retired


@dataclass
class AppendResult:
    accepted: int = 0
    duplicates: int = 0
    files: list[str] = field(default_factory=list)
    # Time spent on the idempotency check (index reconciliation and look-up), in seconds.
    check_seconds: float = 0.0


class LogStore:
    """Handle on a log root. Cheap to create; safe to use from several processes and servers."""

    def __init__(
        self,
        root: Path,
        threads: int = 0,
        instance: str | None = None,
        engine: str = "duckdb",
        spark_master: str = engines.DEFAULT_SPARK_MASTER,
    ) -> None:
        self.root = Path(root)
        self.threads = threads
        self.instance = _SAFE_INSTANCE.sub("", instance or "")[:32] or default_instance()
        # Directories appended to by this handle and not yet looked at by maintain().
        self.dirty: set[Path] = set()
        # The engine of connect(): see modelwarden.store.engines.
        self.engine = engines.check_engine(engine)
        self.spark_master = spark_master

    # ---- paths -------------------------------------------------------------------------------
    def kind_dir(self, kind: str) -> Path:
        if kind not in SCHEMAS:
            raise InputError(f"unknown table {kind!r}", field="kind")
        return self.root / kind

    def embedding_dir(self, kind: str, embedder: str, day: date | None = None) -> Path:
        """The directory of one kind and embedder; with ``day``, that UTC day's directory in it
        (the directory itself holds only the flat files of stores written before days)."""
        if kind not in EMBEDDING_KINDS:
            raise InputError(f"embedding kind must be one of {EMBEDDING_KINDS}", field="kind")
        d = self.root / "embeddings" / f"kind={kind}" / f"embedder={_safe(embedder)}"
        return d / f"date={day.isoformat()}" if day is not None else d

    def files(self, kind: str) -> list[str]:
        d = self.kind_dir(kind)
        if not d.exists():
            return []
        return sorted(str(p) for sub in self._dirs(d) for p in live_files(sub))

    def embedding_files(
        self, kind: str, embedder: str, first: date | None = None, last: date | None = None
    ) -> list[str]:
        """The live files of one kind and embedder: the flat files of an older store and those
        of the days ``first`` to ``last`` (either open)."""
        top = self.embedding_dir(kind, embedder)
        return [str(p) for d in embedding_dirs(top, first, last) for p in live_files(d)]

    @staticmethod
    def _dirs(top: Path) -> list[Path]:
        return sorted(Path(dirpath) for dirpath, _dirs, _files in os.walk(top))

    def _meta(self, d: Path, suffix: str) -> Path:
        rel = d.relative_to(self.root)
        return self.root / INDEX_DIR / rel.parent / f"{rel.name}{suffix}"

    def index(self, d: Path, key_column: str) -> KeyIndex:
        return KeyIndex(self._meta(d, ".sqlite"), key_column)

    @property
    def swap_root(self) -> Path:
        """Staging and old generations of compacted directories: beside the log root, outside it,
        on the same file system."""
        return self.root.parent / f".{self.root.name}-swap"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The store-wide lock (the embedder registry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def dir_lock(self, d: Path) -> Iterator[None]:
        """The lock of one directory of part files: appends to it and its compaction."""
        path = self._meta(d, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _part_name(self, prefix: str = "part-") -> str:
        now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"{prefix}{now}-{self.instance}-{uuid.uuid4().hex[:8]}.parquet"

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
        n_in = table.num_rows
        # The first occurrence of a key in the batch wins, whichever day it falls on.
        table = table.filter(pa.array(_first_occurrences(table.column(key))))
        result = AppendResult()
        days = pc.cast(table.column("timestamp"), pa.date32())
        for day in sorted(pc.unique(days).to_pylist()):
            part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            d = self.kind_dir(kind) / f"date={day.isoformat()}"
            written = self._append_dir(d, part, key, result)
            if written:
                result.files.append(written)
        result.duplicates = n_in - result.accepted
        return result

    def _append_dir(self, d: Path, part: pa.Table, key: str, result: AppendResult) -> str | None:
        """Under ``d``'s lock: store the rows of ``part`` whose key ``d`` does not hold yet."""
        t0 = time.perf_counter()
        with self.dir_lock(d), self.index(d, key) as idx:
            idx.sync(d, [p.name for p in live_files(d)])
            keys = part.column(key)
            stored = idx.stored(keys.to_pylist())
            result.check_seconds += time.perf_counter() - t0
            if stored:
                part = part.filter(
                    pc.invert(pc.is_in(keys, value_set=pa.array(sorted(stored), pa.string())))
                )
            result.accepted += part.num_rows
            if not part.num_rows:
                return None
            path = d / self._part_name()
            write_parquet_atomic(part, path)
            idx.add(path.name, part.column(key).to_pylist())
        self.dirty.add(d)
        return str(path)

    def append_rejected(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(SCHEMAS["rejected"].names).cast(SCHEMAS["rejected"])
        d = self.kind_dir("rejected")
        with self.dir_lock(d):
            write_parquet_atomic(table, d / self._part_name())
        self.dirty.add(d)

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
        tmp = self.root / f"embedders.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "embedders.json")

    def append_embeddings(
        self,
        kind: str,
        embedder: str,
        request_ids: pa.Array | pa.ChunkedArray | list[str],
        vectors: np.ndarray,
        days: Any,
    ) -> int:
        """Store vectors keyed by (request_id, kind, embedder); returns how many were new.

        ``days`` gives each vector's request's UTC day (dates, or the requests' timestamps, one
        per vector): the vector is stored under ``date=DAY``, as its request is. A key already
        stored for that day, or in the flat files of a store written before days, is skipped.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise DimensionError("vectors must be a 2-D array", field="vectors")
        n, dim = vectors.shape
        ids = (
            request_ids
            if isinstance(request_ids, (pa.Array, pa.ChunkedArray))
            else pa.array(request_ids, pa.string())
        )
        if len(ids) != n:
            raise InputError("one request_id per vector is required", field="request_ids")
        day_col = utc_days(days, n)
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
        top = self.embedding_dir(kind, embedder)  # checks the kind before anything is kept
        with self.lock():
            self.register_embedder(embedder, dim)
        keep = pa.array(_first_occurrences(table.column("request_id")))
        table, day_col = table.filter(keep), day_col.filter(keep)
        result = AppendResult()
        # The embedder's lock, then each day's: compaction moving flat files into days holds
        # them all, so an append sees the flat files or their vectors in the days, never neither.
        with self.dir_lock(top):
            flat = live_files(top)
            if flat:
                with self.index(top, "request_id") as idx:
                    idx.sync(top, [p.name for p in flat])
                    held = idx.stored(table.column("request_id").to_pylist())
                if held:
                    keep = pc.invert(
                        pc.is_in(
                            table.column("request_id"),
                            value_set=pa.array(sorted(held), pa.string()),
                        )
                    )
                    table, day_col = table.filter(keep), day_col.filter(keep)
            for day in sorted(pc.unique(day_col).to_pylist()):
                part = table.filter(pc.equal(day_col, pa.scalar(day, pa.date32())))
                self._append_dir(top / f"date={day.isoformat()}", part, "request_id", result)
        return result.accepted

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
        at least ``min_files`` of them. Old generations older than ``grace_s`` seconds are
        deleted (all of them when it is 0).
        """
        if min_files < 2:
            raise InputError("min_files must be at least 2", field="min_files")
        for kind in kinds or []:
            if kind not in SCHEMAS and kind != "embeddings":
                raise InputError(f"unknown table {kind!r}", field="kind")
        result = CompactResult()
        tops = [self.root / k for k in (kinds or [*SCHEMAS, "embeddings"])]
        for top in tops:
            if not top.exists():
                continue
            if top.name == "embeddings":
                for d in self._dirs(top):
                    if self._is_embedder_dir(d):
                        result.add(self._flat_to_days(d, grace_s))
            for d in self._dirs(top):
                if self._is_embedder_dir(d):
                    continue  # what flat files it had went to their days just now
                with self.dir_lock(d):
                    self._legacy_clean(d)
                    live = live_files(d)
                    if small_bytes is not None:
                        live = [p for p in live if p.stat().st_size < small_bytes]
                    if len(live) >= min_files:
                        result.add(self._merge_swap(d, live, grace_s))
        result.retired += self.retire(grace_s)
        return result

    def maintain(
        self,
        policy: CompactionPolicy | None = None,
        *,
        budget_s: float = 5.0,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> CompactResult:
        """Merge, tier by tier, the directories this handle appended to, for at most about
        ``budget_s`` seconds (each merge is one bounded slice); what is left waits for the next
        call. Keeps every directory within the policy's bound on files."""
        policy = policy or CompactionPolicy()
        result = CompactResult()
        deadline = time.monotonic() + budget_s
        for d in sorted(self.dirty):
            while time.monotonic() < deadline:
                with self.dir_lock(d):
                    self._legacy_clean(d)
                    inputs = policy.pick(live_files(d))
                    if not inputs:
                        self.dirty.discard(d)
                        break
                    result.add(self._merge_swap(d, inputs, grace_s))
            if time.monotonic() >= deadline:
                break
        result.retired += self.retire(grace_s)
        return result

    def _schema_of(self, d: Path, sample: Path) -> pa.Schema:
        top = d.relative_to(self.root).parts[0]
        return SCHEMAS.get(top) or pq.read_schema(sample)

    def _merge_swap(self, d: Path, inputs: Sequence[Path], grace_s: float) -> CompactResult:
        """Under ``d``'s lock: replace ``inputs`` by one merged file, swapping ``d`` in one step."""
        schema = self._schema_of(d, inputs[0])
        stage = self._new_stage()
        name = self._part_name(COMPACT_PREFIX)
        rows = _merge_into(stage / name, inputs, schema)
        input_names = {p.name for p in inputs}
        for p in live_files(d):
            if p.name not in input_names:
                os.link(p, stage / p.name)
        _fsync_dir(stage)
        key = KEYS.get(d.relative_to(self.root).parts[0]) or (
            "request_id" if d.relative_to(self.root).parts[0] == "embeddings" else None
        )
        if key is not None:
            with self.index(d, key) as idx:
                idx.sync(d, [p.name for p in live_files(d)])
                # The merged file holds exactly the inputs' keys, which the index has.
                idx.rename_files(name, input_names)
        retired = self._swap_in(stage, d, grace_s)
        return CompactResult(
            directories=1, files_in=len(inputs), files_out=1, rows=rows, retired=retired
        )

    def _new_stage(self) -> Path:
        self.swap_root.mkdir(parents=True, exist_ok=True)
        stage = self.swap_root / f"{STAGE_PREFIX}{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        return stage

    def _swap_in(self, stage: Path, d: Path, grace_s: float) -> int:
        """Put the filled ``stage`` where ``d`` is in one step; the old generation waits outside
        the log root (deleted now when ``grace_s`` is 0: returns how many files went)."""
        old = self.swap_root / f"{OLD_PREFIX}{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        if _replace_dir(stage, d, old) == stage:
            # The old generation is now under the staging name: named for what it is, so that
            # retire() can tell it from another compactor's staging directory.
            os.rename(stage, old)
        _fsync_dir(d.parent)
        _fsync_dir(self.swap_root)
        return _remove_generation(old) if grace_s <= 0 else 0

    def _is_embedder_dir(self, d: Path) -> bool:
        rel = d.relative_to(self.root).parts
        return len(rel) == 3 and rel[0] == "embeddings"

    def _flat_to_days(self, d: Path, grace_s: float) -> CompactResult:
        """Move the flat files of embedder directory ``d`` (a store written before vectors were
        kept by day) into the days of their requests, in one swap of ``d``: a reader lists the
        flat files or their vectors in the days, never both and never neither. Vectors whose
        request is not stored (their day is unknown) stay behind in one flat file.

        Holds ``d``'s lock (appends of vectors take it too) and each of its days' locks.
        """
        with self.dir_lock(d):
            self._legacy_clean(d)
            flat = live_files(d)
            if not flat:
                return CompactResult()
            days = embedding_dirs(d)[1:]
            with contextlib.ExitStack() as stack:
                for sub in days:
                    stack.enter_context(self.dir_lock(sub))
                stage = self._new_stage()
                for sub in days:
                    (stage / sub.name).mkdir()
                    for p in live_files(sub):
                        os.link(p, stage / sub.name / p.name)
                written, rows = self._write_flat_by_day(d, flat, stage)
                for sub in {stage / dayname for dayname, _, _ in written} | {stage}:
                    _fsync_dir(sub)
                retired = self._swap_in(stage, d, grace_s)
                # The files are in place: record their keys (a lost write here only makes an
                # index miss keys, which its next sync reads back from the files).
                for dayname, name, keys in written:
                    if dayname:
                        with self.index(d / dayname, "request_id") as idx:
                            idx.add(name, keys)
                with self.index(d, "request_id") as idx:
                    idx.sync(d, [p.name for p in live_files(d)])
        return CompactResult(
            directories=1, files_in=len(flat), files_out=len(written), rows=rows, retired=retired
        )

    def _write_flat_by_day(
        self, d: Path, flat: list[Path], stage: Path
    ) -> tuple[list[tuple[str, str, list[Any]]], int]:
        """Write the rows of ``flat`` into ``stage``'s day directories (a key that the day holds
        already is left out) and the rows of no known request into ``stage`` itself; returns
        (day directory or "", file name, keys) per written file and the rows written. Reads the
        flat files a row group at a time and keeps about two row groups' rows buffered."""
        schema = pq.read_schema(flat[0])
        day_of = self._request_days(flat)
        buffers: dict[date | None, list[pa.Table]] = {}
        written: list[tuple[str, str, list[Any]]] = []
        rows = 0

        def flush(day: date | None) -> None:
            nonlocal rows
            part = pa.concat_tables(buffers.pop(day))
            dayname = f"{DAY_PREFIX}{day.isoformat()}" if day is not None else ""
            if day is not None:
                live = d / dayname
                with self.index(live, "request_id") as idx:
                    idx.sync(live, [p.name for p in live_files(live)])
                    held = idx.stored(part.column("request_id").to_pylist())
                if held:
                    part = part.filter(
                        pc.invert(
                            pc.is_in(
                                part.column("request_id"),
                                value_set=pa.array(sorted(held), pa.string()),
                            )
                        )
                    )
            if not part.num_rows:
                return
            name = self._part_name(COMPACT_PREFIX)
            write_parquet_atomic(part, (stage / dayname / name) if dayname else stage / name)
            written.append((dayname, name, part.column("request_id").to_pylist()))
            rows += part.num_rows

        pos = 0
        for p in flat:
            for batch in pq.ParquetFile(p).iter_batches(batch_size=ROW_GROUP_ROWS):
                t = _conform(pa.Table.from_batches([batch]), schema)
                days = day_of.slice(pos, t.num_rows)
                pos += t.num_rows
                for day in pc.unique(days).to_pylist():
                    mask = pc.is_null(days) if day is None else pc.equal(days, day)
                    buffers.setdefault(day, []).append(t.filter(mask))
                sizes = {k: sum(x.num_rows for x in v) for k, v in buffers.items()}
                while sum(sizes.values()) > 2 * ROW_GROUP_ROWS:
                    biggest = max((k for k in sizes if k is not None), key=sizes.__getitem__)
                    flush(biggest)
                    sizes.pop(biggest)
        for day in sorted(k for k in buffers if k is not None):
            flush(day)
        if None in buffers:
            flush(None)
        return written, rows

    def _request_days(self, flat: list[Path]) -> pa.ChunkedArray:
        """The UTC day of the request of each row of ``flat`` (in order; null when no request of
        that id is stored; the first day when several are): read from the ``request_id`` column
        of each day of requests."""
        per_day = []
        for f in self.files("requests"):
            day = date.fromisoformat(Path(f).parent.name.removeprefix(DAY_PREFIX))
            ids = pq.read_table(f, columns=["request_id"]).column(0)
            per_day.append(
                pa.table(
                    {"request_id": ids, "day": pa.repeat(pa.scalar(day, pa.date32()), len(ids))}
                )
            )
        ids = pa.chunked_array(
            [c for p in flat for c in pq.read_table(p, columns=["request_id"]).column(0).chunks],
            pa.string(),
        )
        rows = pa.table({"request_id": ids, "i": pa.array(np.arange(len(ids), dtype=np.int64))})
        if not per_day:
            return pa.chunked_array([pa.nulls(len(ids), pa.date32())])
        known = pa.concat_tables(per_day).group_by("request_id").aggregate([("day", "min")])
        joined = rows.join(known, "request_id", join_type="left outer").sort_by("i")
        return joined.column("day_min")

    def retire(self, grace_s: float = DEFAULT_GRACE_S) -> int:
        """Delete old generations older than ``grace_s`` seconds, and staging directories a crash
        left (after a day: never one that a compaction is still filling); returns how many
        superseded files went."""
        if not self.swap_root.exists():
            return 0
        now_ms = time.time() * 1000
        retired = 0
        for e in os.scandir(self.swap_root):
            prefix, _, rest = e.name.partition("-")
            try:
                age_s = (now_ms - int(rest.split("-", 1)[0])) / 1000
            except ValueError:
                continue
            if prefix + "-" == OLD_PREFIX and age_s >= grace_s:
                retired += _remove_generation(Path(e.path))
            elif prefix + "-" == STAGE_PREFIX and age_s >= STALE_STAGE_S:
                # Left by a crash; a live compactor's staging directory is never this old.
                shutil.rmtree(e.path, ignore_errors=True)
        return retired

    @staticmethod
    def _legacy_clean(d: Path) -> None:
        """Under ``d``'s lock: finish what the older manifest protocol left in ``d``."""
        manifests = _manifests(d)
        for tmp in [*d.glob(f".{COMPACT_PREFIX}*.tmp"), *d.glob(f"{MANIFEST_PREFIX}*.tmp")]:
            tmp.unlink(missing_ok=True)
        if not manifests:
            return
        names = {p.name for p in d.glob("*.parquet")}
        for name, m in manifests.items():
            if m.get("output") in names:
                for i in m.get("inputs", []):
                    (d / i).unlink(missing_ok=True)
                _fsync_dir(d)
            (d / name).unlink(missing_ok=True)
        _fsync_dir(d)

    # ---- reads -------------------------------------------------------------------------------
    def _held_files(self, dirs: Sequence[Path], fds: list[int]) -> list[str]:
        """The live files of ``dirs`` as paths through open directory handles (added to
        ``fds``): they keep naming the generation listed here while a compaction swaps it out."""
        if not _PROC_FD.is_dir():
            return [str(p) for d in dirs for p in live_files(d)]
        out: list[str] = []
        for d in dirs:
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            files = live_files(_PROC_FD / str(fd))
            if files:
                fds.append(fd)
                out.extend(str(p) for p in files)
            else:
                os.close(fd)
        return out

    def _query_files(self, con: Any, tops: list[Path], *, walk: bool) -> list[str]:
        """The live files under ``tops`` for a query on ``con``: held open for DuckDB (see
        :meth:`connect`), by path for Spark."""
        dirs = [d for top in tops if top.exists() for d in (self._dirs(top) if walk else [top])]
        return self._dir_files(con, dirs)

    def _dir_files(self, con: Any, dirs: list[Path]) -> list[str]:
        if self.engine == "spark":
            return sorted(str(p) for d in dirs for p in live_files(d))
        fds: list[int] | None = getattr(con, "_modelwarden_fds", None)
        if fds is None:
            _raise_open_files_limit()
            fds = []
            weakref.finalize(con, _close_fds, fds)
            con._modelwarden_fds = fds
        return self._held_files(dirs, fds)

    def connect(self, kinds: Sequence[str] | None = None) -> Any:
        """An Ibis connection of the store's analytics engine (:mod:`modelwarden.store.engines`)
        with a table per kind (empty tables when nothing is stored); only ``kinds`` when given
        (others can be added with :meth:`table` or :meth:`days_table`).

        On DuckDB each table reads the files listed when it was made, through directory handles
        the connection holds until it is garbage collected; a compaction meanwhile changes
        nothing it reads, for the grace period (:data:`DEFAULT_GRACE_S`). Spark reads the files by
        path (its executors cannot use this process's handles): like any plain reader it sees
        every row once, and a query that overlaps a compaction can fail with a missing file, to
        be run again.
        """
        con = engines.connect(self.engine, self.threads, self.spark_master)
        for kind in SCHEMAS if kinds is None else kinds:
            self.table(con, kind)
        return con

    def table(self, con: Any, kind: str) -> Any:
        """Table ``kind`` of ``con`` over every stored file of that kind."""
        if kind not in SCHEMAS:
            raise InputError(f"unknown table {kind!r}", field="kind")
        files = self._query_files(con, [self.kind_dir(kind)], walk=True)
        return engines.register_parquet(con, kind, files, SCHEMAS[kind], SCHEMAS[kind].names)

    def days_table(
        self, con: Any, kind: str, first: date | None, last: date | None, name: str
    ) -> Any:
        """Table ``name`` of ``con``: the rows of ``kind`` whose UTC day is ``first`` to ``last``
        (either open), read from those days' directories only, so that a query of a few days
        reads the same files however long the store's history is."""
        if kind not in PARTITIONED:
            raise InputError(f"{kind!r} is not partitioned by day", field="kind")
        lo = f"date={first.isoformat()}" if first else None
        hi = f"date={last.isoformat()}" if last else None
        top = self.kind_dir(kind)
        dirs = [
            d
            for d in (self._dirs(top) if top.exists() else [])
            if d.name.startswith("date=")
            and (lo is None or d.name >= lo)
            and (hi is None or d.name <= hi)
        ]
        files = self._dir_files(con, dirs)
        return engines.register_parquet(con, name, files, SCHEMAS[kind], SCHEMAS[kind].names)

    @staticmethod
    def close(con: Any) -> None:
        """Release what a connection of :meth:`connect` holds, now rather than when it is
        garbage collected: on DuckDB its in-memory database and its directory handles (its
        tables cannot be read afterwards). Spark's connections share the process's session,
        which stays."""
        if con.name != "duckdb":
            return
        con.disconnect()
        fds: list[int] | None = getattr(con, "_modelwarden_fds", None)
        if fds:
            _close_fds(fds)
            fds.clear()

    def embeddings_table(
        self,
        con: Any,
        kind: str,
        embedder: str,
        first: date | None = None,
        last: date | None = None,
        name: str | None = None,
    ) -> Any:
        """An Ibis table (request_id, vector) for one embedding kind and embedder, maybe empty:
        the vectors of the requests of UTC days ``first`` to ``last`` (either open; both None:
        every day), and those of the flat files of a store written before days (see the module's
        docstring). Table ``name`` of ``con`` when given, so one connection can hold several."""
        top = self.embedding_dir(kind, embedder)
        files = self._embedding_query_files(con, top, first, last)
        name = name or f"emb_{kind}_{_safe(embedder).replace('-', '_').replace('.', '_')}"
        schema = embedding_schema(self.embedders().get(embedder, 1))
        return engines.register_parquet(con, name, files, schema, ["request_id", "vector"])

    def _embedding_query_files(
        self, con: Any, top: Path, first: date | None, last: date | None
    ) -> list[str]:
        """The files :meth:`embeddings_table` reads. On DuckDB the day directories are opened
        through a handle on ``top``, so that the flat files and the days come from one
        generation of ``top`` even while a compaction moves flat files into days."""
        if self.engine == "spark" or not _PROC_FD.is_dir():
            return self._dir_files(con, embedding_dirs(top, first, last))
        try:
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            return self._dir_files(con, embedding_dirs(_PROC_FD / str(fd), first, last))
        finally:
            os.close(fd)

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


def _remove_generation(old: Path) -> int:
    """Delete an old generation; returns how many of its files had no other name (superseded)."""
    superseded = 0
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(old):
            with contextlib.suppress(FileNotFoundError):
                if e.name.endswith(".parquet") and e.stat().st_nlink == 1:
                    superseded += 1
    shutil.rmtree(old, ignore_errors=True)
    return superseded


def vectors_of(table: pa.Table, column: str = "vector") -> np.ndarray:
    """A (n, dim) float32 array from an Arrow list or fixed-size-list column."""
    col = table.column(column).combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(n, -1)
