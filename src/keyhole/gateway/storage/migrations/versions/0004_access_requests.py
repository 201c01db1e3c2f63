"""Just-in-time access: requests for a role on a service, their approvals, and the grant a session
was opened under.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ttl", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("granted_until", sa.Float(), nullable=True),
    )
    op.create_table(
        "access_approvals",
        sa.Column(
            "request_id", sa.String(32), sa.ForeignKey("access_requests.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("approver_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("debug_sessions") as batch:
        batch.add_column(sa.Column("grant_id", sa.String(32), nullable=True, index=True))


def downgrade() -> None:
    with op.batch_alter_table("debug_sessions") as batch:
        batch.drop_column("grant_id")
    op.drop_table("access_approvals")
    op.drop_table("access_requests")
