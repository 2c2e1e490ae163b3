"""sent_papers goes: a sent digest's items already say which papers its reader received

Every group of results the sender committed also copied its digests' papers into
sent_papers, three foreign-key checks a row (on PostgreSQL a share lock on each paper,
subscriber and digest row), for what digest_items of the digests in state 'sent' hold
anyway, pruned with them at store.retention_days. Scoring reads those.

Revision ID: 0007_no_sent_papers
Revises: 0006_embeddings
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import digestbot.store.models

revision: str = "0007_no_sent_papers"
down_revision: str | None = "0006_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("sent_papers")


def downgrade() -> None:
    op.create_table(
        "sent_papers",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("sent_at", digestbot.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["digests.id"],
            name=op.f("fk_sent_papers_digest_id_digests"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_sent_papers_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_sent_papers_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_id", name=op.f("pk_sent_papers")),
    )
    with op.batch_alter_table("sent_papers", schema=None) as batch_op:
        batch_op.create_index("ix_sent_papers_sent_at", ["sent_at"], unique=False)
    # what the sender would have recorded: the papers of the sent digests
    op.execute(
        "INSERT INTO sent_papers (subscriber_id, paper_id, digest_id, sent_at) "
        "SELECT d.subscriber_id, i.paper_id, MAX(d.id), MAX(COALESCE(d.sent_at, d.created_at)) "
        "FROM digests d JOIN digest_items i ON i.digest_id = d.id WHERE d.state = 'sent' "
        "GROUP BY d.subscriber_id, i.paper_id"
    )
