"""The audit log refuses UPDATE and DELETE on PostgreSQL too, as SQLite's triggers do.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has had its triggers since the first revision
    op.execute(
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$ LANGUAGE plpgsql"
    )
    for what in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{what} BEFORE {what.upper()} ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for what in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{what} ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
