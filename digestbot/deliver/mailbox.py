"""`digestbot mailbox`: read the bounce mailbox over IMAP and apply what arrived.

Every mail in ``mailbox.folder`` is fetched (without marking it read), classified by
:mod:`.bounces` and applied in a transaction of its own, then moved: to
``mailbox.processed_folder`` when it was applied, to ``mailbox.unknown_folder`` when it is
not a DSN or unsubscribe request we can match (for a person to read). One bad mail fails
alone; a mail whose change could not be written to the store stays where it is and is read
again next time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from sqlalchemy.exc import SQLAlchemyError

from ..config import Config
from ..errors import ConfigError, DeliveryError, DigestbotError
from ..store import Store
from . import bounces
from .tls import ServerSettings, client_context

log = logging.getLogger(__name__)

# Mails fetched per round trip: bounded memory whatever the backlog.
FETCH_BATCH = 50


@dataclass
class MailboxReport:
    """What one reading of the mailbox did."""

    read: int = 0
    processed: int = 0
    unknown: int = 0
    failed: int = 0
    bounced: int = 0  # readers marked bounced (hard bounces, or soft ones at the limit)
    soft_bounces: int = 0
    unsubscribed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def did_something(self) -> bool:
        return self.read > 0

    @property
    def failures(self) -> int:
        return self.failed

    def summary_lines(self) -> list[str]:
        return [
            f"mailbox: {self.read} read, {self.processed} processed, {self.unknown} unknown, "
            f"{self.failed} failed; {self.bounced} bounced, {self.soft_bounces} soft bounces, "
            f"{self.unsubscribed} unsubscribed"
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class MailboxSettings(ServerSettings):
    folder: str
    processed: str
    unknown: str

    @classmethod
    def from_config(cls, config: Config) -> MailboxSettings:
        c = config.mailbox
        if not c.host:
            raise ConfigError(
                "no bounce mailbox is set",
                field="mailbox.host",
                hint="Set [mailbox] host, username and DIGESTBOT_MAILBOX_PASSWORD (or "
                "mailbox.password_file) to read bounces and unsubscribe mails.",
            )
        if not c.username or not c.password:
            raise ConfigError(
                "the bounce mailbox needs a user name and a password",
                field="mailbox.username" if not c.username else "mailbox.password",
                hint="Set mailbox.username, and DIGESTBOT_MAILBOX_PASSWORD or "
                "mailbox.password_file (a file only you can read, chmod 600).",
            )
        return cls.from_section(
            c, folder=c.folder, processed=c.processed_folder, unknown=c.unknown_folder
        )


@contextmanager
def connect(s: MailboxSettings) -> Iterator[IMAPClient]:
    """A logged-in IMAP connection; DeliveryError naming the setting when it cannot be."""
    where = f"{s.host}:{s.port}"
    context = client_context("mailbox", s.security, s.cafile)
    try:
        client = IMAPClient(
            s.host, port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout
        )
    except (OSError, IMAPClientError) as exc:
        raise DeliveryError(
            f"cannot connect to the mailbox at {where}: {exc}",
            field="mailbox.host",
            hint="Check mailbox.host, mailbox.port and mailbox.security, and that the "
            "server is up; the mail waits there until the next try.",
        ) from None
    try:
        if s.security == "starttls":
            client.starttls(context)
        client.login(s.username, s.password)
    except LoginError as exc:
        client.shutdown()
        raise DeliveryError(
            f"{where} refused the login for {s.username!r}: {exc}",
            field="mailbox.username",
            hint="Check mailbox.username and the password (DIGESTBOT_MAILBOX_PASSWORD or "
            "mailbox.password_file).",
        ) from None
    except (OSError, IMAPClientError) as exc:
        client.shutdown()
        raise DeliveryError(
            f"{where}: {exc}", field="mailbox.security", hint="Check mailbox.security and port."
        ) from None
    try:
        yield client
    finally:
        try:
            client.logout()
        except (OSError, IMAPClientError):
            client.shutdown()


def _move(client: IMAPClient, uid: int, folder: str) -> None:
    if client.has_capability("MOVE"):
        client.move([uid], folder)
        return
    client.copy([uid], folder)
    client.delete_messages([uid])
    if client.has_capability("UIDPLUS"):
        client.uid_expunge([uid])
    else:
        client.expunge()


def handle(store: Store, config: Config, data: bytes, report: MailboxReport) -> str | None:
    """Classify and apply one mail; the folder it goes to, or None to leave it in place."""
    try:
        incoming = bounces.classify(data)
    except Exception as exc:  # a mail the parser chokes on is not ours to understand
        log.warning("unreadable mail: %s", exc)
        report.unknown += 1
        return "unknown"
    try:
        applied = bounces.apply(store, config, incoming)
    except (SQLAlchemyError, DigestbotError) as exc:
        report.failed += 1
        report.errors.append(f"{incoming.kind}: {exc}")
        log.error("could not apply a %s mail, left in the mailbox: %s", incoming.kind, exc)
        return None
    if applied.result == "unknown":
        report.unknown += 1
        log.info("unknown mail: %s", applied.detail)
        return "unknown"
    report.processed += 1
    if applied.action == "bounced":
        report.bounced += 1
    elif applied.action == "soft-bounce":
        report.soft_bounces += 1
    elif applied.action == "unsubscribed":
        report.unsubscribed += 1
    log.info("%s: %s", applied.action, applied.detail)
    return "processed"


def read_mailbox(store: Store, config: Config, *, limit: int | None = None) -> MailboxReport:
    """Read ``mailbox.folder`` once, apply every mail and move it; see the module doc."""
    s = MailboxSettings.from_config(config)
    report = MailboxReport()
    with connect(s) as client:
        try:
            _read(client, s, store, config, report, limit)
        except (OSError, IMAPClientError) as exc:
            # what was applied stays applied; a mail applied but not yet moved is read again
            # next time (a soft bounce may then count twice)
            raise DeliveryError(
                f"the mailbox at {s.host}:{s.port} failed after {report.read} mails: {exc}",
                field="mailbox.host",
                hint="Run `digestbot mailbox` again; the mails not yet handled are still there.",
            ) from None
    return report


def _read(
    client: IMAPClient,
    s: MailboxSettings,
    store: Store,
    config: Config,
    report: MailboxReport,
    limit: int | None,
) -> None:
    """Apply and move every mail of the folder (or the first ``limit``)."""
    for folder in (s.processed, s.unknown):
        if not client.folder_exists(folder):
            client.create_folder(folder)
    try:
        client.select_folder(s.folder)
    except IMAPClientError as exc:
        raise DeliveryError(
            f"cannot open folder {s.folder!r}: {exc}",
            field="mailbox.folder",
            hint="Set mailbox.folder to the folder where bounces arrive (often INBOX).",
        ) from None
    uids = sorted(client.search("ALL"))
    if limit is not None:
        uids = uids[:limit]
    targets = {"processed": s.processed, "unknown": s.unknown}
    for start in range(0, len(uids), FETCH_BATCH):
        chunk = uids[start : start + FETCH_BATCH]
        # BODY.PEEK: a mail left in place (the store was down) stays unread for people
        fetched = client.fetch(chunk, [b"BODY.PEEK[]"])
        for uid in chunk:
            data = fetched.get(uid, {}).get(b"BODY[]")
            if data is None:
                continue  # expunged by someone else meanwhile
            report.read += 1
            where = handle(store, config, bytes(data), report)
            if where is not None:
                _move(client, uid, targets[where])


__all__ = ["MailboxReport", "MailboxSettings", "read_mailbox"]
