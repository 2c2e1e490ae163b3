"""The states digestbot records, named once: the store keeps them, the CLI offers them as
choices (without importing the store), the web front and the metrics report them."""

from __future__ import annotations

# a subscriber's status, and how they take their digests
STATUSES = ("pending", "active", "unsubscribed", "bounced")
FORMATS = ("email", "rss", "both")

# a digest's state in the outbox
DIGEST_STATES = ("queued", "sending", "sent", "retry", "failed", "feed_only")
