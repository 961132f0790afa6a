"""network segments

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Networks made before this get their rows when the server starts (Segments.adopt):
    # drawing a VNI needs the configured range, which a migration does not know.
    op.create_table(
        "network_segments",
        sa.Column("network_type", sa.String(length=16), nullable=False),
        sa.Column("physical_network", sa.String(length=64), nullable=False),
        sa.Column("segmentation_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("network_type", "physical_network", "segmentation_id"),
        sa.UniqueConstraint("network_id"),
    )


def downgrade() -> None:
    op.drop_table("network_segments")
