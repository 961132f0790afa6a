"""instance ports' changes, by host

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_changes_host_seq", ["host", "seq"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM changes WHERE kind = 'port'")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_host_seq")
        batch_op.drop_column("host")
