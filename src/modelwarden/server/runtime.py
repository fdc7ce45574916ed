"""What one running server holds: stores, the spool and its flusher, keys, routes, the gateway.

Created by :func:`modelwarden.server.app.create_app` and started by the app's lifespan, so that
several apps (one per test, say) can live in one process without sharing anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import Future
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from modelwarden import service
from modelwarden.auth import KeyRing
from modelwarden.gateway.proxy import Gateway
from modelwarden.gateway.transport import new_client
from modelwarden.ingest.core import MAX_RAW_CHARS, Ingestor, Rejection, rejections_table
from modelwarden.records import KEY_FIELD, FieldProblem
from modelwarden.registry import GuardedRoutes
from modelwarden.rollout.controller import ControllerLoop
from modelwarden.server.config import ServerConfig
from modelwarden.server.metrics import Metrics
from modelwarden.server.validation import as_bad_line, clean_text
from modelwarden.settings import Settings
from modelwarden.store.spool import Flusher, Spool, SpoolBatch
from modelwarden.store.state import StateStore

log = logging.getLogger("modelwarden.server")

GATEWAY_SOURCE = "gateway"


class Runtime:
    def __init__(self, settings: Settings, config: ServerConfig) -> None:
        self.settings = settings
        self.config = config
        self.metrics = Metrics()
        self.state = StateStore.at(settings.data_dir)
        self.keys = KeyRing(self.state, config.keys_ttl_s)
        # A version quarantined under the rollback SOP is never served, even by a route table
        # written before its quarantine.
        self.routes = GuardedRoutes(self.state, config.routes_ttl_s)
        self.safety = service.safety_checker(settings)
        self.store = service.open_store(settings)
        self.ingestor = Ingestor(self.store, self.safety)
        self.spool = Spool(settings.data_dir / "spool")
        self.flusher = Flusher(
            self.spool,
            self._store_batch,
            interval=config.flush_interval_s,
            on_stored=self.metrics.stored_records.inc,
            on_unstorable=self._unstorable,
        )
        self.metrics.bind_spool(
            self.spool.pending_records, self.spool.pending_bytes, self.spool.pending_segments
        )
        self._client: httpx.AsyncClient | None = None
        self._gateway: Gateway | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        leftovers = self.spool.start()
        if leftovers:
            log.info("replaying %d spool segment(s) left by the previous run", len(leftovers))
        self.spool.on_commit = self._maybe_flush_early
        self.flusher.start()
        self._client = new_client(
            timeout=httpx.Timeout(
                self.config.upstream_timeout_s, connect=self.config.upstream_connect_timeout_s
            ),
            max_connections_per_origin=self.config.upstream_max_connections,
        )
        self._gateway = Gateway(
            self._client,
            self.routes,
            self.log_record,
            self.metrics,
            self.safety,
            shadow_max_in_flight=self.config.shadow_max_in_flight,
        )
        # The rollout controller and the SOP policy tick inside the server.
        self.controller = None
        if self.config.run_controller:
            self.controller = ControllerLoop(self.settings, interval_s=self.config.tick_interval_s)
            self.controller.start()

    async def stop(self) -> None:
        if getattr(self, "controller", None) is not None:
            await run_in_threadpool(self.controller.stop)
        if self._gateway is not None:
            await self._gateway.drain()
        if self._client is not None:
            await self._client.aclose()
        # Everything acknowledged goes into the store before the process ends.
        await run_in_threadpool(self.flusher.stop)
        self.spool.close()
        self.state.close()

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the server is not started"
        return self._gateway

    # ---- the spool ---------------------------------------------------------------------------
    def _store_batch(self, kind: str, items: Any, source: str) -> None:
        self.ingestor.ingest_raw(kind, [(loc, as_bad_line(raw)) for loc, raw in items], source)

    def _unstorable(self, kind: str, item: tuple[str, Any], source: str, exc: Exception) -> None:
        """Keep a record the store refused (past validation) in the rejected store, with why."""
        location, raw = item
        key = raw.get(KEY_FIELD[kind]) if isinstance(raw, dict) else None
        text = json.dumps(raw, ensure_ascii=False, default=str)
        problem = FieldProblem(field="(record)", reason=f"the log store could not take it: {exc}")
        rejection = Rejection(source, location, clean_text(str(key)) if key else None, [problem],
                              clean_text(text)[:MAX_RAW_CHARS])
        self.store.append_rejected(rejections_table(kind, [rejection]))
        log.error("%s %s could not be stored and was kept as rejected: %s", kind, location, exc)

    def _maybe_flush_early(self, _n: int) -> None:
        if self.spool.pending_records() >= self.config.flush_early_records:
            self.flusher.nudge()

    async def spool_batch(self, batch: SpoolBatch) -> None:
        """Return once ``batch`` is durably on disk."""
        await asyncio.wrap_future(self.spool.append(batch))

    def log_record(self, record: dict[str, Any]) -> None:
        """Queue a gateway record without waiting for the disk."""
        rid = record["request_id"]
        batch = SpoolBatch("requests", GATEWAY_SOURCE, [(f"gateway {rid}", record)], batch_id=rid)
        self.spool.append(batch).add_done_callback(_report_failure)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "data_dir": str(self.settings.data_dir),
            "spool": {
                "pending_records": self.spool.pending_records(),
                "pending_segments": self.spool.pending_segments(),
                "pending_bytes": self.spool.pending_bytes(),
                "last_error": self.flusher.last_error,
            },
        }


def _report_failure(fut: Future[None]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("a gateway record could not be spooled: %s", exc)
