"""What one running server holds: stores, the spool and its flusher, keys, routes, the gateway.

The flusher, which moves acknowledged records from the spool into the log store, runs in a child
process (:mod:`modelwarden.ingest.flusher`) so that its work never holds up a request.

Created by :func:`modelwarden.server.app.create_app` and started by the app's lifespan, so that
several apps (one per test, say) can live in one process without sharing anything.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from modelwarden.errors import StorageFull, StoreError
from modelwarden.gateway.metrics import Metrics
from modelwarden.gateway.proxy import Gateway
from modelwarden.gateway.transport import PooledTransport, new_client
from modelwarden.governance.keys import AuthThrottle, KeyRing
from modelwarden.governance.notify import Notifier
from modelwarden.governance.registry import GuardedRoutes
from modelwarden.ingest.core import Ingestor
from modelwarden.ingest.flusher import FlushProcess
from modelwarden.kpi import rollups
from modelwarden.report.delivery import ReportScheduler
from modelwarden.rollout.controller import ControllerLoop
from modelwarden.safety.service import safety_checker
from modelwarden.server.config import ServerConfig
from modelwarden.server.ingest_checks import IngestChecks
from modelwarden.settings import Settings
from modelwarden.store.reads import open_store
from modelwarden.store.spool import Spool, SpoolBatch
from modelwarden.store.state import StateStore

log = logging.getLogger("modelwarden.server")

GATEWAY_SOURCE = "gateway"
# Gateway records wait at most this long (or for this many more) before they go to the spool.
GATEWAY_BATCH_S = 0.02
GATEWAY_BATCH_MAX = 512


class Runtime:
    def __init__(
        self,
        settings: Settings,
        config: ServerConfig,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.clock = clock
        self.metrics = Metrics()
        self.state = StateStore.of(settings)
        self.keys = KeyRing(
            self.state,
            config.keys_ttl_s,
            AuthThrottle(config.auth_max_failures, window_s=60.0, block_s=config.auth_block_s),
        )
        # A version quarantined under the rollback SOP is never served, even by a route table
        # written before its quarantine.
        self.routes = GuardedRoutes(self.state, config.routes_ttl_s)
        self.safety = safety_checker(settings)
        self.store = open_store(settings)
        self.ingestor = Ingestor(self.store, self.safety)
        self.spool = Spool(settings.data_dir / "spool")
        self.ingest_checks = IngestChecks(config.ingest_workers)
        self.flusher = FlushProcess(
            settings,
            self.spool,
            interval=config.flush_interval_s,
            on_stored=self.metrics.stored_records.inc,
        )
        self.metrics.bind_spool(
            self.pending_records, self.spool.pending_bytes, self.spool.pending_segments
        )
        self._client: httpx.AsyncClient | None = None
        # The bound OTLP/gRPC port once it listens (config.otlp_grpc_port 0 picks one).
        self.otlp_grpc_port: int | None = None
        self._gateway: Gateway | None = None
        self._records: list[dict[str, Any]] = []
        self._records_timer: asyncio.TimerHandle | None = None
        self.reports: ReportScheduler | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        leftovers = self.spool.start()
        if leftovers:
            log.info("replaying %d spool segment(s) left by the previous run", len(leftovers))
        self.spool.on_commit = self._maybe_flush_early
        self.spool.on_write_failure = self._count_write_failure
        self.flusher.start()
        transport = PooledTransport(max_connections_per_origin=self.config.upstream_max_connections)
        self._client = new_client(
            timeout=httpx.Timeout(
                self.config.upstream_timeout_s, connect=self.config.upstream_connect_timeout_s
            ),
            max_connections_per_origin=self.config.upstream_max_connections,
            transport=transport,
        )
        self._gateway = Gateway(
            self._client,
            self.routes,
            self.log_record,
            self.metrics,
            self.safety,
            shadow_max_in_flight=self.config.shadow_max_in_flight,
            transport=transport,
            clock=self.clock,
        )
        if self.config.build_rollups and not rollups.built(self.store):
            # Once per data directory; ingest keeps them current from then on.
            threading.Thread(
                target=self._build_rollups, name="modelwarden-rollups", daemon=True
            ).start()
        # The rollout controller and the SOP policy tick inside the server.
        self.controller = None
        if self.config.run_controller:
            self.controller = ControllerLoop(self.settings, interval_s=self.config.tick_interval_s)
            self.controller.start()
        # The weekly pack goes out on its schedule when it has somewhere to go; a week missed
        # while the server was down is sent by the first check, right after start.
        if self.config.run_report_schedule and self.settings.report_delivery:
            self.reports = ReportScheduler(
                self.settings, clock=self.clock, interval_s=self.config.report_check_interval_s
            ).start()

    def _build_rollups(self) -> None:
        try:
            rep = rollups.rebuild(self.store)
            log.info(
                "built the daily KPI rollups over %d requests in %.1f s", rep.requests, rep.seconds
            )
        except Exception:  # the overview computes exactly until they exist
            log.exception("building the daily KPI rollups failed")

    @property
    def notifier(self) -> Notifier | None:
        """The controller loop's notification sender (None when the controller does not run)."""
        loop: ControllerLoop | None = getattr(self, "controller", None)
        return loop.notifier if loop is not None else None

    async def stop(self) -> None:
        if self.reports is not None:
            await run_in_threadpool(self.reports.stop)
        controller = getattr(self, "controller", None)
        if controller is not None:
            await run_in_threadpool(controller.stop)
        if self._gateway is not None:
            await self._gateway.drain()
        self._spool_records()
        if self._client is not None:
            await self._client.aclose()
        await run_in_threadpool(self.ingest_checks.close)
        # Everything acknowledged goes into the store before the process ends.
        await run_in_threadpool(self.flusher.stop)
        self.spool.close()
        self.state.close()

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "the server is not started"
        return self._gateway

    # ---- the spool ---------------------------------------------------------------------------
    def _count_write_failure(self, exc: StoreError, records: int) -> None:
        reason = "no_room" if isinstance(exc, StorageFull) else "error"
        self.metrics.spool_write_failures.labels(reason=reason).inc(records)

    def _maybe_flush_early(self, _n: int) -> None:
        if self.spool.pending_records() >= self.config.flush_early_records:
            self.flusher.nudge()

    async def spool_batch(self, batch: SpoolBatch) -> None:
        """Return once ``batch`` is durably on disk."""
        await asyncio.wrap_future(self.spool.append(batch))

    async def spool_line(self, line: bytes, records: int) -> None:
        """Return once a batch encoded by :meth:`SpoolBatch.to_line` is durably on disk."""
        await asyncio.wrap_future(self.spool.append_line(line, records))

    def log_record(self, record: dict[str, Any]) -> None:
        """Queue a gateway record without waiting for the disk.

        Records gathered over a few milliseconds go to the spool as one batch: one line and one
        wake-up of the spool's writer thread for many requests, instead of one each.
        """
        self._records.append(record)
        if len(self._records) >= GATEWAY_BATCH_MAX:
            self._spool_records()
        elif self._records_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._spool_records()
                return
            self._records_timer = loop.call_later(GATEWAY_BATCH_S, self._spool_records)

    def _spool_records(self) -> None:
        if self._records_timer is not None:
            self._records_timer.cancel()
            self._records_timer = None
        records, self._records = self._records, []
        if records:
            batch = SpoolBatch(
                "requests", GATEWAY_SOURCE, [(f"gateway {r['request_id']}", r) for r in records]
            )
            self.spool.append(batch).add_done_callback(_report_failure)

    def pending_records(self) -> int:
        """Records acknowledged or logged that the log store does not hold yet."""
        return len(self._records) + self.spool.pending_records()

    def health(self) -> dict[str, Any]:
        # Unauthenticated: nothing about where the data lives (an error's paths are shortened).
        last_error = self.flusher.last_error
        if last_error:
            last_error = str(last_error).replace(str(self.settings.data_dir.resolve()), "DATA")
            last_error = last_error.replace(str(self.settings.data_dir), "DATA")
        controller = getattr(self, "controller", None)
        return {
            "status": "ok",
            "controller": {
                "running": controller is not None,
                "leader": controller is not None and controller.leader,
            },
            "spool": {
                "pending_records": self.pending_records(),
                "pending_segments": self.spool.pending_segments(),
                "pending_bytes": self.spool.pending_bytes(),
                "last_error": last_error,
                "flusher_pid": self.flusher.pid,
                "flusher_restarts": self.flusher.restarts,
            },
        }


def _report_failure(fut: Future[None]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("a gateway record could not be spooled: %s", exc)
