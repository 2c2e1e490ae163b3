"""papers.github_stars: the code repository's star count, when a listing gives it

Revision ID: 0004_github_stars
Revises: 0002_simplify
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_github_stars"
down_revision: str | None = "0002_simplify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_stars", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_column("github_stars")
