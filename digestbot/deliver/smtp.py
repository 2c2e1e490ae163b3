"""SMTP through our own client (.smtpclient): a pool of reused connections, each a channel of
the sender.

A connection carries up to ``smtp.per_connection`` messages, then is renewed. A connection the
server closed is noticed at the next MAIL FROM, before any of the message left, so the message
goes out on a fresh connection at once. The envelope (MAIL, RCPT, DATA) goes out while the
previous result is committed; the message itself only after. Replies are sorted into retry
(4xx, timeouts, dropped or refused connections), failed (other 5xx) and bounced (the address
does not exist). Only RCPT and DATA replies can bounce a reader: a 5xx to MAIL FROM is about
the sender address, a setting, and stops the run with a DeliveryError.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import idna

from ..config import Config
from ..errors import DeliveryError
from .safety import is_loopback_host
from .smtpclient import (
    SmtpAuthError,
    SmtpClient,
    SmtpDisconnected,
    SmtpError,
    SmtpNotOffered,
    SmtpReplyError,
)
from .tls import ServerSettings, client_context
from .transports import SendFailure, TimedOut, Unavailable

log = logging.getLogger(__name__)

# Enhanced status codes (RFC 3463) that say the address itself is bad: bad mailbox, bad
# domain, bad syntax, mailbox moved, null MX. A reply like this will never turn into a 250.
BAD_ADDRESS = {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"}
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def _transient(exc: BaseException) -> SendFailure:
    """A broken or silent connection: the message retries (a timeout is told apart)."""
    reason = f"{type(exc).__name__}: {exc}".strip()
    return TimedOut(reason) if isinstance(exc, TimeoutError) else SendFailure("retry", reason)


def _mail_from_refusal(code: int, message: str) -> tuple[str, str]:
    """The setting to fix when the server refuses MAIL FROM, and how."""
    upper = (message or "").upper()
    if code == 530 and "STARTTLS" in upper:
        return "smtp.security", 'The server wants TLS first: set smtp.security = "starttls".'
    if code == 530 or "AUTH" in upper:
        return (
            "smtp.username",
            "The server wants a login: set smtp.username and DIGESTBOT_SMTP_PASSWORD "
            "(or smtp.password_file).",
        )
    return (
        "delivery.envelope_from",
        "Set delivery.envelope_from (or digest.from_address, its default) to an address "
        "this server accepts (or delivery.verp = false if it refuses name+tag addresses).",
    )


def ascii_domain(address: str) -> str:
    """``address`` with its domain in IDNA (``user@xn--mnchen-3ya.example``): SMTP servers
    take ASCII domains from everyone, UTF-8 ones only with SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise SendFailure("failed", f"the domain of {address!r} is not valid: {exc}") from None


def classify(code: int, message: str) -> SendFailure:
    """A failure for an SMTP reply that was not 2xx."""
    text = f"{code} {message}".strip()
    if 400 <= code < 500:
        return SendFailure("retry", text)
    match = _ENHANCED.match(message or "")
    if match and match.group(1) in BAD_ADDRESS:
        return SendFailure("bounced", text)
    if 500 <= code < 600:
        return SendFailure("failed", text)
    # anything else (a garbled reply) might be fine next time
    return SendFailure("retry", text)


@dataclass(frozen=True, kw_only=True)
class SmtpSettings(ServerSettings):
    validate_certs: bool
    pool_size: int
    per_connection: int

    @classmethod
    def from_config(cls, config: Config) -> SmtpSettings:
        c = config.smtp
        if c.username and not c.password:
            raise DeliveryError(
                f"smtp.username is {c.username!r} but no password is set",
                field="smtp.password",
                hint="Set DIGESTBOT_SMTP_PASSWORD, or smtp.password_file to a file only you "
                "can read (chmod 600).",
            )
        if c.username and c.security == "none" and not is_loopback_host(c.host):
            log.warning(
                "smtp.username is set but smtp.security is none: the password goes to %s "
                'in clear text; set smtp.security = "starttls" (or "tls" on port 465)',
                c.host,
            )
        return cls.from_section(
            c,
            validate_certs=c.validate_certs,
            pool_size=c.pool_size,
            per_connection=c.per_connection,
        )


class SmtpChannel:
    """One pooled connection, opened on first use and renewed as needed."""

    def __init__(self, settings: SmtpSettings, tls: ssl.SSLContext | None, local: str) -> None:
        self.s = settings
        self.tls = tls
        self.local_hostname = local
        self.client: SmtpClient | None = None
        self.in_data = False  # an envelope's DATA was answered 354: the message is next
        self.count = 0
        self.opened = 0

    async def _connect(self) -> SmtpClient:
        s = self.s
        where = f"{s.host}:{s.port}"
        try:
            client = await SmtpClient.open(
                s.host,
                s.port,
                timeout=s.timeout,
                local_hostname=self.local_hostname,
                tls=self.tls,
                implicit_tls=s.security == "tls",
                starttls=s.security == "starttls",
                login=(s.username, s.password) if s.username else None,
            )
        except SmtpAuthError as exc:
            raise DeliveryError(
                f"{where} refused the login for {s.username!r}: {exc.code} {exc.message}",
                field="smtp.username",
                hint="Check smtp.username and the password (DIGESTBOT_SMTP_PASSWORD or "
                "smtp.password_file).",
            ) from None
        except SmtpNotOffered as exc:
            if exc.extension == "STARTTLS":
                raise DeliveryError(
                    f"{where}: {exc}",
                    field="smtp.security",
                    hint="The server does not offer STARTTLS; check smtp.security and port.",
                ) from None
            raise DeliveryError(
                f"{where}: {exc}, but smtp.username is set",
                field="smtp.username",
                hint="Leave smtp.username empty for a relay that takes mail without a login, "
                'or set smtp.security = "starttls" if it offers one only under TLS.',
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"{where}: the server's TLS certificate could not be verified: {exc}",
                field="smtp.cafile",
                hint="Set smtp.cafile to the CA that signed it (or, on a trusted network "
                "only, smtp.validate_certs = false).",
            ) from None
        except (SmtpError, OSError, TimeoutError) as exc:
            text = str(exc) or type(exc).__name__
            raise Unavailable(f"cannot connect to {where}: {text}") from None
        self.opened += 1
        self.count = 0
        return client

    async def _connected(self) -> SmtpClient:
        if self.client is None or not self.client.is_connected:
            self._drop()
            self.client = await self._connect()
        return self.client

    def _drop(self) -> None:
        self.in_data = False
        if self.client is not None:
            self.client.close()
            self.client = None

    async def send(self, sender: str, recipient: str, message: bytes, message_id: str) -> None:
        await self.envelope(sender, recipient)
        await self.content(message)

    async def envelope(self, sender: str, recipient: str) -> None:
        """MAIL FROM, RCPT TO and DATA: the first half of :meth:`send`. The server waits for
        the message then, and has nothing of it yet."""
        recipient = ascii_domain(recipient)
        utf8 = not recipient.isascii()
        for fresh in (False, True):
            if self.client is None or not self.client.is_connected:
                fresh = True
            client = await self._connected()
            if utf8 and not client.offers("smtputf8"):
                # this message fails; the connection is untouched and the run goes on
                raise SendFailure(
                    "failed",
                    f"{recipient!r} has non-ASCII characters before the @ and "
                    f"{self.s.host} does not offer SMTPUTF8",
                )
            try:
                await client.begin(sender, recipient, utf8=utf8)
                self.in_data = True
                return
            except SmtpReplyError as exc:
                await self._reset()
                if exc.command == "MAIL" and 500 <= exc.code < 600:
                    # refused before any reader is named: the same for every reader, so it
                    # is the settings that are wrong, not the readers' addresses
                    field, hint = _mail_from_refusal(exc.code, exc.message)
                    raise DeliveryError(
                        f"{self.s.host}:{self.s.port} refused the envelope sender "
                        f"{sender!r} at MAIL FROM: {exc.code} {exc.message}",
                        field=field,
                        hint=hint + " The digests stay queued.",
                    ) from None
                raise classify(exc.code, exc.message) from None
            except SmtpDisconnected as exc:
                # nothing of the message left yet: safe to go again on a new connection
                self._drop()
                if fresh:
                    raise SendFailure("retry", f"connection dropped: {exc}") from None
            except (SmtpError, OSError, TimeoutError) as exc:
                self._drop()
                raise _transient(exc) from None
            except ValueError as exc:  # a control character in an address
                raise SendFailure("failed", str(exc)) from None

    async def content(self, message: bytes) -> None:
        """The message, after :meth:`envelope`: the server accepts it, or it raises."""
        client = self.client
        if client is None or not client.is_connected or not self.in_data:
            raise SendFailure("retry", "connection dropped before the message")
        self.in_data = False
        # a broken connection now: the message may or may not have arrived, and the stable
        # Message-ID covers a repeat
        try:
            await client.finish(message)
        except SmtpReplyError as exc:
            await self._reset()
            raise classify(exc.code, exc.message) from None
        except (SmtpError, OSError, TimeoutError) as exc:
            self._drop()
            raise _transient(exc) from None
        except Exception as exc:
            # anything else is about this message (an encoding, a bug): it fails alone, on a
            # fresh connection for the next one since this one's state is unknown
            log.exception("sending one message failed")
            self._drop()
            raise SendFailure("failed", f"{type(exc).__name__}: {exc}".strip()) from None
        self.count += 1
        if self.count >= self.s.per_connection:
            await self.close()

    async def abandon(self) -> None:
        """Give up an envelope without its message: the server keeps nothing of it. Inside
        DATA no RSET can be said; a connection closed before the message's end line is a
        transaction the server drops (RFC 5321 4.1.1.4), so it is closed."""
        if self.in_data:
            self._drop()
        else:
            await self._reset()

    async def _reset(self) -> None:
        if self.client is None:
            return
        try:
            await self.client.command(b"RSET", 250)
        except (SmtpError, OSError, TimeoutError):
            self._drop()

    async def close(self) -> None:
        if self.in_data:  # a QUIT now would be read as the message: drop it unsaid
            self._drop()
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            with suppress(SmtpError, OSError, TimeoutError):  # quit closes it either way
                await client.quit()


class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.concurrency = settings.pool_size
        verify = settings.validate_certs
        self._tls = client_context("smtp", settings.security, settings.cafile, verify=verify)
        self._local: str | None = None  # the name this host gives in EHLO

    async def takes_utf8_local_parts(self) -> bool:
        """Whether the relay offers SMTPUTF8 (RFC 6531), asked over a new connection;
        Unavailable or DeliveryError when it cannot be asked."""
        async with self.channel() as channel:
            return (await channel._connected()).offers("smtputf8")

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[SmtpChannel]:
        if self._local is None:
            # its FQDN, looked up once, off the event loop (the lookup may ask DNS)
            name = await asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)
            self._local = name if name.isascii() and name else "localhost"
        channel = SmtpChannel(self.settings, self._tls, self._local)
        try:
            yield channel
        finally:
            await channel.close()
