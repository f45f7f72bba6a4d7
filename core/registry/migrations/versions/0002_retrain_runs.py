"""retrain runs: the learning loop's resumable retrain journal

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrain_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("photos_moved", sa.Integer(), nullable=False),
        sa.Column("candidate_version_id", sa.Integer(), nullable=True),
        sa.Column("promoted", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["candidate_version_id"],
            ["model_versions.id"],
            name=op.f("fk_retrain_runs_candidate_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_runs")),
    )


def downgrade() -> None:
    op.drop_table("retrain_runs")
