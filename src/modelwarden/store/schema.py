"""Arrow schemas of the log store's tables.

Requests, feedback and escalations are partitioned by UTC day. Embeddings are derived data keyed by
``(request_id, kind, embedder)`` and live apart from the requests, so a new embedding model never
rewrites the logs.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

REQUESTS = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", TS),
        ("plant_id", pa.string()),
        ("model_version", pa.string()),
        ("user_prompt", pa.string()),
        ("generated_response", pa.string()),
        ("latency_ms", pa.float64()),
        ("human_feedback_score", pa.int8()),
        ("contains_safety_keyword", pa.bool_()),
        ("safety_computed", pa.bool_()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("route", pa.string()),
        ("parent_request_id", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("error", pa.string()),
        ("source", pa.string()),
        ("ingested_at", TS),
    ]
)

FEEDBACK = pa.schema(
    [
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("timestamp", TS),
        ("score", pa.int8()),
        ("comment", pa.string()),
        ("user_id", pa.string()),
        ("source", pa.string()),
        ("ingested_at", TS),
    ]
)

ESCALATIONS = pa.schema(
    [
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("timestamp", TS),
        ("reason", pa.string()),
        ("category", pa.string()),
        ("confirmed", pa.bool_()),
        ("reporter", pa.string()),
        ("source", pa.string()),
        ("ingested_at", TS),
    ]
)

REJECTED = pa.schema(
    [
        ("rejected_at", TS),
        ("kind", pa.string()),
        ("source", pa.string()),
        ("location", pa.string()),
        ("record_key", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("problems", pa.string()),
        ("raw", pa.string()),
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("request_id", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
            ("embedded_at", TS),
        ]
    )


SCHEMAS: dict[str, pa.Schema] = {
    "requests": REQUESTS,
    "feedback": FEEDBACK,
    "escalations": ESCALATIONS,
    "rejected": REJECTED,
}
KEYS: dict[str, str] = {"requests": "request_id", "feedback": "event_id", "escalations": "event_id"}
PARTITIONED = ("requests", "feedback", "escalations")
EMBEDDING_KINDS = ("prompt", "response")
