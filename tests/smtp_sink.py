"""A real SMTP server on 127.0.0.1 (aiosmtpd) that stores what it receives and can be told
to fail: temporary or permanent replies, an unknown user, dropped connections, stalls.

It can also offer STARTTLS or implicit TLS (a trustme certificate) and require a login.
A sink in a process of its own, for benchmarks and for tests that SIGKILL a sender, is
tests/process_sink.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    received: list[Received] = field(default_factory=list)
    # replies given to DATA for the next N messages, e.g. ["451 4.3.0 try later"] * 2
    data_replies: list[str] = field(default_factory=list)
    # recipient -> reply at RCPT, e.g. {"x@y": "550 5.1.1 unknown user"}
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    # reply to every MAIL FROM instead of 250, e.g. "553 5.1.3 Bad sender address syntax"
    mail_reply: str = ""
    # close the connection after this many accepted messages per connection (0: never)
    drop_after: int = 0
    # seconds to sleep before answering DATA
    stall: float = 0.0
    connections: int = 0
    # time.monotonic() of each accepted message, for the rate limit test
    times: list[float] = field(default_factory=list)
    _per_session: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall:
            await asyncio.sleep(self.stall)
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
            self.times.append(time.monotonic())
            key = id(session)
            self._per_session[key] += 1
            drop = self.drop_after and self._per_session[key] >= self.drop_after
        if drop:
            # answer, then hang up: the client sees the connection drop on its next command
            server.transport.write(b"250 OK\r\n")
            server.transport.close()
            return "250 OK"
        return "250 OK"


@dataclass
class PipeliningSinkHandler(SinkHandler):
    """A sink that announces PIPELINING (RFC 2920), as production relays do, through
    aiosmtpd's public EHLO hook; aiosmtpd reads pipelined commands in order either way."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname  # the hook takes over what aiosmtpd does without one
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@dataclass
class LimitedSinkHandler(SinkHandler):
    """A relay that admits ``admit`` sessions and answers the others' greeting 421 (as
    Exchange Online takes 3 connections from one sender), through aiosmtpd's public EHLO
    and HELO hooks."""

    admit: int = 3
    sessions: set[int] = field(default_factory=set)

    def _admitted(self, session: Session) -> bool:
        with self.lock:
            if id(session) not in self.sessions and len(self.sessions) < self.admit:
                self.sessions.add(id(session))
            return id(session) in self.sessions

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        if not self._admitted(session):
            return ["421 4.7.0 Too many connections from your host"]
        session.host_name = hostname
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        if not self._admitted(session):
            return "421 4.7.0 Too many connections from your host"
        session.host_name = hostname
        return f"250 {server.hostname}"


class SmtpSink:
    """Start with .start(), read .received, steer failures through .handler."""

    def __init__(self, handler: Any = None, **controller_kwargs: Any) -> None:
        self.handler = handler or SinkHandler()
        self.port = free_port()
        self.host = "127.0.0.1"
        self.kwargs = controller_kwargs
        self.controller: Controller | None = None

    def start(self) -> SmtpSink:
        self.controller = Controller(
            self.handler, hostname=self.host, port=self.port, **self.kwargs
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def recipients(self) -> Counter[str]:
        return Counter(r for m in self.received for r in m.rcpt_tos)


def password_authenticator(users: dict[str, str]) -> Any:
    """An aiosmtpd authenticator accepting exactly these user/password pairs."""

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check
