"""one change log for routers and networks

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Renamed, not recreated: the sequence numbers agents already hold stay valid.
    with op.batch_alter_table("router_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_router_changes_router_id")
        batch_op.alter_column("router_id", new_column_name="resource_id")
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="router")
        )
    op.rename_table("router_changes", "changes")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index("ix_changes_resource_id", ["resource_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM changes WHERE kind != 'router'")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_resource_id")
        batch_op.drop_column("kind")
        batch_op.alter_column("resource_id", new_column_name="router_id")
    op.rename_table("changes", "router_changes")
    with op.batch_alter_table("router_changes", schema=None) as batch_op:
        batch_op.create_index("ix_router_changes_router_id", ["router_id"], unique=False)
