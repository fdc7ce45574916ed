"""The spool: what the server acknowledged and the log store has not taken in yet.

Layout under ``DATA/spool``::

    seg-000000000001.jsonl      one JSON line per batch: kind, source, records
    seg-000000000002.jsonl      the active segment (the newest), still being appended to
    failed/                     segments the log store refused again and again, kept for a person
    .lock                       held by the one process that owns the spool

An HTTP batch is answered only after its line is written, flushed and fsync'd. One writer thread
does every write, so concurrent batches share one fsync (group commit) instead of queueing for
their own. A flusher seals the active segment, moves the sealed ones into the log store and only
then deletes them; whatever a crash leaves behind is replayed on the next start. Ingest is
idempotent by key, so a segment that was stored but not yet deleted adds nothing when replayed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from modelwarden.errors import StorageFull, StoreError

log = logging.getLogger("modelwarden.spool")

SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".jsonl"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# Enough lines per group commit to amortise the fsync, few enough to keep a slow disk's
# latency bounded for the first batch in the group.
MAX_GROUP = 2048
MAX_ATTEMPTS = 5
# Errors that mean the disk (or the user's quota on it) has no room left.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class SpoolBatch:
    """One acknowledged batch: records of one kind from one source, as ``(location, raw)``."""

    kind: str
    source: str
    items: list[tuple[str, Any]]
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_line(self) -> bytes:
        data = {
            "batch_id": self.batch_id,
            "kind": self.kind,
            "source": self.source,
            "received_at": self.received_at,
            "items": self.items,
        }
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
        # A lone surrogate cannot be written as UTF-8; callers reject such text before it gets
        # here, and this keeps a batch that slipped through writable rather than lost.
        return text.encode("utf-8", "replace")

    @classmethod
    def from_line(cls, line: bytes) -> SpoolBatch:
        data = json.loads(line)
        return cls(
            kind=data["kind"],
            source=data["source"],
            items=[(str(loc), raw) for loc, raw in data["items"]],
            batch_id=data["batch_id"],
            received_at=data["received_at"],
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _seq(path: Path) -> int:
    return int(path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)])


def read_segment(path: Path) -> Iterator[SpoolBatch]:
    """The batches of a segment in order.

    A line that does not parse can only be the last one, cut short by a crash before its fsync
    finished; such a batch was never acknowledged, so it is skipped.
    """
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield SpoolBatch.from_line(line)
        except (ValueError, KeyError, TypeError):
            log.warning(
                "%s: line %d is incomplete (a write cut short by a crash); skipped", path, n
            )


class _Seal:
    def __init__(self) -> None:
        self.done: Future[list[Path]] = Future()


_STOP = object()


class Spool:
    """Append-only, fsync'd batches in segment files; one process owns a spool directory."""

    def __init__(
        self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = True
    ) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._sealed: list[Path] = []
        self._counts: dict[Path, int] = {}
        self._queued = 0
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._next_seq = 1
        self._lock_fh: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self.on_commit: Callable[[int], None] | None = None
        # Told of every write that failed: the error and how many records it refused.
        self.on_write_failure: Callable[[StoreError, int], None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> list[Path]:
        """Take the spool, start the writer; returns the segments a previous process left."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.dir / ".lock", "a+")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.close()
            raise StoreError(
                f"another modelwarden server owns {self.dir}; one server per data directory"
            ) from exc
        self._lock_fh = fh
        leftovers = sorted(self.dir.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"), key=_seq)
        for path in leftovers:
            self._counts[path] = sum(len(b.items) for b in read_segment(path))
        self._sealed = list(leftovers)
        self._next_seq = (_seq(leftovers[-1]) + 1) if leftovers else 1
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()
        return list(leftovers)

    def close(self) -> None:
        """Stop the writer after everything queued is written; sealed segments stay for replay."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # ---- writing -----------------------------------------------------------------------------
    def append(self, batch: SpoolBatch) -> Future[None]:
        """Queue ``batch``; the future completes once it is on disk (fsync'd)."""
        return self.append_line(batch.to_line(), len(batch.items))

    def append_line(self, line: bytes, records: int) -> Future[None]:
        """Queue a batch already encoded by :meth:`SpoolBatch.to_line` that holds ``records``."""
        if self._thread is None:
            raise StoreError("the spool is not started")
        done: Future[None] = Future()
        # Counted from now, so that "nothing pending" never hides a batch still in the queue.
        with self._lock:
            self._queued += records
        self._queue.put((line, records, done))
        return done

    def seal(self, timeout: float | None = 30) -> list[Path]:
        """Close the active segment; returns every sealed segment not yet removed, oldest first."""
        if self._thread is None:
            with self._lock:
                return list(self._sealed)
        request = _Seal()
        self._queue.put(request)
        return request.done.result(timeout)

    def remove(self, path: Path) -> None:
        """Forget a sealed segment once the log store holds its records."""
        path.unlink(missing_ok=True)
        if self.fsync:
            _fsync_dir(self.dir)
        with self._lock:
            if path in self._sealed:
                self._sealed.remove(path)
            self._counts.pop(path, None)

    def forget(self, path: Path) -> None:
        """Stop counting a sealed segment that another process stored and removed (or moved)."""
        with self._lock:
            if path in self._sealed:
                self._sealed.remove(path)
            self._counts.pop(path, None)

    def quarantine(self, path: Path) -> Path:
        """Move a segment the store keeps refusing aside, so later segments are not held up."""
        target = self.dir / "failed" / path.name
        target.parent.mkdir(exist_ok=True)
        os.replace(path, target)
        with self._lock:
            if path in self._sealed:
                self._sealed.remove(path)
            self._counts.pop(path, None)
        return target

    # ---- figures -----------------------------------------------------------------------------
    def pending_records(self) -> int:
        """Records acknowledged or queued that the log store does not hold yet."""
        with self._lock:
            return self._queued + sum(self._counts.values())

    def pending_segments(self) -> int:
        with self._lock:
            return len(self._sealed) + (1 if self._active is not None else 0)

    def pending_bytes(self) -> int:
        with self._lock:
            paths = [*self._sealed, *([self._active_path] if self._active_path else [])]
        total = 0
        for p in paths:
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total

    # ---- the writer thread -------------------------------------------------------------------
    def _open_segment(self) -> None:
        path = self.dir / f"{SEGMENT_PREFIX}{self._next_seq:012d}{SEGMENT_SUFFIX}"
        self._next_seq += 1
        self._active = open(path, "ab")  # noqa: SIM115 - closed when sealed
        with self._lock:
            self._active_path = path
            self._counts[path] = 0
        if self.fsync:
            # The new name must survive a crash along with the lines written into it.
            _fsync_dir(self.dir)

    def _seal_active(self) -> None:
        if self._active is None:
            return
        self._active.close()
        with self._lock:
            assert self._active_path is not None
            self._sealed.append(self._active_path)
            self._active_path = None
        self._active = None

    def _commit(self, lines: list[bytes], counts: list[int], waiters: list[Future[None]]) -> None:
        if not lines:
            return
        start: int | None = None
        try:
            if self._active is None:
                self._open_segment()
            assert self._active is not None and self._active_path is not None
            start = self._active.tell()
            self._active.write(b"".join(lines))
            self._active.flush()
            if self.fsync:
                os.fsync(self._active.fileno())
            with self._lock:
                self._counts[self._active_path] += sum(counts)
                self._queued -= sum(counts)
            if self._active.tell() >= self.segment_bytes:
                self._seal_active()
        except OSError as exc:
            err = self._write_error(exc)
            with self._lock:
                self._queued -= sum(counts)
            for w in waiters:
                w.set_exception(err)
            if self.on_write_failure is not None:
                self.on_write_failure(err, sum(counts))
            # A half-written segment must not take more lines: cut it back to what was
            # acknowledged before (so an unanswered batch is never stored later, and a full disk
            # gets its room back) and start a fresh one next time.
            self._drop_active(truncate_to=start)
            return
        for w in waiters:
            w.set_result(None)
        if self.on_commit is not None:
            self.on_commit(sum(counts))

    def _write_error(self, exc: OSError) -> StoreError:
        reason = exc.strerror or str(exc)
        if exc.errno in _NO_ROOM:
            log.error("no room left for the spool in %s: %s", self.dir, reason)
            # The answer goes to a client: it says what happened, not where the data lives.
            return StorageFull(
                f"no room left on the disk for the spool ({reason}); nothing of this batch "
                "was kept: send it again once there is room",
                free_bytes=_free_bytes(self.dir),
            )
        return StoreError(f"cannot write the spool in {self.dir}: {reason}")

    def _drop_active(self, truncate_to: int | None = None) -> None:
        path = self._active_path
        with contextlib.suppress(OSError):
            if self._active is not None:
                self._active.close()
        if path is not None and truncate_to is not None:
            try:
                os.truncate(path, truncate_to)
                if self.fsync:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            except OSError as exc:
                # The cut-short line is then the segment's last and is skipped on replay.
                log.error("cannot cut %s back after a failed write: %s", path, exc)
        with self._lock:
            if path is not None:
                self._sealed.append(path)
            self._active_path = None
        self._active = None

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: list[bytes] = []
            counts: list[int] = []
            waiters: list[Future[None]] = []
            for item in group:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Seal):
                    # Everything queued before the seal belongs to the sealed segment.
                    self._commit(lines, counts, waiters)
                    lines, counts, waiters = [], [], []
                    self._seal_active()
                    with self._lock:
                        item.done.set_result(list(self._sealed))
                else:
                    line, n, fut = item
                    lines.append(line)
                    counts.append(n)
                    waiters.append(fut)
            self._commit(lines, counts, waiters)
        self._seal_active()


class SealedSegments:
    """The sealed segments of a spool another process writes: those numbered up to ``upto``.

    What a :class:`Flusher` running in its own process works on. The owner of the spool seals its
    active segment and then says how far segments are sealed; a segment stored and removed here is
    reported through ``on_removed`` so that the owner stops counting it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        on_removed: Callable[[Path], None] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.fsync = fsync
        self.upto = 0
        self.on_removed = on_removed

    def seal(self, timeout: float | None = None) -> list[Path]:
        paths = [
            p for p in self.dir.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}") if _seq(p) <= self.upto
        ]
        return sorted(paths, key=_seq)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if self.fsync:
            _fsync_dir(self.dir)
        if self.on_removed is not None:
            self.on_removed(path)

    def quarantine(self, path: Path) -> Path:
        target = self.dir / "failed" / path.name
        target.parent.mkdir(exist_ok=True)
        os.replace(path, target)
        if self.on_removed is not None:
            self.on_removed(path)
        return target


def segment_seq(path: Path) -> int:
    return _seq(path)


class Flusher:
    """Moves sealed spool segments into the log store, in order, on a timer or when nudged."""

    def __init__(
        self,
        spool: Spool | SealedSegments,
        store_batch: Callable[[str, Sequence[tuple[str, Any]], str], Any],
        *,
        interval: float = 1.0,
        max_items_per_call: int = 50_000,
        batch_records: int = 50_000,
        on_stored: Callable[[int], None] | None = None,
        on_unstorable: Callable[[str, tuple[str, Any], str, Exception], None] | None = None,
        on_batch: Callable[[], Any] | None = None,
    ) -> None:
        self.spool = spool
        self.on_unstorable = on_unstorable
        self.store_batch = store_batch
        self.interval = interval
        self.max_items = max_items_per_call
        self.batch_records = batch_records
        self.on_batch = on_batch
        self.on_stored = on_stored
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._attempts: dict[Path, int] = {}
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-flusher", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the timer and move everything acknowledged so far into the store."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush_once()

    def _run(self) -> None:
        # Whatever a previous process left is replayed first, before any new segment.
        self.flush_once()
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.flush_once()

    def flush_once(self) -> int:
        """Store every sealed segment; returns how many records went in.

        Consecutive segments are stored together, up to ``batch_records`` records per batch: a
        backlog of many small segments costs a few large appends, not one append each. Each
        batch's segments are removed only after all of its records are stored. ``on_batch`` runs
        after each batch (the store's compaction, one bounded slice at a time).
        """
        stored = 0
        paths = self.spool.seal()
        i = 0
        while i < len(paths):
            run: list[Path] = []
            batches: list[SpoolBatch] = []
            records = 0
            while i < len(paths) and (not run or records < self.batch_records):
                run.append(paths[i])
                for b in read_segment(paths[i]):
                    batches.append(b)
                    records += len(b.items)
                i += 1
            if len(run) == 1:
                n, ok = self._flush_segment(run[0], batches)
                stored += n
                if not ok:
                    break
                continue
            try:
                stored += self._store_batches(batches)
            except (OSError, StoreError) as exc:
                n = self._attempts[run[0]] = self._attempts.get(run[0], 0) + 1
                self.last_error = f"{run[0].name}: {exc}"
                log.error("cannot store %s.. yet (attempt %d): %s", run[0].name, n, exc)
                time.sleep(min(0.1 * 2**n, 5.0))
                break
            except Exception as exc:
                # Something in the batch cannot be stored: find it one segment at a time.
                log.warning(
                    "could not store %d segments together (%s); one at a time", len(run), exc
                )
                stop = False
                for path in run:
                    n, ok = self._flush_segment(path, list(read_segment(path)))
                    stored += n
                    if not ok:
                        stop = True
                        break
                if stop:
                    break
                continue
            for path in run:
                self.spool.remove(path)
                self._attempts.pop(path, None)
            if self.on_batch is not None:
                self.on_batch()
        return stored

    def _flush_segment(self, path: Path, batches: list[SpoolBatch]) -> tuple[int, bool]:
        """Store one segment; returns the records stored and whether later segments may go on."""
        try:
            stored = self._store_batches(batches)
        except (OSError, StoreError) as exc:
            # The store itself cannot be written (a full disk, say): keep the segment and
            # try again, however long it takes; nothing acknowledged may be dropped.
            n = self._attempts[path] = self._attempts.get(path, 0) + 1
            self.last_error = f"{path.name}: {exc}"
            log.error("cannot store %s yet (attempt %d): %s", path.name, n, exc)
            time.sleep(min(0.1 * 2**n, 5.0))
            return 0, False
        except Exception as exc:
            n = self._attempts[path] = self._attempts.get(path, 0) + 1
            self.last_error = f"{path.name}: {exc}"
            if n >= MAX_ATTEMPTS:
                target = self.spool.quarantine(path)
                log.error(
                    "gave up on %s after %d attempts (%s); moved to %s", path.name, n, exc, target
                )
                self._attempts.pop(path, None)
                return 0, True
            log.warning("could not store %s (attempt %d): %s", path.name, n, exc)
            time.sleep(min(0.1 * 2**n, 2.0))
            # Later segments wait, so that records are stored in the order they arrived.
            return 0, False
        self.spool.remove(path)
        self._attempts.pop(path, None)
        if self.on_batch is not None:
            self.on_batch()
        return stored, True

    def _store_batches(self, batches: Sequence[SpoolBatch]) -> int:
        groups: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        for batch in batches:
            groups.setdefault((batch.kind, batch.source), []).extend(batch.items)
        total = 0
        for (kind, source), items in groups.items():
            for i in range(0, len(items), self.max_items):
                chunk = items[i : i + self.max_items]
                self._store_items(kind, chunk, source)
                total += len(chunk)
        if self.on_stored is not None and total:
            self.on_stored(total)
        return total

    def _store_items(self, kind: str, items: list[tuple[str, Any]], source: str) -> None:
        """Store ``items``; a record the store refuses is isolated by halving, not the batch."""
        try:
            self.store_batch(kind, items, source)
        except (OSError, StoreError):
            raise
        except Exception as exc:
            if self.on_unstorable is None:
                raise
            if len(items) == 1:
                self.on_unstorable(kind, items[0], source, exc)
                return
            mid = len(items) // 2
            self._store_items(kind, items[:mid], source)
            self._store_items(kind, items[mid:], source)


__all__ = ["Flusher", "SealedSegments", "Spool", "SpoolBatch", "read_segment", "segment_seq"]
