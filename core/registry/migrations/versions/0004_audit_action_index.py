"""audit log: an index on (action, at), for the worker's metrics

Every scrape counts the retrain checks by action and finds the last one's time; without it
each scrape would read the whole audit log, which grows with every review.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_action_at", table_name="audit_log")
