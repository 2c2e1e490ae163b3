"""Subscribers and their feedback: adding, changing, finding, removing.

Every function takes an open session (``with store.session() as s``) and validates what it
is given; bad input raises :class:`~digestbot.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ... import clock
from ...errors import NotFoundError, ValidationError
from ..models import Feedback, Paper, Subscriber
from .validate import (
    CHECKS,
    email_key,
    parse_ids,
    validate_email,
)

EDITABLE = tuple(CHECKS)


def new_token() -> str:
    """32 URL-safe characters (192 random bits) that never start with "-": operators pass
    tokens on the command line (`subscribers show TOKEN`), where a leading dash reads as an
    option."""
    while (token := secrets.token_urlsafe(24)).startswith("-"):
        pass
    return token


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (any case), or None."""
    key = email_key(email.strip())
    found = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if found is None and "@" in key:
        # the stored address is normalised (IDNA domain...); try the normalised form too
        try:
            normal = email_key(validate_email(email))
        except ValidationError:
            return None
        if normal != key:
            found = session.scalar(select(Subscriber).where(Subscriber.email_key == normal))
    return found


def get_subscriber(session: Session, key: str | int) -> Subscriber:
    """By id, address, feed token or preference token."""
    found: Subscriber | None = None
    text = str(key).strip()
    if isinstance(key, int) or text.isdigit():
        found = session.get(Subscriber, int(text))
    elif "@" in text:
        found = find_subscriber(session, text)
    elif text:
        found = session.scalar(
            select(Subscriber).where(
                (Subscriber.feed_token == text) | (Subscriber.pref_token == text)
            )
        )
    if found is None:
        raise NotFoundError(
            f"no subscriber {text!r}",
            field="subscriber",
            hint="Give an id or address from `digestbot subscribers list`.",
        )
    return found


def _check_papers(session: Session, ids: Sequence[str], field: str) -> list[str]:
    ids = parse_ids(ids)
    if not ids:
        return []
    known = set(session.scalars(select(Paper.id).where(Paper.id.in_(ids))))
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValidationError(
            f"unknown paper id{'s' if len(missing) > 1 else ''}: {', '.join(missing[:5])}",
            field=field,
            hint="Use ids from `digestbot rank` or the papers in a digest.",
        )
    return ids


def _check_duplicate(session: Session, email: str, exclude: int | None = None) -> None:
    query = select(Subscriber.id).where(Subscriber.email_key == email_key(email))
    if exclude is not None:
        query = query.where(Subscriber.id != exclude)
    if session.scalar(query) is not None:
        raise ValidationError(
            f"{email} is already subscribed",
            field="email",
            hint="Use `digestbot subscribers update` to change an existing subscriber.",
        )


def _need_interests(keywords: Sequence[str], has_likes: bool) -> None:
    if not keywords and not has_likes:
        raise ValidationError(
            "no keywords and no liked papers: nothing to choose papers by",
            field="keywords",
            hint="Give a few comma-separated phrases, e.g. --keywords "
            "'sparse autoencoders, mechanistic interpretability', or like some papers.",
        )


def add_subscriber(
    session: Session,
    *,
    email: str,
    name: str = "",
    keywords: str | Sequence[str] = (),
    frequency: str = "daily",
    weekday: int | str = 0,
    send_hour: int = 8,
    timezone: str = "UTC",
    max_items: int = 10,
    min_score: float = 0.0,
    formats: str = "email",
    status: str = "active",
    liked: Sequence[str] = (),
    disliked: Sequence[str] = (),
) -> Subscriber:
    """Validate everything, then add the subscriber and their liked/disliked papers."""
    given: dict[str, Any] = {
        "email": email,
        "name": name,
        "keywords": keywords,
        "frequency": frequency,
        "weekday": weekday,
        "send_hour": send_hour,
        "timezone": timezone,
        "max_items": max_items,
        "min_score": min_score,
        "formats": formats,
        "status": status,
    }
    values = {key: CHECKS[key](value) for key, value in given.items()}
    to_like = _check_papers(session, liked, "liked")
    to_dislike = _check_papers(session, disliked, "disliked")
    both = set(to_like) & set(to_dislike)
    if both:
        raise ValidationError(
            f"paper {sorted(both)[0]} is both liked and disliked",
            field="disliked",
            hint="Like or dislike a paper, not both.",
        )
    _need_interests(values["keywords"], bool(to_like))
    _check_duplicate(session, values["email"])
    now = clock.now()
    subscriber = Subscriber(
        **values,
        email_key=email_key(values["email"]),
        feed_token=new_token(),
        pref_token=new_token(),
        created_at=now,
        updated_at=now,
        confirmed_at=now if values["status"] == "active" else None,
    )
    session.add(subscriber)
    session.flush()
    for value, ids in ((1, to_like), (-1, to_dislike)):
        session.add_all(Feedback(subscriber_id=subscriber.id, paper_id=i, value=value) for i in ids)
    session.flush()
    return subscriber


def update_subscriber(session: Session, subscriber: Subscriber, **changes: Any) -> Subscriber:
    """Change fields (same checks as adding); ``liked=``/``disliked=`` add feedback."""
    liked = changes.pop("liked", ())
    disliked = changes.pop("disliked", ())
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationError(
            f"cannot change {', '.join(unknown)}",
            field=unknown[0],
            hint=f"Fields that can be changed: {', '.join(EDITABLE)}.",
        )
    values = {key: CHECKS[key](value) for key, value in changes.items()}
    to_like = _check_papers(session, liked, "liked")
    to_dislike = _check_papers(session, disliked, "disliked")
    if "email" in values:
        _check_duplicate(session, values["email"], exclude=subscriber.id)
    keywords = values.get("keywords", subscriber.keywords or [])
    has_likes = bool(to_like) or bool(set(liked_ids(session, subscriber)) - set(to_dislike))
    _need_interests(keywords, has_likes)
    for key, value in values.items():
        setattr(subscriber, key, value)
    if "email" in values:
        subscriber.email_key = email_key(values["email"])
    if values.get("status") == "active" and subscriber.confirmed_at is None:
        subscriber.confirmed_at = clock.now()
    for value, ids in ((1, to_like), (-1, to_dislike)):
        for paper_id in ids:
            set_feedback(session, subscriber, paper_id, value)
    subscriber.updated_at = clock.now()
    session.flush()
    return subscriber


def rotate_tokens(
    session: Session, subscriber: Subscriber, *, pref_token: str | None = None
) -> tuple[str, str]:
    """Give the subscriber fresh random tokens (the preference token given, if one is);
    returns the old ``(pref_token, feed_token)``. Every link signed over the old preference
    token (preferences, unsubscribe, feedback) and the old feed address stop working."""
    old = (subscriber.pref_token, subscriber.feed_token)
    subscriber.pref_token = pref_token or new_token()
    subscriber.feed_token = new_token()
    subscriber.updated_at = clock.now()
    session.flush()
    return old


def remove_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Delete the subscriber with their feedback, digests and sent-paper records."""
    session.delete(subscriber)
    session.flush()


def set_feedback(session: Session, subscriber: Subscriber, paper_id: str, value: int) -> None:
    """+1 like, -1 dislike, 0 clears; a later opinion replaces an earlier one."""
    if value not in (-1, 0, 1):
        raise ValidationError(
            f"feedback must be 1, 0 or -1, not {value!r}",
            field="value",
            hint="1 likes a paper, -1 dislikes it, 0 clears the opinion.",
        )
    current = session.get(Feedback, (subscriber.id, paper_id))
    if value == 0:
        if current is not None:
            session.delete(current)
            session.flush()
        return
    if current is None:
        _check_papers(session, [paper_id], "liked" if value > 0 else "disliked")
        session.add(Feedback(subscriber_id=subscriber.id, paper_id=paper_id, value=value))
    else:
        current.value = value
        current.created_at = clock.now()
    session.flush()


def _feedback_ids(session: Session, subscriber: Subscriber, value: int) -> list[str]:
    return list(
        session.scalars(
            select(Feedback.paper_id)
            .where(Feedback.subscriber_id == subscriber.id, Feedback.value == value)
            .order_by(Feedback.created_at, Feedback.paper_id)
        )
    )


def liked_ids(session: Session, subscriber: Subscriber) -> list[str]:
    """Paper ids the subscriber liked, oldest opinion first."""
    return _feedback_ids(session, subscriber, 1)


def disliked_ids(session: Session, subscriber: Subscriber) -> list[str]:
    return _feedback_ids(session, subscriber, -1)


def as_dict(session: Session, subscriber: Subscriber, *, secrets_too: bool = False) -> dict:
    """A JSON-ready view; tokens only when asked, since they work as passwords."""
    data: dict[str, Any] = {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "keywords": list(subscriber.keywords or []),
        "liked": liked_ids(session, subscriber),
        "disliked": disliked_ids(session, subscriber),
        "frequency": subscriber.frequency,
        "weekday": subscriber.weekday,
        "send_hour": subscriber.send_hour,
        "timezone": subscriber.timezone,
        "max_items": subscriber.max_items,
        "min_score": subscriber.min_score,
        "formats": subscriber.formats,
        "status": subscriber.status,
        # why mail stopped: a refusal at send time or a bounce read from the mailbox
        "bounced_reason": subscriber.bounced_reason,
        "soft_bounces": subscriber.soft_bounces or 0,
    }
    for name in ("created_at", "updated_at", "last_digest_at"):
        moment = getattr(subscriber, name)
        data[name] = moment.isoformat() if moment else None
    if secrets_too:
        data["feed_token"] = subscriber.feed_token
        data["pref_token"] = subscriber.pref_token
    return data
