"""Prometheus metrics of one server, in a registry of its own (two apps in a process never mix).

Labels are ``model_version``, ``plant`` and ``route`` only: never a user, a request id or a raw
path, so the number of series stays bounded. Plants come from a request header, so past
:data:`MAX_PLANTS` distinct values new ones are counted as ``other``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LABELS = ("model_version", "plant", "route")
MAX_PLANTS = 64
MAX_VERSIONS = 64
# Seconds; from a fast cache hit to a long generation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Bounded:
    """Caps the distinct values a label takes; later newcomers become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        value = value or "unknown"
        if value in self.seen:
            return value
        with self.lock:
            if len(self.seen) < self.limit:
                self.seen.add(value)
                return value
        return "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._plant = _Bounded(MAX_PLANTS)
        self._version = _Bounded(MAX_VERSIONS)
        self.gateway_latency = Histogram(
            "modelwarden_gateway_request_duration_seconds",
            "Time from a chat request's arrival to the end of its answer, in seconds.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gateway_overhead = Histogram(
            "modelwarden_gateway_overhead_seconds",
            "Time the gateway adds to a chat request beyond waiting for the upstream, in seconds.",
            LABELS,
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.gateway_requests = Counter(
            "modelwarden_gateway_requests",
            "Chat requests answered, by served version and route.",
            LABELS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "modelwarden_upstream_errors",
            "Upstream failures (timeouts, refused connections, 5xx answers).",
            LABELS,
            registry=r,
        )
        self.canary_fallbacks = Counter(
            "modelwarden_canary_fallbacks",
            "Canary requests that failed upstream and were served by the stable version.",
            LABELS,
            registry=r,
        )
        self.safety_flags = Counter(
            "modelwarden_safety_flags", "Answers flagged by the safety check.", LABELS, registry=r
        )
        self.prompt_tokens = Counter(
            "modelwarden_prompt_tokens", "Prompt tokens reported by upstreams.", LABELS, registry=r
        )
        self.completion_tokens = Counter(
            "modelwarden_completion_tokens",
            "Completion tokens reported by upstreams.",
            LABELS,
            registry=r,
        )
        self.shadow_dropped = Counter(
            "modelwarden_shadow_dropped",
            "Shadow copies not sent because too many were in flight.",
            LABELS,
            registry=r,
        )
        self.ingest_latency = Histogram(
            "modelwarden_ingest_request_duration_seconds",
            "Time to validate and durably spool one ingest batch, in seconds.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_records = Counter(
            "modelwarden_ingest_records", "Records accepted by the ingest API.", registry=r
        )
        self.ingest_invalid = Counter(
            "modelwarden_ingest_invalid_records",
            "Records the ingest API found invalid (kept in the rejected store).",
            registry=r,
        )
        self.otlp_spans = Counter(
            "modelwarden_otlp_llm_spans",
            "LLM spans received over OTLP, by attribute convention (genai, openinference, "
            "openllmetry; unknown: LLM-looking spans of none of them, counted and not stored).",
            ["convention"],
            registry=r,
        )
        self.stored_records = Counter(
            "modelwarden_spool_stored_records",
            "Records moved from the spool into the log store.",
            registry=r,
        )
        self.spool_write_failures = Counter(
            "modelwarden_spool_write_failures",
            "Records the spool could not write, so none of them was acknowledged, by reason "
            "(no_room: the disk is full; error: any other write error).",
            ["reason"],
            registry=r,
        )
        self.spool_records = Gauge(
            "modelwarden_spool_depth_records",
            "Records acknowledged but not yet moved into the log store.",
            registry=r,
        )
        self.spool_bytes = Gauge(
            "modelwarden_spool_depth_bytes", "Bytes of spool segments not yet stored.", registry=r
        )
        self.spool_segments = Gauge(
            "modelwarden_spool_segments", "Spool segment files not yet stored.", registry=r
        )

    def labels(self, version: str | None, plant: str | None, route: str | None) -> dict[str, str]:
        return {
            "model_version": self._version(version),
            "plant": self._plant(plant),
            "route": route or "unknown",
        }

    def bind_spool(
        self,
        records: Callable[[], float],
        nbytes: Callable[[], float],
        segments: Callable[[], float],
    ) -> None:
        self.spool_records.set_function(records)
        self.spool_bytes.set_function(nbytes)
        self.spool_segments.set_function(segments)

    def render(self) -> bytes:
        return generate_latest(self.registry)
