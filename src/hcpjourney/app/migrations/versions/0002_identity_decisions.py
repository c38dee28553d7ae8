"""Identity review: data-steward decisions on record pairs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair_id", sa.String(64), nullable=False),
        sa.Column("record_id_l", sa.String(256), nullable=False),
        sa.Column("record_id_r", sa.String(256), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("decision IN ('match', 'distinct')", name="ck_identity_decision"),
    )
    op.create_index("ix_identity_decisions_pair", "identity_decisions", ["pair_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_decisions_pair", "identity_decisions")
    op.drop_table("identity_decisions")
