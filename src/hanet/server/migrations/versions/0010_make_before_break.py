"""make before break: dead agents noted, places stamped

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dead_at", sa.DateTime(), nullable=True))
    # Places made before this are as old as the upgrade: none is newer than another.
    # SQLite adds no column with a non-constant default in place: the table is copied.
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "router_agent_bindings", schema=None, recreate="always" if sqlite else "auto"
    ) as batch_op:
        batch_op.add_column(
            sa.Column(
                "placed_at",
                sa.DateTime(),
                nullable=False,
                server_default=sa.func.current_timestamp(),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("router_agent_bindings", schema=None) as batch_op:
        batch_op.drop_column("placed_at")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("dead_at")
