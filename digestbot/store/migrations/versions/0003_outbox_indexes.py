"""outbox indexes: claims read each due state in id order; prune reads by age

Revision ID: 0002_simplify
Revises: 0002_mailbox (chained when main was merged in)
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_simplify"
down_revision: str | None = "0002_mailbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.create_index("ix_digests_state_id", ["state", "id"], unique=False)
        batch_op.create_index("ix_digests_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("sent_papers", schema=None) as batch_op:
        batch_op.create_index("ix_sent_papers_sent_at", ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sent_papers", schema=None) as batch_op:
        batch_op.drop_index("ix_sent_papers_sent_at")
    with op.batch_alter_table("digests", schema=None) as batch_op:
        batch_op.drop_index("ix_digests_created_at")
        batch_op.drop_index("ix_digests_state_id")
