"""Checking ingest batches away from the gateway: parse, validate, encode, in a worker process.

An ingest batch of a few hundred records takes milliseconds of pure Python to parse, validate
record by record, encode for the spool and answer. Done on the server's event loop that time
holds up every gateway request waiting behind it; done by a thread, it still holds the
interpreter lock, and the event loop waits its turn for the lock (up to the 5 ms switch interval
each time). So a batch larger than :data:`INLINE_BODY_BYTES` is checked by a small pool of
worker processes, at a lower CPU priority than the server (:data:`WORKER_NICE`), which hands back
three byte strings: the spool line, the answer, and the few refusals the audit log needs. The
server's own share is reading the body and writing those bytes.

At most :attr:`IngestChecks.max_in_flight` batches are with the workers at once; further ones
wait their turn (the senders see a slower answer, the gateway does not). The rules are the same
whichever way a batch goes: :func:`check_body` is the one function, run inline, in a thread
(``ingest_workers=0``) or in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from modelwarden.errors import MalformedBody
from modelwarden.ingest.validation import check_batch
from modelwarden.server.body import parse_json, parse_ndjson
from modelwarden.server.errors import PayloadTooLarge
from modelwarden.store.spool import SpoolBatch

log = logging.getLogger("modelwarden.server")

# Bodies up to this size are checked on the event loop: a few records take less time to check
# than to hand to a worker and back.
INLINE_BODY_BYTES = 16 * 1024
# CPU priority of the worker processes, added to the server's.
WORKER_NICE = 5


@dataclass
class Checked:
    """A checked batch: what to spool, what to answer, what to count and audit."""

    batch_id: str
    received: int
    accepted: int
    # The spool line holding every record (invalid ones as bad records with their reasons);
    # None for an empty batch.
    spool_line: bytes | None
    answer: bytes
    # Results refused because the key is bound to another plant (for the audit log).
    refused: list[dict[str, Any]]

    @property
    def invalid(self) -> int:
        return self.received - self.accepted


def batch_records(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if "records" in body:
            records = body["records"]
            if not isinstance(records, list):
                raise MalformedBody("'records' must be a list of records", field="records")
            return records
        return [body]
    raise MalformedBody(
        'the body must be a list of records, {"records": [...]} or one record object',
        field="(body)",
    )


def check_body(
    body: bytes,
    ndjson: bool,
    kind: str,
    source: str,
    embedders: dict[str, int],
    plant: str | None,
    max_records: int,
    batch_id: str,
) -> Checked:
    """Parse and validate one ingest body; raise the error a malformed one gets."""
    records = batch_records(parse_ndjson(body) if ndjson else parse_json(body))
    if len(records) > max_records:
        raise PayloadTooLarge(
            f"a batch holds at most {max_records} records; this one has {len(records)}",
            limit_records=max_records,
        )
    results, accepted, items = check_batch(kind, records, embedders, batch_id, plant)
    answer = {
        "batch_id": batch_id,
        "kind": kind,
        "received": len(records),
        "accepted": accepted,
        "invalid": len(records) - accepted,
        "results": results,
    }
    line = SpoolBatch(kind, source, items, batch_id=batch_id).to_line() if items else None
    refused = [r for r in results if r["status"] == "invalid" and r.get("field") == "plant_id"]
    return Checked(
        batch_id=batch_id,
        received=len(records),
        accepted=accepted,
        spool_line=line,
        answer=json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(),
        refused=refused,
    )


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)


class IngestChecks:
    """Where ingest bodies are checked: inline when small, else a worker process (or thread)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.max_in_flight = max(1, 2 * workers)
        self._pool: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Started on first use (a server that only proxies never starts one), by spawning:
            # forking a process that runs threads can copy a lock another thread holds.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        return self._pool

    async def check(self, body: bytes, *args: Any) -> Checked:
        """:func:`check_body` of ``body`` and ``args``, wherever it costs the gateway least."""
        if len(body) <= INLINE_BODY_BYTES:
            return check_body(body, *args)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        async with self._slots:
            if self.workers <= 0:
                return await run_in_threadpool(check_body, body, *args)
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor(), check_body, body, *args)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): start a new pool, try the batch once more.
                log.warning("an ingest worker process died; starting a new one")
                self._discard()
                return await loop.run_in_executor(self._executor(), check_body, body, *args)

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
