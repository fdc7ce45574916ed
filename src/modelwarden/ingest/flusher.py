"""The spool flusher in a process of its own, started and supervised by ``modelwarden serve``.

Moving records from the spool into the log store validates them, checks them against the stored
keys and writes Parquet: tens of milliseconds of CPU per flush. Done by a thread of the serving
process, that time holds the interpreter lock and shows in the gateway's tail latency; done by a
child process, the serving process only appends lines to the spool.

The two talk over the child's stdin and stdout, one JSON object per line:

* the server says ``{"flush": N}`` (segments up to number N are sealed; store them) and, at
  shutdown, ``{"stop": N}`` (store them, then exit);
* the child says ``{"stored": n}`` after each segment's records are in the store,
  ``{"done": "seg-….jsonl"}`` once a segment is removed (or moved aside to ``failed/``), and
  ``{"error": "…"}`` when the store cannot take a segment yet.

The child holds ``spool/.flusher.lock`` while it works, so a child left over from a server that was
killed finishes its segment before the next server's child starts. It exits when its stdin closes
(the server is gone); whatever it did not store stays in the spool and the next server's child
stores it. A child that dies is started again.

The child works in the background: it lowers its own CPU priority (nice) and IO priority (the
lowest best-effort level; not the idle class, which a busy disk can starve for good, and then the
spool would only grow), stores a backlog in batches of segments, and after each batch merges
the part files it wrote, one bounded slice at a time
(:meth:`~modelwarden.store.logstore.LogStore.maintain`), so that no directory holds more than a
bounded number of files however long the backlog.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from modelwarden.settings import Settings
from modelwarden.store.spool import SealedSegments, Spool, segment_seq

log = logging.getLogger("modelwarden.flusher")

ENV_SETTINGS = "MODELWARDEN_FLUSHER_SETTINGS"
# How long one round of compaction after a batch may take before the next batch is stored.
COMPACT_SLICE_S = 2.0
# CPU priority of the flusher (added to the server's).
NICE = 10
# ioprio_set(2): the system call's number per architecture, and its arguments.
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314, "ppc64le": 273}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_BE = 2
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_LOWEST_BE = 7


def background_priority() -> dict[str, int | None]:
    """Lower this thread's CPU and IO priority (threads started later inherit both).

    Returns the nice value and the IO priority (class << 13 | level) now in force; None where
    the system does not allow it.
    """
    nice: int | None = None
    with contextlib.suppress(OSError):
        nice = os.nice(0)
        if nice < NICE:
            nice = os.nice(NICE - nice)
    ioprio: int | None = None
    nr = _SYS_IOPRIO_SET.get(platform.machine())
    if nr is not None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            value = (_IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT) | _IOPRIO_LOWEST_BE
            if libc.syscall(nr, _IOPRIO_WHO_PROCESS, 0, value) == 0:
                ioprio = value
    return {"nice": nice, "ioprio": ioprio}


# ---- in the server ---------------------------------------------------------------------------
class FlushProcess:
    """Starts the flusher child, tells it what is sealed, restarts it when it dies."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        *,
        interval: float = 1.0,
        on_stored: Any = None,
        restart_delay: float = 0.5,
        stop_timeout: float = 120.0,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.interval = interval
        self.on_stored = on_stored
        self.restart_delay = restart_delay
        self._started = 0.0
        self._quick_exits = 0
        self.stop_timeout = stop_timeout
        self.last_error: str | None = None
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._upto = 0
        self._ticker: threading.Thread | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        # Whatever a previous server left is stored first.
        self._send_flush()
        self._ticker = threading.Thread(target=self._tick, name="flusher-ticker", daemon=True)
        self._ticker.start()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Store everything acknowledged so far, then let the child exit."""
        self._stopping.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join()
        paths = self.spool.seal()
        upto = max([self._upto, *(segment_seq(p) for p in paths)])
        with self._io:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                proc = self._spawn_locked()
            self._write(proc, {"stop": upto})
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            # What it has not stored stays in the spool for the next start.
            log.error("the flusher did not finish within %.0f s; stopping it", self.stop_timeout)
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(5)

    # ---- child process -----------------------------------------------------------------------
    def _spawn(self) -> None:
        with self._io:
            self._spawn_locked()

    def _spawn_locked(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, ENV_SETTINGS: self.settings.model_dump_json()}
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelwarden.ingest.flusher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            # Its own session: a Ctrl-C meant for the server must not cut a flush short; the
            # server stops it through its stdin.
            start_new_session=True,
        )
        self._proc = proc
        self._started = time.monotonic()
        self._reader = threading.Thread(
            target=self._read, args=(proc,), name="flusher-reader", daemon=True
        )
        self._reader.start()
        return proc

    def _write(self, proc: subprocess.Popen[bytes], msg: dict[str, Any]) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # it died; the reader restarts it and the next tick says it again

    def _send_flush(self) -> None:
        paths = self.spool.seal()
        if not paths:
            return
        self._upto = max(self._upto, *(segment_seq(p) for p in paths))
        with self._io:
            if self._proc is not None:
                self._write(self._proc, {"flush": self._upto})

    def _tick(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._send_flush()
            except Exception:  # the ticker must keep ticking
                log.exception("could not seal the spool")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "done" in msg:
                self.spool.forget(self.spool.dir / str(msg["done"]))
            elif "stored" in msg:
                if self.on_stored is not None:
                    self.on_stored(int(msg["stored"]))
            elif "error" in msg:
                self.last_error = str(msg["error"])
        code = proc.wait()
        if self._stopping.is_set():
            return
        self.last_error = f"the flusher process exited with code {code}; restarted"
        log.error(
            "the flusher process (pid %d) exited with code %d; starting it again", proc.pid, code
        )
        # A child that keeps dying at once (a broken install, say) is retried less and less often.
        self._quick_exits = self._quick_exits + 1 if time.monotonic() - self._started < 10 else 0
        time.sleep(min(self.restart_delay * 2 ** min(self._quick_exits, 6), 30.0))
        with self._io:
            if self._stopping.is_set():
                return
            new = self._spawn_locked()
            self.restarts += 1
            if self._upto:
                self._write(new, {"flush": self._upto})


# ---- in the child ----------------------------------------------------------------------------
def _emit(out: IO[bytes], lock: threading.Lock, msg: dict[str, Any]) -> None:
    with lock:
        out.write(json.dumps(msg).encode() + b"\n")
        out.flush()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # First, before any thread is started, so that every thread of the flusher inherits it.
    background_priority()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings.model_validate_json(os.environ[ENV_SETTINGS])
    # Only this process writes the protocol on stdout; anything else printing goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    out_lock = threading.Lock()

    # Imported only now, once stdout is redirected: nothing printed at import reaches the protocol.
    from modelwarden.ingest.core import Ingestor
    from modelwarden.ingest.spool_store import SpoolStore
    from modelwarden.safety.service import safety_checker
    from modelwarden.store.reads import open_store
    from modelwarden.store.spool import Flusher

    spool_dir = settings.data_dir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    lock_fh = open(spool_dir / ".flusher.lock", "a+")  # noqa: SIM115 - held until exit
    fcntl.flock(lock_fh.fileno(), fcntl.LOCK_EX)

    store = open_store(settings)
    target = SpoolStore(store, Ingestor(store, safety_checker(settings)))
    segments = SealedSegments(
        spool_dir, on_removed=lambda p: _emit(out, out_lock, {"done": p.name})
    )

    def compact() -> None:
        try:
            store.maintain(budget_s=COMPACT_SLICE_S)
        except Exception:  # the store stays readable; the next round tries again
            log.exception("compaction failed")

    flusher = Flusher(
        segments,
        target.store_batch,
        on_stored=lambda n: _emit(out, out_lock, {"stored": n}),
        on_unstorable=target.unstorable,
        on_batch=compact,
    )
    for line in sys.stdin.buffer:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        upto = int(msg.get("flush", msg.get("stop", 0)))
        segments.upto = max(segments.upto, upto)
        error_before = flusher.last_error
        flusher.flush_once()
        if flusher.last_error != error_before and flusher.last_error is not None:
            _emit(out, out_lock, {"error": flusher.last_error})
        if "stop" in msg:
            break
        if store.dirty:
            # What the last slice left (a long backlog of merges) goes on between flushes.
            compact()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FlushProcess"]
