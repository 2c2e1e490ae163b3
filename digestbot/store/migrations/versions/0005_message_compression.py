"""digest_messages.message compressed with lz4 on PostgreSQL (no change on SQLite)

PostgreSQL compresses large values with pglz by default, in the server process, at the
write: queueing a run's 50 KB messages cost about five times more with it than with lz4,
which also compresses them to about the same size.

Revision ID: 0005_message_compression
Revises: 0004_github_stars
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0005_message_compression"
down_revision: str | None = "0004_github_stars"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# lz4 exists from PostgreSQL 14, when the server was built with it: the setting's values say
_HAS_LZ4 = (
    "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
    "AND 'lz4' = ANY(enumvals)"
)


def _set(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(text(_HAS_LZ4)).scalar():
        op.execute(f"ALTER TABLE digest_messages ALTER COLUMN message SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("pglz")
