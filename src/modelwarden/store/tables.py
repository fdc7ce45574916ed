"""Every table of the state store, on one :data:`metadata`.

Feature modules import their tables from here; the migrations under ``store/migrations/`` create
and change them (``modelwarden db upgrade``), so a column added here needs a new revision there.
Datetimes are :class:`UtcDateTime`: timezone-aware UTC in, timezone-aware UTC out, on SQLite
(which keeps no zone) as on PostgreSQL (``timestamp with time zone``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

MAX_NAME_CHARS = 200
GENESIS = "0" * 64


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, always UTC and always timezone-aware when read back.

    A naive datetime written here is taken to be UTC already; an aware one is converted. SQLite
    stores the UTC wall time (no zone), PostgreSQL a ``timestamptz``; both read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite's DATETIME keeps the wall time and drops the zone: give it the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A datetime from outside the store (a flag, a file) as aware UTC; naive means UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- governance: keys, routes, versions, audit ------------------------------------------------
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200)),
    Column("role", String(20), nullable=False),
    Column("plant_id", String(200)),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

# Optional request budgets, in a table of their own so that older state stores gain it as is.
api_key_budgets = Table(
    "api_key_budgets",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("per_minute", Integer),
    Column("per_hour", Integer),
)

gateway_routes = Table(
    "gateway_routes",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200)),
    Column("stable_version", String(200), nullable=False),
    Column("stable_url", String(2000), nullable=False),
    Column("canary_version", String(200)),
    Column("canary_url", String(2000)),
    Column("canary_weight", Float, nullable=False),
    Column("canary_plants", String(8000), nullable=False),
    Column("shadow_version", String(200)),
    Column("shadow_url", String(2000)),
    Column("shadow_sample", Float, nullable=False),
    Column("note", String(2000)),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(200), primary_key=True),
    Column("endpoint", String(2000), nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(300), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("quarantined_at", UtcDateTime),
    Column("quarantine_reason", Text),
    Column("notes", Text),
)

release_requests = Table(
    "release_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(200), nullable=False, index=True),
    Column("status", String(20), nullable=False),  # open, approved, withdrawn
    Column("requested_at", UtcDateTime, nullable=False),
    Column("requested_by_key", Integer, nullable=False),
    Column("requested_by", String(300), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", UtcDateTime),
    Column("decided_by_key", Integer),
    Column("decided_by", String(300)),
    Column("evidence", JSON),
)

version_evidence = Table(
    "version_evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(200), nullable=False, index=True),
    Column("kind", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("data", JSON, nullable=False),
)

# ``at`` is text on purpose: the hash covers its exact spelling (audit.iso).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("action", String(100), nullable=False, index=True),
    Column("subject", String(300), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id 1), created with the table by the first migration.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# The keyed MAC of each audit entry (HMAC-SHA256 chained from the previous one, with a server
# secret kept outside this database); append-only like the log itself.
audit_mac = Table(
    "audit_mac",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("mac", String(64), nullable=False),
)

# Console sign-ins: a session id's hash, the key it stands for, its CSRF token and expiry.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("key_id", Integer, nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# ---- governance: incidents and their notifications --------------------------------------------
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("key", String(300), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("severity", String(20), nullable=False),
    Column("version", String(200), nullable=False, index=True),
    Column("stable_version", String(200)),
    Column("rollout_id", Integer),
    Column("rule_id", String(200), nullable=False),
    Column("trigger", JSON, nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("rca_dir", String(2000)),
    Column("note", Text),
)

incident_steps = Table(
    "incident_steps",
    metadata,
    Column("incident_id", String(100), nullable=False),
    Column("step", String(50), nullable=False),
    Column("done_at", UtcDateTime, nullable=False),
    Column("detail", JSON, nullable=False),
    PrimaryKeyConstraint("incident_id", "step", name="pk_incident_steps"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(100), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("target", String(2000), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(20), nullable=False, index=True),  # pending, sent, failed
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("backoff_ms", Integer, nullable=False),
    Column("timeout_ms", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    UniqueConstraint("incident_id", "channel", "target", name="uq_notification"),
)

# ---- rollouts --------------------------------------------------------------------------------
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(200), nullable=False, index=True),
    Column("canary_url", String(2000), nullable=False),
    Column("stable_version", String(200), nullable=False),
    Column("stable_url", String(2000), nullable=False),
    Column("plan", JSON, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("paused_from", String(20)),
    Column("step", Integer, nullable=False),
    Column("step_started_at", UtcDateTime, nullable=False),
    Column("hold_until", UtcDateTime, nullable=False),
    Column("looks", Integer, nullable=False),
    Column("route_version", Integer),
    Column("engine_state", JSON, nullable=False),
    Column("last_tick_at", UtcDateTime),
    Column("last_verdict", JSON),
    Column("incident_id", String(100)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(300), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("end_reason", Text),
)

# ---- evaluation runs -------------------------------------------------------------------------
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_NAME_CHARS), nullable=False, unique=True),
    Column("model", String(MAX_NAME_CHARS), nullable=False, index=True),
    Column("endpoint", String(2000), nullable=False),
    Column("golden_name", String(MAX_NAME_CHARS), nullable=False),
    Column("golden_version", Integer, nullable=False),
    Column("golden_hash", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    Column("params", JSON, nullable=False),
    Column("signatures", JSON, nullable=False),
    Column("corpus", JSON, nullable=False),
    Column("embedder", String(200)),
    Column("n_items", Integer, nullable=False),
    Column("n_answered", Integer, nullable=False),
    Column("n_failed", Integer, nullable=False),
    Column("n_cached", Integer, nullable=False),
    Column("n_requests", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

eval_items = Table(
    "eval_items",
    metadata,
    Column("run_id", Integer, ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(MAX_NAME_CHARS), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("reference", Text),
    Column("output", Text),
    Column("error", Text),
    Column("metrics", JSON, nullable=False),
    Column("violations", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("latency_ms", Float),
    Column("attempts", Integer, nullable=False),
    Column("cached", Boolean, nullable=False),
)

eval_generations = Table(
    "eval_generations",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(MAX_NAME_CHARS), nullable=False),
    Column("request", JSON, nullable=False),
    Column("output", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("usage", JSON),
    Column("endpoint", String(2000), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

eval_comparisons = Table(
    "eval_comparisons",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_a", Integer, ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False),
    Column("run_b", Integer, ForeignKey("eval_runs.id", ondelete="CASCADE"), nullable=False),
    Column("gate_name", String(MAX_NAME_CHARS), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_eval_comparisons_b", "run_b", "id"),
)

# ---- human review ----------------------------------------------------------------------------
review_queues = Table(
    "review_queues",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("rubric", JSON, nullable=False),
    Column("reviewers_per_item", Integer, nullable=False),
    Column("lease_minutes", Float, nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The API key that created the queue: it (and admin keys) may see progress and agreement.
    # None for a queue made without a key, or before queues had owners: admin keys only.
    Column("owner_key_id", Integer),
)

review_items = Table(
    "review_items",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "queue",
        String(200),
        ForeignKey("review_queues.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(10), nullable=False),
    Column("position", Integer, nullable=False),
    Column("source", String(10), nullable=False),
    Column("source_ref", String(400), nullable=False),
    Column("request_id", String(200)),
    Column("run_id", Integer),
    Column("model_version", String(200)),
    Column("plant_id", String(200)),
    Column("prompt", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("response_b", Text),
    Column("reference", Text),
    Column("pair", JSON),
    Column("gold", JSON),
    Column("meta", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("queue", "kind", "source_ref", name="uq_review_items_source"),
    Index("ix_review_items_queue_position", "queue", "position"),
)

review_assignments = Table(
    "review_assignments",
    metadata,
    Column(
        "item_id",
        String(32),
        ForeignKey("review_items.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("reviewer", String(100), primary_key=True),
    Column("assigned_at", UtcDateTime, nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "item_id",
        String(32),
        ForeignKey("review_items.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("queue", String(200), nullable=False, index=True),
    Column("reviewer", String(100), nullable=False),
    Column("answers", JSON, nullable=False),
    Column("decoded", JSON, nullable=False),
    Column("comment", Text),
    Column("seconds", Float),
    Column("origin", String(10), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("item_id", "reviewer", name="uq_reviews_item_reviewer"),
)

# ---- drift history ---------------------------------------------------------------------------
# A re-run of the same window replaces its points rather than adding new ones.
DRIFT_KEY_COLUMNS = (
    "kind",
    "signal",
    "scope",
    "model_version",
    "window_start",
    "window_end",
    "baseline",
    "method",
)

drift_results = Table(
    "drift_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),
    Column("signal", String(100), nullable=False),
    Column("scope", String(200), nullable=False, index=True),
    Column("model_version", String(200), nullable=False),
    Column("window_start", String(40), nullable=False, index=True),
    Column("window_end", String(40), nullable=False),
    Column("baseline", String(300), nullable=False),
    Column("method", String(100), nullable=False),
    Column("parent_method", String(100)),
    Column("run_at", String(40), nullable=False),
    Column("statistic", Float),
    Column("p_value", Float),
    Column("threshold", Float),
    Column("alpha", Float),
    Column("status", String(30), nullable=False),
    Column("n_baseline", Integer),
    Column("n_current", Integer),
    Column("baseline_detail", Text),
    Column("topics", Text),
    UniqueConstraint(*DRIFT_KEY_COLUMNS, name="uq_drift_result"),
)


# ---- report: the weekly packs sent ---------------------------------------------------------------
# One row per ISO week, written in the transaction that queues the pack's deliveries: a week is
# sent once (``modelwarden report send --force`` sends it again and counts ``sends``).
report_sends = Table(
    "report_sends",
    metadata,
    Column("week", String(10), primary_key=True),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime),
    Column("trigger", String(20), nullable=False),  # schedule, catch-up, manual
    Column("actor", String(300), nullable=False),
    Column("sends", Integer, nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("targets", JSON, nullable=False),
    Column("files", JSON, nullable=False),
    Column("headline", String(500), nullable=False),
)

# ---- leases: which instance runs the singleton work (the rollout controller and SOP) ---------
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # The fencing token: raised by one at each change of holder (governance/lease.py).
    Column("generation", Integer, nullable=False, server_default="0"),
)

# ---- the SOP policy in force: one for every instance on this state store, versioned ----------
policies = Table(
    "policies",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("sop_id", String(100), nullable=False),
    Column("policy", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source", String(500), nullable=False),
    Column("set_by", String(300), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)
