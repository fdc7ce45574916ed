"""Policies: the SOP policy in force, stored once for every instance on the state store.

Before this revision each data directory's ``policy.yaml`` was the policy its instance enforced,
so several ``serve`` instances on one database could enforce different rules. The newest row of
``policies`` is now the policy in force; the file is the fallback while the table is empty.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "policies" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "policies",
        sa.Column("version", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sop_id", sa.String(length=100), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("set_by", sa.String(length=300), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )


def downgrade() -> None:
    op.drop_table("policies")
