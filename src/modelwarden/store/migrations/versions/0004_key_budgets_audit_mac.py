"""Request budgets of API keys, and the keyed MAC of each audit entry (append-only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    have = set(sa.inspect(bind).get_table_names())
    if "api_key_budgets" not in have:
        op.create_table(
            "api_key_budgets",
            sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("per_minute", sa.Integer(), nullable=True),
            sa.Column("per_hour", sa.Integer(), nullable=True),
            sa.PrimaryKeyConstraint("key_id"),
        )
    if "audit_mac" not in have:
        op.create_table(
            "audit_mac",
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("mac", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
        )
    for what in ("update", "delete"):
        if bind.dialect.name == "sqlite":
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS audit_mac_no_{what} BEFORE {what.upper()} "
                "ON audit_mac BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )
        elif bind.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS audit_mac_no_{what} ON audit_mac")
            op.execute(
                f"CREATE TRIGGER audit_mac_no_{what} BEFORE {what.upper()} ON audit_mac "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
            )


def downgrade() -> None:
    op.drop_table("audit_mac")
    op.drop_table("api_key_budgets")
