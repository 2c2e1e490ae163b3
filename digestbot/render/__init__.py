"""Rendering: what the reader sees, as email (HTML and text) and as RSS/Atom feeds.

Nothing here sends or records anything; :mod:`digestbot.deliver` queues and sends what
:func:`render_digest` returns.
"""

from .digest import RenderedDigest, digest_message_id, render_digest
from .feeds import feed_bytes_for, public_feeds, subscriber_feeds, write_feeds
from .links import (
    confirm_url,
    feed_urls,
    feedback_url,
    paper_url,
    preferences_url,
    unsubscribe_url,
)
from .message import build_message
from .templates import environment, get_template

__all__ = [
    "RenderedDigest",
    "build_message",
    "confirm_url",
    "digest_message_id",
    "environment",
    "feed_bytes_for",
    "feed_urls",
    "feedback_url",
    "get_template",
    "paper_url",
    "preferences_url",
    "public_feeds",
    "render_digest",
    "subscriber_feeds",
    "unsubscribe_url",
    "write_feeds",
]
