"""paper embeddings: one float32 vector per paper for scoring.semantic

Revision ID: 0006_embeddings
Revises: 0005_message_compression
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_embeddings"
down_revision: str | None = "0005_message_compression"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paper_embeddings",
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_paper_embeddings_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("paper_id", name=op.f("pk_paper_embeddings")),
    )


def downgrade() -> None:
    op.drop_table("paper_embeddings")
