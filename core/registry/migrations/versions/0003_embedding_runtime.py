"""embeddings record the runtime and precision that computed them

Revision ID: 0003
Revises: 0002

Every vector before this revision came from torch in fp32.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("embeddings") as batch:
        batch.add_column(
            sa.Column("runtime", sa.String(length=32), nullable=False, server_default="torch")
        )
        batch.add_column(
            sa.Column("precision", sa.String(length=8), nullable=False, server_default="fp32")
        )


def downgrade() -> None:
    with op.batch_alter_table("embeddings") as batch:
        batch.drop_column("precision")
        batch.drop_column("runtime")
