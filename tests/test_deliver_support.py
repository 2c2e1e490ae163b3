"""Builders shared by the delivery tests and bench/send.py (no tests here).

Messages are built with the stdlib (the render stage is not used: the outbox stores bytes),
and subscribers are inserted directly, as the store stores them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from digestbot.config import Config
from digestbot.deliver.outbox import Outgoing, enqueue_many
from digestbot.scoring.picks import Pick
from digestbot.store import Digest, Paper, Store, Subscriber

from .conftest import PUBLIC_MAIL, make_config
from .smtp_sink import SmtpSink, free_port

PERIOD = "2026-11-22/daily"
_PARAGRAPH = (
    "We study sparse mixture-of-experts language models trained on scientific text and "
    "show that routing by topic improves retrieval of related work. "
)


def make_message(
    recipient: str, *, size: int = 2_000, subject: str = "Your papers"
) -> EmailMessage:
    """A multipart/alternative digest of about ``size`` bytes, like the render stage's."""
    msg = EmailMessage()
    msg["From"] = "digestbot <digestbot@localhost>"
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="digestbot.localhost")
    body = (_PARAGRAPH * (size // (2 * len(_PARAGRAPH)) + 1))[: size // 2]
    msg.set_content(body)
    msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    return msg


def enqueue(
    session: Session,
    *,
    subscriber: Subscriber,
    period: str,
    message: bytes | None,
    message_id: str,
    subject: str,
    picks: Sequence[Pick],
    state: str = "queued",
) -> Digest | None:
    """One digest through outbox.enqueue_many (the pipeline queues many at once): its row,
    or None (and nothing written) if it exists."""
    one = Outgoing(subscriber, period, message, message_id, subject, picks, state)
    (digest_id,) = enqueue_many(session, [one])
    if digest_id is None:
        return None
    digest = session.get(Digest, digest_id)
    # what was just written, so reading it back does not need the session
    set_committed_value(digest, "message", message)
    return digest


def add_papers(store: Store, n: int = 3) -> list[str]:
    ids = [f"2611.{i:05d}" for i in range(n)]
    with store.session() as s:
        for pid in ids:
            if s.get(Paper, pid) is None:
                s.add(
                    Paper(
                        id=pid,
                        arxiv_id=pid,
                        title_key=pid,
                        title=f"Paper {pid}",
                        listed_on=date(2026, 11, 22),
                    )
                )
    return ids


def add_subscribers(store: Store, n: int, *, prefix: str = "reader") -> list[int]:
    rows = [
        {
            "email": f"{prefix}{i}@example.org",
            "email_key": f"{prefix}{i}@example.org",
            "feed_token": secrets.token_urlsafe(16),
            "pref_token": secrets.token_urlsafe(16),
        }
        for i in range(n)
    ]
    with store.session() as s:
        s.execute(Subscriber.__table__.insert(), rows)
        found = s.query(Subscriber.id).filter(Subscriber.email_key.like(f"{prefix}%")).all()
    return sorted(r[0] for r in found)


def seed_outbox(
    store: Store, n: int, *, size: int = 2_000, period: str = PERIOD, prefix: str = "reader"
) -> list[str]:
    """n subscribers, each with one queued digest holding 3 papers; returns the addresses."""
    papers = add_papers(store)
    ids = add_subscribers(store, n, prefix=prefix)
    picks = [Pick(p, 1.0 - i / 10, matched=("moe",)) for i, p in enumerate(papers)]
    addresses = []
    with store.session() as s:
        for sub in s.query(Subscriber).filter(Subscriber.id.in_(ids)).order_by(Subscriber.id):
            msg = make_message(sub.email, size=size)
            enqueue(
                s,
                subscriber=sub,
                period=period,
                message=msg.as_bytes(),
                message_id=msg["Message-ID"],
                subject=msg["Subject"],
                picks=picks,
            )
            addresses.append(sub.email)
    return addresses


def smtp_config(tmp_path: Path, store: Store | str, sink: SmtpSink | None, **kw: object) -> Config:
    """Settings that send ``store``'s outbox (a Store or its URL) over SMTP to ``sink``
    (None: a closed port)."""
    base: dict[str, object] = {
        "delivery__transport": "smtp",
        "smtp__host": "127.0.0.1",
        "smtp__port": sink.port if sink else free_port(),
        "smtp__timeout": 5.0,
        **PUBLIC_MAIL,
    }
    base.update(kw)
    return make_config(tmp_path, store if isinstance(store, str) else store.url, **base)
