"""Transports: where a message goes. Each hands out *channels*; the sender runs one task per
channel, so an SMTP channel is one pooled connection and the local transports have one.

A channel's ``send`` returns when the message is safely handed over, or raises
:class:`SendFailure` saying whether to retry, give up, or mark the reader bounced.
"""

from __future__ import annotations

import mailbox
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..config import Config
from ..errors import DeliveryError
from ..files import write_atomic


class SendFailure(Exception):
    """One message was not accepted. ``kind``: retry, failed or bounced."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Unavailable(SendFailure):
    """The server cannot be reached at all: this message retries, the run stops."""

    def __init__(self, reason: str) -> None:
        super().__init__("retry", reason)


class TimedOut(SendFailure):
    """The server did not answer within smtp.timeout: this message retries; several in a row
    pause sending for the run (the server hangs, and waiting on it would hold the run)."""

    def __init__(self, reason: str) -> None:
        super().__init__("retry", reason)


class Channel(Protocol):
    async def send(self, sender: str, recipient: str, message: bytes, message_id: str) -> None:
        """Hand one message over, or raise SendFailure (or DeliveryError for bad settings)."""


@runtime_checkable
class SplitChannel(Channel, Protocol):
    """A channel whose send has two halves (SMTP): the envelope, then the message.

    The sender announces a channel's next message (:meth:`envelope`) while the result of its
    previous one is being committed, and hands it over (:meth:`content`) only after that.
    """

    async def envelope(self, sender: str, recipient: str) -> None:
        """Announce a message (sender and recipient): nothing of it is delivered yet, and
        the next call is :meth:`content` or :meth:`abandon`."""

    async def content(self, message: bytes) -> None:
        """Hand over the message announced by :meth:`envelope`."""

    async def abandon(self) -> None:
        """Drop the announced message: the server keeps nothing of it."""


class Transport(Protocol):
    name: str
    concurrency: int

    def channel(self) -> AbstractAsyncContextManager[Channel]: ...

    async def takes_utf8_local_parts(self) -> bool:
        """Whether an address with non-ASCII characters before the @ can be delivered."""
        ...


def eml_name(message_id: str) -> str:
    """A file name from a Message-ID: the same digest always lands in the same file."""
    stem = re.sub(r"[^A-Za-z0-9._@+-]+", "_", message_id.strip("<> ")) or uuid.uuid4().hex
    return stem[:200] + ".eml"


class FileTransport:
    """Writes each message to ``<outdir>/<message-id>.eml``, atomically: a dry run to read."""

    name = "file"
    concurrency = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[FileTransport]:
        yield self  # nothing to open per channel: the transport is its own channel

    async def send(self, sender: str, recipient: str, message: bytes, message_id: str) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / eml_name(message_id), message)
        except OSError as exc:
            raise _local_error(self.folder, exc, "delivery.outdir") from None

    async def takes_utf8_local_parts(self) -> bool:
        return True  # a file takes any address


class _MaildirChannel:
    def __init__(self, box: mailbox.Maildir, folder: Path) -> None:
        self.box = box
        self.folder = folder

    async def send(self, sender: str, recipient: str, message: bytes, message_id: str) -> None:
        try:
            # Maildir writes to tmp/ and renames into new/: a reader never sees half a message
            self.box.add(message)
        except OSError as exc:
            raise _local_error(self.folder, exc, "delivery.maildir") from None


class MaildirTransport:
    """Delivers into a local Maildir folder: real messages without a mail server."""

    name = "maildir"
    concurrency = 1

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[Channel]:
        try:
            box = mailbox.Maildir(self.folder, factory=None, create=True)
        except OSError as exc:
            raise _local_error(self.folder, exc, "delivery.maildir") from None
        yield _MaildirChannel(box, self.folder)

    async def takes_utf8_local_parts(self) -> bool:
        return True  # a local folder takes any address


def _local_error(folder: Path, exc: OSError, field: str) -> DeliveryError:
    return DeliveryError(
        f"cannot write to {folder}: {exc.strerror or exc}",
        field=field,
        hint=f"Make the folder writable, or point {field} elsewhere.",
    )


# Each transport is built from the settings by a factory registered under the name that
# ``delivery.transport`` takes; SMTP's module is imported only when it is chosen.
def _smtp(config: Config) -> Transport:
    from .safety import check_smtp_settings
    from .smtp import SmtpSettings, SmtpTransport

    check_smtp_settings(config)
    return SmtpTransport(SmtpSettings.from_config(config))


TRANSPORTS: dict[str, Callable[[Config], Transport]] = {
    "maildir": lambda config: MaildirTransport(config.path("delivery.maildir")),
    "smtp": _smtp,
    "file": lambda config: FileTransport(config.path("delivery.outdir")),
}


def make_transport(config: Config) -> Transport:
    """The transport named by ``delivery.transport``, signing with DKIM when configured."""
    from .signing import Signer, SigningTransport

    kind = config["delivery.transport"]
    factory = TRANSPORTS.get(kind)
    if factory is None:
        raise DeliveryError(
            f"unknown transport {kind!r}",
            field="delivery.transport",
            hint=f"Use one of: {', '.join(TRANSPORTS)}.",
        )
    transport = factory(config)
    signer = Signer.from_config(config)
    return transport if signer is None else SigningTransport(transport, signer)
