"""Review queue owners: the API key that created a queue sees its progress and agreement.

Queues made before this revision keep no owner, so only admin keys see theirs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("review_queues")}
    if "owner_key_id" in columns:
        return
    op.add_column("review_queues", sa.Column("owner_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_queues") as batch:
        batch.drop_column("owner_key_id")
