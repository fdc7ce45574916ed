"""The sending side of the client: a bounded queue and one background sender thread.

``log``, ``feedback`` and ``escalate`` only put a record in the queue (a few microseconds on the
caller's thread); the sender thread takes batches from it and posts them to ``/v1/logs``,
``/v1/feedback`` and ``/v1/escalations``, retrying with exponential backoff while ModelWarden is
unreachable or answers 5xx/429. Every record carries its key (``request_id``, ``event_id``) from
the moment it is queued, so a batch sent again after a lost answer is stored once.

The queue holds at most ``max_queue`` records: when it is full the oldest (or, with
``drop="newest"``, the new) record is dropped and counted, so a long outage costs bounded memory
and never blocks or raises in the application.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

log = logging.getLogger("modelwarden.client")

PATHS = {"requests": "/v1/logs", "feedback": "/v1/feedback", "escalations": "/v1/escalations"}
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
DropPolicy = Literal["oldest", "newest"]


@dataclass
class ClientStats:
    """What happened to the records handed to the client (counts since it was made)."""

    # Every record handed to the client ends in exactly one of sent, invalid, dropped, pending.
    queued: int = 0
    sent: int = 0
    invalid: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    retries: int = 0
    batches: int = 0
    pending: int = 0
    last_error: str | None = None

    @property
    def dropped(self) -> int:
        """Records that will never reach ModelWarden: the queue was full, or sending gave up."""
        return self.dropped_full + self.dropped_failed

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped": self.dropped}


class _stop_when(stop_base):
    def __init__(self, condition: Any) -> None:
        self.condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return bool(self.condition())


class _Retryable(Exception):
    pass


class _Permanent(Exception):
    pass


def now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat()


# Ids are a random prefix per process and a counter: unique like a UUID, at a fraction of the
# cost on the caller's thread.
_PREFIX = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def new_id() -> str:
    return f"{_PREFIX}{next(_counter):012x}"


class Sender:
    """The queue and the sender thread shared by :class:`Client` and :class:`AsyncClient`."""

    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        batch_size: int = 200,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        drop: DropPolicy = "oldest",
        retry_for: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        if drop not in ("oldest", "newest"):
            raise ValueError("drop must be 'oldest' or 'newest'")
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.drop = drop
        self.retry_for = retry_for
        self.stats = ClientStats()
        # (kind, record, time queued): the ISO timestamp is written on the sender thread.
        self._queue: deque[tuple[str, dict[str, Any], float]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._flush_wanted = False
        self._closing = False
        self._closed = False
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._thread = threading.Thread(target=self._run, name="modelwarden-client", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)

        def _at_exit() -> None:
            sender = ref()
            if sender is not None:
                sender.close()

        self._at_exit = _at_exit
        atexit.register(_at_exit)

    # ---- the caller's side -------------------------------------------------------------------
    def put(self, kind: str, record: dict[str, Any]) -> None:
        t = time.time()
        with self._lock:
            self.stats.queued += 1
            if self._closed:
                self.stats.dropped_failed += 1
                return
            if len(self._queue) >= self.max_queue:
                self.stats.dropped_full += 1
                if self.drop == "newest":
                    return
                self._queue.popleft()
            self._queue.append((kind, record, t))
            if len(self._queue) >= self.batch_size:
                self._wake.notify()

    def count_dropped(self, n: int) -> None:
        with self._lock:
            self.stats.queued += n
            self.stats.dropped_failed += n

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything queued now; True once it is sent (or given up), False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flush_wanted = True
            self._wake.notify()
            while self._queue or self._in_flight:
                if not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left if left is None else min(left, 0.5))
            return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush, then stop the sender thread; records logged afterwards are counted as dropped."""
        if self._closed:
            return True
        drained = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._closed = True
            self._wake.notify()
        self._thread.join(5.0)
        self._http.close()
        atexit.unregister(self._at_exit)
        with self._lock:
            # What could not be sent in time is lost with the process: counted, not silent.
            self.stats.dropped_failed += len(self._queue)
            self._queue.clear()
        return drained

    def snapshot(self) -> ClientStats:
        with self._lock:
            self.stats.pending = len(self._queue) + self._in_flight
            return ClientStats(**asdict(self.stats))

    # ---- the sender thread -------------------------------------------------------------------
    def _take(self) -> list[tuple[str, dict[str, Any], float]] | None:
        """The next batch: once ``batch_size`` records wait, on a flush, or ``flush_interval``
        after the oldest waiting record arrived. None once closed and drained."""
        with self._lock:
            deadline: float | None = None
            while True:
                if self._closing and not self._queue:
                    return None
                if self._queue:
                    if deadline is None:
                        deadline = time.monotonic() + self.flush_interval
                    full = len(self._queue) >= self.batch_size
                    if full or self._flush_wanted or self._closing:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                else:
                    deadline = None
                    if self._flush_wanted and not self._in_flight:
                        self._flush_wanted = False
                        self._idle.notify_all()
                    self._wake.wait(self.flush_interval)
            n = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                with self._lock:
                    self._idle.notify_all()
                return
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for kind, rec, t in batch:
                if not rec.get("timestamp"):
                    rec["timestamp"] = now_iso(t)
                by_kind.setdefault(kind, []).append(rec)
            for kind, records in by_kind.items():
                self._send(kind, records)
            with self._lock:
                self._in_flight = 0
                if not self._queue:
                    self._flush_wanted = False
                self._idle.notify_all()

    def _send(self, kind: str, records: list[dict[str, Any]]) -> None:
        def count_retry(state: RetryCallState) -> None:
            with self._lock:
                self.stats.retries += 1
                if state.outcome is not None and state.outcome.exception() is not None:
                    self.stats.last_error = str(state.outcome.exception())

        retrying = Retrying(
            # Given up after ``retry_for`` seconds, or at once when the client is closed.
            stop=stop_after_delay(self.retry_for) | _stop_when(lambda: self._closed),
            wait=wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=count_retry,
            reraise=True,
        )
        try:
            body = retrying(self._post, kind, records)
        except (_Retryable, _Permanent) as exc:
            with self._lock:
                self.stats.dropped_failed += len(records)
                self.stats.last_error = str(exc)
            log.warning("ModelWarden client dropped %d %s: %s", len(records), kind, exc)
            return
        accepted = int(body.get("accepted", len(records)))
        invalid = int(body.get("invalid", 0))
        with self._lock:
            self.stats.sent += accepted
            self.stats.invalid += invalid
            self.stats.batches += 1
            if invalid:
                first = next(
                    (r for r in body.get("results", []) if r.get("status") == "invalid"), None
                )
                if first is not None:
                    self.stats.last_error = f"{first.get('field')}: {first.get('reason')}"

    def _post(self, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            resp = self._http.post(PATHS[kind], json=records)
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status_code} from {PATHS[kind]}")
        if resp.status_code >= 400:
            raise _Permanent(f"HTTP {resp.status_code} from {PATHS[kind]}: {resp.text[:300]}")
        try:
            body = resp.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}


def as_record(record: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(record, Mapping):
        raise TypeError(f"a record is a mapping of field names to values, not {type(record)}")
    rec = dict(record)
    if not rec.get("request_id"):
        rec["request_id"] = new_id()
    return rec


__all__ = ["ClientStats", "DropPolicy", "Sender", "as_record", "new_id", "now_iso"]
