"""The schema as release 0.1.0 made it: every state table, the audit head row, SQLite's triggers.

Release 0.1.0 created its tables with ``create_all`` and kept no version, so this revision
creates only the tables that are missing: on a data directory made by that release it adds
nothing and leaves every row where it is; on a new one it creates everything.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    if "api_keys" not in existing:
        op.create_table(
            "api_keys",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=200), nullable=True),
            sa.Column("role", sa.String(length=20), nullable=False),
            sa.Column("plant_id", sa.String(length=200), nullable=True),
            sa.Column("key_hash", sa.String(length=64), nullable=False),
            sa.Column("prefix", sa.String(length=16), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("key_hash"),
        )
    if "audit_head" not in existing:
        op.create_table(
            "audit_head",
            sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("at", sa.String(length=40), nullable=False),
            sa.Column("actor", sa.String(length=300), nullable=False),
            sa.Column("action", sa.String(length=100), nullable=False),
            sa.Column("subject", sa.String(length=300), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("evidence", sa.Text(), nullable=False),
            sa.Column("prev_hash", sa.String(length=64), nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
        )
        op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False)
        op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject"], unique=False)
    if "drift_results" not in existing:
        op.create_table(
            "drift_results",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("kind", sa.String(length=20), nullable=False),
            sa.Column("signal", sa.String(length=100), nullable=False),
            sa.Column("scope", sa.String(length=200), nullable=False),
            sa.Column("model_version", sa.String(length=200), nullable=False),
            sa.Column("window_start", sa.String(length=40), nullable=False),
            sa.Column("window_end", sa.String(length=40), nullable=False),
            sa.Column("baseline", sa.String(length=300), nullable=False),
            sa.Column("method", sa.String(length=100), nullable=False),
            sa.Column("parent_method", sa.String(length=100), nullable=True),
            sa.Column("run_at", sa.String(length=40), nullable=False),
            sa.Column("statistic", sa.Float(), nullable=True),
            sa.Column("p_value", sa.Float(), nullable=True),
            sa.Column("threshold", sa.Float(), nullable=True),
            sa.Column("alpha", sa.Float(), nullable=True),
            sa.Column("status", sa.String(length=30), nullable=False),
            sa.Column("n_baseline", sa.Integer(), nullable=True),
            sa.Column("n_current", sa.Integer(), nullable=True),
            sa.Column("baseline_detail", sa.Text(), nullable=True),
            sa.Column("topics", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint(
                "kind",
                "signal",
                "scope",
                "model_version",
                "window_start",
                "window_end",
                "baseline",
                "method",
                name="uq_drift_result",
            ),
        )
        op.create_index(op.f("ix_drift_results_scope"), "drift_results", ["scope"], unique=False)
        op.create_index(
            op.f("ix_drift_results_window_start"), "drift_results", ["window_start"], unique=False
        )
    if "eval_generations" not in existing:
        op.create_table(
            "eval_generations",
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("model", sa.String(length=200), nullable=False),
            sa.Column("request", sa.JSON(), nullable=False),
            sa.Column("output", sa.Text(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=False),
            sa.Column("usage", sa.JSON(), nullable=True),
            sa.Column("endpoint", sa.String(length=2000), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "eval_runs" not in existing:
        op.create_table(
            "eval_runs",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("model", sa.String(length=200), nullable=False),
            sa.Column("endpoint", sa.String(length=2000), nullable=False),
            sa.Column("golden_name", sa.String(length=200), nullable=False),
            sa.Column("golden_version", sa.Integer(), nullable=False),
            sa.Column("golden_hash", sa.String(length=64), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("signatures", sa.JSON(), nullable=False),
            sa.Column("corpus", sa.JSON(), nullable=False),
            sa.Column("embedder", sa.String(length=200), nullable=True),
            sa.Column("n_items", sa.Integer(), nullable=False),
            sa.Column("n_answered", sa.Integer(), nullable=False),
            sa.Column("n_failed", sa.Integer(), nullable=False),
            sa.Column("n_cached", sa.Integer(), nullable=False),
            sa.Column("n_requests", sa.Integer(), nullable=False),
            sa.Column("duration_s", sa.Float(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
        op.create_index(op.f("ix_eval_runs_model"), "eval_runs", ["model"], unique=False)
    if "gateway_routes" not in existing:
        op.create_table(
            "gateway_routes",
            sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(length=200), nullable=True),
            sa.Column("stable_version", sa.String(length=200), nullable=False),
            sa.Column("stable_url", sa.String(length=2000), nullable=False),
            sa.Column("canary_version", sa.String(length=200), nullable=True),
            sa.Column("canary_url", sa.String(length=2000), nullable=True),
            sa.Column("canary_weight", sa.Float(), nullable=False),
            sa.Column("canary_plants", sa.String(length=8000), nullable=False),
            sa.Column("shadow_version", sa.String(length=200), nullable=True),
            sa.Column("shadow_url", sa.String(length=2000), nullable=True),
            sa.Column("shadow_sample", sa.Float(), nullable=False),
            sa.Column("note", sa.String(length=2000), nullable=True),
            sa.PrimaryKeyConstraint("version"),
        )
    if "incident_steps" not in existing:
        op.create_table(
            "incident_steps",
            sa.Column("incident_id", sa.String(length=100), nullable=False),
            sa.Column("step", sa.String(length=50), nullable=False),
            sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("detail", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("incident_id", "step", name="pk_incident_steps"),
        )
    if "incidents" not in existing:
        op.create_table(
            "incidents",
            sa.Column("id", sa.String(length=100), nullable=False),
            sa.Column("key", sa.String(length=300), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("severity", sa.String(length=20), nullable=False),
            sa.Column("version", sa.String(length=200), nullable=False),
            sa.Column("stable_version", sa.String(length=200), nullable=True),
            sa.Column("rollout_id", sa.Integer(), nullable=True),
            sa.Column("rule_id", sa.String(length=200), nullable=False),
            sa.Column("trigger", sa.JSON(), nullable=False),
            sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("actor", sa.String(length=300), nullable=False),
            sa.Column("rca_dir", sa.String(length=2000), nullable=True),
            sa.Column("note", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_incidents_key"), "incidents", ["key"], unique=False)
        op.create_index(op.f("ix_incidents_status"), "incidents", ["status"], unique=False)
        op.create_index(op.f("ix_incidents_version"), "incidents", ["version"], unique=False)
    if "model_versions" not in existing:
        op.create_table(
            "model_versions",
            sa.Column("version", sa.String(length=200), nullable=False),
            sa.Column("endpoint", sa.String(length=2000), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(length=300), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("quarantine_reason", sa.Text(), nullable=True),
            sa.Column("notes", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("version"),
        )
        op.create_index(
            op.f("ix_model_versions_status"), "model_versions", ["status"], unique=False
        )
    if "notifications" not in existing:
        op.create_table(
            "notifications",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("incident_id", sa.String(length=100), nullable=False),
            sa.Column("channel", sa.String(length=20), nullable=False),
            sa.Column("target", sa.String(length=2000), nullable=False),
            sa.Column("payload", sa.JSON(), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("max_attempts", sa.Integer(), nullable=False),
            sa.Column("backoff_ms", sa.Integer(), nullable=False),
            sa.Column("timeout_ms", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("incident_id", "channel", "target", name="uq_notification"),
        )
        op.create_index(
            op.f("ix_notifications_incident_id"), "notifications", ["incident_id"], unique=False
        )
        op.create_index(op.f("ix_notifications_status"), "notifications", ["status"], unique=False)
    if "release_requests" not in existing:
        op.create_table(
            "release_requests",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("version", sa.String(length=200), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("requested_by_key", sa.Integer(), nullable=False),
            sa.Column("requested_by", sa.String(length=300), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("decided_by_key", sa.Integer(), nullable=True),
            sa.Column("decided_by", sa.String(length=300), nullable=True),
            sa.Column("evidence", sa.JSON(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            op.f("ix_release_requests_version"), "release_requests", ["version"], unique=False
        )
    if "review_queues" not in existing:
        op.create_table(
            "review_queues",
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("rubric", sa.JSON(), nullable=False),
            sa.Column("reviewers_per_item", sa.Integer(), nullable=False),
            sa.Column("lease_minutes", sa.Float(), nullable=False),
            sa.Column("params", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if "rollouts" not in existing:
        op.create_table(
            "rollouts",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("version", sa.String(length=200), nullable=False),
            sa.Column("canary_url", sa.String(length=2000), nullable=False),
            sa.Column("stable_version", sa.String(length=200), nullable=False),
            sa.Column("stable_url", sa.String(length=2000), nullable=False),
            sa.Column("plan", sa.JSON(), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("paused_from", sa.String(length=20), nullable=True),
            sa.Column("step", sa.Integer(), nullable=False),
            sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("hold_until", sa.DateTime(timezone=True), nullable=False),
            sa.Column("looks", sa.Integer(), nullable=False),
            sa.Column("route_version", sa.Integer(), nullable=True),
            sa.Column("engine_state", sa.JSON(), nullable=False),
            sa.Column("last_tick_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_verdict", sa.JSON(), nullable=True),
            sa.Column("incident_id", sa.String(length=100), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(length=300), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("end_reason", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_rollouts_status"), "rollouts", ["status"], unique=False)
        op.create_index(op.f("ix_rollouts_version"), "rollouts", ["version"], unique=False)
    if "version_evidence" not in existing:
        op.create_table(
            "version_evidence",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("version", sa.String(length=200), nullable=False),
            sa.Column("kind", sa.String(length=100), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("actor", sa.String(length=300), nullable=False),
            sa.Column("data", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            op.f("ix_version_evidence_version"), "version_evidence", ["version"], unique=False
        )
    if "eval_comparisons" not in existing:
        op.create_table(
            "eval_comparisons",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("run_a", sa.Integer(), nullable=False),
            sa.Column("run_b", sa.Integer(), nullable=False),
            sa.Column("gate_name", sa.String(length=200), nullable=False),
            sa.Column("passed", sa.Boolean(), nullable=False),
            sa.Column("result", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["run_a"], ["eval_runs.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["run_b"], ["eval_runs.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_eval_comparisons_b", "eval_comparisons", ["run_b", "id"], unique=False)
    if "eval_items" not in existing:
        op.create_table(
            "eval_items",
            sa.Column("run_id", sa.Integer(), nullable=False),
            sa.Column("item_id", sa.String(length=200), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("prompt", sa.Text(), nullable=False),
            sa.Column("reference", sa.Text(), nullable=True),
            sa.Column("output", sa.Text(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("metrics", sa.JSON(), nullable=False),
            sa.Column("violations", sa.JSON(), nullable=False),
            sa.Column("tags", sa.JSON(), nullable=False),
            sa.Column("details", sa.JSON(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("cached", sa.Boolean(), nullable=False),
            sa.ForeignKeyConstraint(["run_id"], ["eval_runs.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("run_id", "item_id"),
        )
    if "review_items" not in existing:
        op.create_table(
            "review_items",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("queue", sa.String(length=200), nullable=False),
            sa.Column("kind", sa.String(length=10), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("source", sa.String(length=10), nullable=False),
            sa.Column("source_ref", sa.String(length=400), nullable=False),
            sa.Column("request_id", sa.String(length=200), nullable=True),
            sa.Column("run_id", sa.Integer(), nullable=True),
            sa.Column("model_version", sa.String(length=200), nullable=True),
            sa.Column("plant_id", sa.String(length=200), nullable=True),
            sa.Column("prompt", sa.Text(), nullable=False),
            sa.Column("response", sa.Text(), nullable=False),
            sa.Column("response_b", sa.Text(), nullable=True),
            sa.Column("reference", sa.Text(), nullable=True),
            sa.Column("pair", sa.JSON(), nullable=True),
            sa.Column("gold", sa.JSON(), nullable=True),
            sa.Column("meta", sa.JSON(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["queue"], ["review_queues.name"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("queue", "kind", "source_ref", name="uq_review_items_source"),
        )
        op.create_index(
            "ix_review_items_queue_position", "review_items", ["queue", "position"], unique=False
        )
    if "review_assignments" not in existing:
        op.create_table(
            "review_assignments",
            sa.Column("item_id", sa.String(length=32), nullable=False),
            sa.Column("reviewer", sa.String(length=100), nullable=False),
            sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("item_id", "reviewer"),
        )
    if "reviews" not in existing:
        op.create_table(
            "reviews",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("item_id", sa.String(length=32), nullable=False),
            sa.Column("queue", sa.String(length=200), nullable=False),
            sa.Column("reviewer", sa.String(length=100), nullable=False),
            sa.Column("answers", sa.JSON(), nullable=False),
            sa.Column("decoded", sa.JSON(), nullable=False),
            sa.Column("comment", sa.Text(), nullable=True),
            sa.Column("seconds", sa.Float(), nullable=True),
            sa.Column("origin", sa.String(length=10), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("item_id", "reviewer", name="uq_reviews_item_reviewer"),
        )
        op.create_index(op.f("ix_reviews_queue"), "reviews", ["queue"], unique=False)
    audit_head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.Integer),
        sa.column("hash", sa.String),
    )
    if bind.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar_one() == 0:
        op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    if bind.dialect.name == "sqlite":
        for what in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{what} BEFORE {what.upper()} ON "
                "audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )


def downgrade() -> None:
    for name in (
        "reviews",
        "review_assignments",
        "review_items",
        "eval_items",
        "eval_comparisons",
        "version_evidence",
        "rollouts",
        "review_queues",
        "release_requests",
        "notifications",
        "model_versions",
        "incidents",
        "incident_steps",
        "gateway_routes",
        "eval_runs",
        "eval_generations",
        "drift_results",
        "audit_log",
        "audit_head",
        "api_keys",
    ):
        op.drop_table(name)
