"""The weekly packs sent: one row per ISO week, so that a week is never sent twice.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "report_sends" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "report_sends",
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("headline", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("week"),
    )


def downgrade() -> None:
    op.drop_table("report_sends")
