"""NBA feedback: reps accept or skip recommendations, with a reason.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nba_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hcp_id", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64)),
        sa.Column("content_id", sa.String(256)),
        sa.Column("team", sa.String(32)),
        sa.Column("as_of", sa.DateTime),
        sa.Column("send_at", sa.DateTime),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("note", sa.Text),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("decision IN ('accept', 'skip')", name="ck_nba_feedback_decision"),
    )
    op.create_index("ix_nba_feedback_hcp", "nba_feedback", ["hcp_id"])
    op.create_index("ix_nba_feedback_decided_at", "nba_feedback", ["decided_at"])


def downgrade() -> None:
    op.drop_index("ix_nba_feedback_decided_at", "nba_feedback")
    op.drop_index("ix_nba_feedback_hcp", "nba_feedback")
    op.drop_table("nba_feedback")
