"""The schema: papers, dumps, subscribers, feedback, and the outbox of digests.

Every change here needs a migration in ``migrations/versions``; ``tests/test_store.py``
checks that the migrations and these models agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

from .. import clock


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use digestbot.clock.now()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Paper(Base):
    __tablename__ = "papers"

    # arXiv id when any source gave one, else "t" + a hash of the normalised title.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    arxiv_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    title_key: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str] | None] = mapped_column(JSON)
    author_count: Mapped[int | None] = mapped_column(Integer)
    organization: Mapped[str | None] = mapped_column(String(200))
    published_on: Mapped[date | None] = mapped_column(Date)
    listed_on: Mapped[date | None] = mapped_column(Date, index=True)
    upvotes: Mapped[int | None] = mapped_column(Integer)
    comments: Mapped[int | None] = mapped_column(Integer)
    links: Mapped[list[str]] = mapped_column(JSON, default=list)
    github_url: Mapped[str | None] = mapped_column(String(500))
    github_stars: Mapped[int | None] = mapped_column(Integer)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    sightings: Mapped[list[Sighting]] = relationship(
        back_populates="paper", cascade="all, delete-orphan"
    )


class Dump(Base):
    __tablename__ = "dumps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(32))
    listed_on: Mapped[date | None] = mapped_column(Date)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    entries: Mapped[int] = mapped_column(Integer, default=0)
    papers_new: Mapped[int] = mapped_column(Integer, default=0)
    papers_updated: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | failed
    error: Mapped[str | None] = mapped_column(Text)


class Sighting(Base):
    """One listing of a paper in one dump; a paper keeps every sighting."""

    __tablename__ = "sightings"

    paper_id: Mapped[str] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    dump_id: Mapped[int] = mapped_column(
        ForeignKey("dumps.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)
    listed_on: Mapped[date | None] = mapped_column(Date)
    upvotes: Mapped[int | None] = mapped_column(Integer)
    comments: Mapped[int | None] = mapped_column(Integer)

    paper: Mapped[Paper] = relationship(back_populates="sightings")


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # lower-cased address: duplicates are found case-insensitively on every backend
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    frequency: Mapped[str] = mapped_column(String(8), default="daily")  # daily | weekly
    weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday, for weekly
    send_hour: Mapped[int] = mapped_column(Integer, default=8)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    max_items: Mapped[int] = mapped_column(Integer, default=10)
    min_score: Mapped[float] = mapped_column(Float, default=0.0)
    formats: Mapped[str] = mapped_column(String(8), default="email")  # email | rss | both
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    feed_token: Mapped[str] = mapped_column(String(64), unique=True)
    pref_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_period: Mapped[str | None] = mapped_column(String(32))
    bounced_reason: Mapped[str | None] = mapped_column(Text)
    # temporary bounces (4.x.x DSNs) read from the bounce mailbox; at
    # mailbox.soft_bounce_limit the reader is marked bounced
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # a fresh random value each time the address becomes pending: confirmation links carry
    # it, so a link from an earlier request never confirms a later one; cleared on confirm
    confirm_nonce: Mapped[str | None] = mapped_column(String(64))
    # what the anonymous subscribe form asked for, applied only once the owner confirms
    pending_prefs: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Feedback(Base):
    """A reader's like (+1) or dislike (-1) of a paper; feeds the Rocchio profile."""

    __tablename__ = "feedback"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[str] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class DigestMessage(Base):
    """A digest's finished message bytes, in a table of their own.

    The outbox row changes several times while it is sent (claim, lease renewals, result),
    and SQLite rewrites a whole row, overflow pages and all, on every update: with the ~16 KB
    message in the row, each of those small updates wrote the message again. Written once
    by enqueue, never changed.
    """

    __tablename__ = "digest_messages"

    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True
    )
    message: Mapped[bytes] = mapped_column(LargeBinary)


class Digest(Base):
    """The outbox: one row per subscriber and digest period.

    states: queued -> sending -> sent; sending -> retry -> sending; -> failed (permanent);
    feed_only for rss-only readers (recorded so feeds and "already sent" see it).
    ``message`` (read-only, loaded on first access) is the row's :class:`DigestMessage`, None
    for a feed_only digest; enqueue writes it.
    """

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "period", name="uq_digests_subscriber_period"),
        Index("ix_digests_state_next", "state", "next_attempt_at"),
        # claims read each due state in id order (outbox._candidates)
        Index("ix_digests_state_id", "state", "id"),
        Index("ix_digests_created_at", "created_at"),  # db prune
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    period: Mapped[str] = mapped_column(String(32))  # 2026-11-22/daily, 2026-W47/weekly
    state: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    message_id: Mapped[str] = mapped_column(String(255))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    message: Mapped[bytes | None] = column_property(
        select(DigestMessage.message)
        .where(DigestMessage.digest_id == id)
        .correlate_except(DigestMessage)
        .scalar_subquery(),
        deferred=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    items: Mapped[list[DigestItem]] = relationship(
        back_populates="digest", cascade="all, delete-orphan", order_by="DigestItem.rank"
    )


class DigestItem(Base):
    __tablename__ = "digest_items"

    digest_id: Mapped[int] = mapped_column(
        ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True
    )
    paper_id: Mapped[str] = mapped_column(
        ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    why: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    digest: Mapped[Digest] = relationship(back_populates="items")


class UsedToken(Base):
    """Single-use tokens (confirmation links) that have been spent."""

    __tablename__ = "used_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Meta(Base):
    """Small key/value state, e.g. the scoring vocabulary's fingerprint."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class PaperEmbedding(Base):
    """A paper's sentence embedding (scoring.semantic): float32 bytes, unit length, computed
    once per paper and model (a different model directory re-embeds)."""

    __tablename__ = "paper_embeddings"

    paper_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True
    )
    # the model's folder name and width: vectors of another model are never mixed in
    model: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
