"""Journey maps: every saved version of every map of the workspace.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journey_maps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("slug", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("map_type", sa.String(32), nullable=False),
        sa.Column("yaml", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("note", sa.Text),
        sa.UniqueConstraint("slug", "version", name="uq_journey_maps_slug_version"),
        sa.CheckConstraint("version >= 1", name="ck_journey_maps_version"),
    )
    op.create_index("ix_journey_maps_slug", "journey_maps", ["slug"])


def downgrade() -> None:
    op.drop_index("ix_journey_maps_slug", "journey_maps")
    op.drop_table("journey_maps")
