"""DKIM signatures (dkimpy), added as a message leaves through any transport.

Signed at send time, not when a digest is queued: the transports are the one path every mail
takes (digests, and the web front's confirmation mails through ``send_now``), the bytes are
final there, a new key or selector applies at once to everything still queued, and retries
of a message read from the outbox need no second copy. The price is CPU on the sender's
event loop: dkimpy's RSA is pure Python, about 7-8 ms per message with a 2048-bit key
(bench/signing.py).

RFC 8058 one-click unsubscribe needs ``List-Unsubscribe`` and ``List-Unsubscribe-Post``
covered, so they are among the headers signed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from .transports import Channel, SplitChannel, Transport

# Signed when present. From is required by RFC 6376; the List-* pair by RFC 8058.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Cc",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"Auto-Submitted",
)


class Signer:
    """Signs messages with one key, selector and domain."""

    def __init__(self, domain: str, selector: str, key: bytes) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.key = key

    @classmethod
    def from_config(cls, config: Config) -> Signer | None:
        """A signer when ``dkim.domain`` is set, else None; ConfigError if half set up."""
        domain, selector = str(config["dkim.domain"]), str(config["dkim.selector"])
        key_file = str(config["dkim.key_file"])
        if not (domain or selector or key_file):
            return None
        missing = [
            name
            for name, value in (
                ("dkim.domain", domain),
                ("dkim.selector", selector),
                ("dkim.key_file", key_file),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                "DKIM signing needs a domain, a selector and a key file; missing: "
                + ", ".join(missing),
                field=missing[0],
                hint="Set all three in [dkim], or none to send unsigned.",
            )
        if not (domain.isascii() and selector.isascii()):
            raise ConfigError(
                "DKIM domain and selector must be ASCII (use the IDNA form of the domain)",
                field="dkim.domain",
            )
        path = Path(key_file).expanduser()
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read DKIM key {path}: {exc.strerror}",
                field="dkim.key_file",
                hint="Point dkim.key_file at the PEM private key (chmod 600).",
            ) from None
        import dkim  # here, not at the top: it and dnspython cost every send 30 ms unsigned

        signer = cls(domain, selector, key)
        try:
            signer.sign(b"From: check@" + signer.domain + b"\r\n\r\nkey check\r\n")
        except (dkim.DKIMException, ValueError) as exc:
            raise ConfigError(
                f"DKIM key {path} cannot sign: {exc}",
                field="dkim.key_file",
                hint="Use a PEM RSA private key, e.g. from "
                "`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.",
            ) from None
        return signer

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        import dkim  # imported by from_config already: a lookup in sys.modules

        # dkimpy works on CRLF lines and writes its header with CRLF; rendered messages
        # use bare LF, which the SMTP client turns into CRLF on the wire
        crlf = b"\r\n" in message
        data = message if crlf else message.replace(b"\n", b"\r\n")
        signature = dkim.sign(
            data,
            self.selector,
            self.domain,
            self.key,
            include_headers=list(SIGNED_HEADERS),
            signature_algorithm=b"rsa-sha256",
        )
        if not crlf:
            signature = signature.replace(b"\r\n", b"\n")
        return signature + message


class _SignedChannel:
    def __init__(self, inner: Channel, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer

    async def send(self, sender: str, recipient: str, message: bytes, message_id: str) -> None:
        await self.inner.send(sender, recipient, self.signer.sign(message), message_id)

    def __getattr__(self, name: str) -> object:
        # what the sender reads besides send (e.g. the number of connections opened)
        return getattr(self.inner, name)


class _SignedSplitChannel(_SignedChannel):
    inner: SplitChannel

    async def envelope(self, sender: str, recipient: str) -> None:
        await self.inner.envelope(sender, recipient)

    async def content(self, message: bytes) -> None:
        await self.inner.content(self.signer.sign(message))

    async def abandon(self) -> None:
        await self.inner.abandon()


class SigningTransport:
    """Wraps a transport: every message it carries is signed first."""

    def __init__(self, inner: Transport, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer
        self.name = inner.name
        self.concurrency = inner.concurrency

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[Channel]:
        async with self.inner.channel() as channel:
            if isinstance(channel, SplitChannel):
                yield _SignedSplitChannel(channel, self.signer)
            else:
                yield _SignedChannel(channel, self.signer)

    async def takes_utf8_local_parts(self) -> bool:
        return await self.inner.takes_utf8_local_parts()


__all__ = ["SIGNED_HEADERS", "Signer", "SigningTransport"]
