"""Delivery: the outbox of digests and the transports that carry them (SMTP, Maildir, files).

The outbox stores finished message bytes, so delivery never depends on rendering again.
"""

from .outbox import (
    Job,
    Outcome,
    Outgoing,
    claim,
    count_due,
    enqueue_many,
    list_digests,
    release,
    requeue,
    state_counts,
)
from .sender import SendReport, send_due, send_now
from .transports import (
    FileTransport,
    MaildirTransport,
    SendFailure,
    Transport,
    make_transport,
)
from .worker import run_worker

__all__ = [
    "FileTransport",
    "Job",
    "MaildirTransport",
    "Outcome",
    "Outgoing",
    "SendFailure",
    "SendReport",
    "Transport",
    "claim",
    "count_due",
    "enqueue_many",
    "list_digests",
    "make_transport",
    "release",
    "requeue",
    "run_worker",
    "send_due",
    "send_now",
    "state_counts",
]
