"""A real SMTP server on 127.0.0.1 (aiosmtpd) that stores what it receives and can be told
to fail: temporary or permanent replies, an unknown user, dropped connections, stalls.

It can also offer STARTTLS or implicit TLS (a trustme certificate) and require a login, and
run in a process of its own (``python -m tests.smtp_sink``, see :class:`SinkProcess`) so a
test can SIGKILL the sender, or a benchmark measure it, without sharing its interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

try:  # not on Windows
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


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


class SmtpSink:
    """Start with .start(), read .received, steer failures through .handler."""

    def __init__(
        self, handler: Any = None, *, lean: bool = False, **controller_kwargs: Any
    ) -> None:
        self.handler = handler or SinkHandler()
        self.port = free_port()
        self.host = "127.0.0.1"
        self._kwargs = controller_kwargs
        # lean: the process sink's server (LeanSMTP), to test it against aiosmtpd's own
        self._controller = LeanController if lean else Controller
        self.controller: Controller | None = None

    def start(self) -> SmtpSink:
        self.controller = self._controller(
            self.handler, hostname=self.host, port=self.port, **self._kwargs
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


_MSGID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


class LogHandler:
    """For the sink in its own process: one line per accepted message, appended at once."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = bytes(envelope.content)
        head = content[: content.find(b"\n\n") + 1 or 8192]
        match = _MSGID.search(head)
        msgid = match.group(1).decode() if match else "-"
        line = "".join(f"{rcpt}\t{msgid}\n" for rcpt in envelope.rcpt_tos)
        os.write(self.fd, line.encode())
        return "250 OK"


class SinkProcess:
    """The sink in another process, logging each message as ``recipient<TAB>message-id``."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.smtp_sink",
                "--port",
                str(self.port),
                "--log",
                str(self.log),
            ],
            cwd=root,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"READY"):
            raise RuntimeError(f"sink did not start: {line!r}")
        return self

    def lines(self) -> list[tuple[str, str]]:
        if not self.log.exists():
            return []
        text = self.log.read_text()
        return [tuple(x.split("\t", 1)) for x in text.splitlines() if "\t" in x]  # type: ignore[misc]

    def count(self) -> int:
        return self.log.read_bytes().count(b"\n") if self.log.exists() else 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


async def read_data(reader: asyncio.StreamReader) -> bytes:
    """The raw DATA of one message up to its end line ``.`` (included), in large reads.

    aiosmtpd reads DATA a line at a time, one ``readuntil`` per line (about 230 awaits for a
    16 KB digest), which was most of the process sink's CPU. This reads up to each ``.CRLF``
    and stops only where it ends a line of its own, at the start or after a CRLF: the same
    end of DATA (RFC 5321 4.1.1.4). A ``LimitOverrunError`` (more buffered than the reader's
    line-sized limit without a separator) hands over what can be taken without cutting one.
    """
    buf = bytearray()
    while True:
        try:
            buf += await reader.readuntil(b".\r\n")
        except asyncio.LimitOverrunError as exc:
            buf += await reader.readexactly(exc.consumed)
            continue
        if buf == b".\r\n" or buf.endswith(b"\r\n.\r\n"):
            return bytes(buf)


def unstuff(raw: bytes) -> bytes:
    """The message in raw DATA (ending in the ``.`` line): its end line dropped and the dot
    that the client doubled at the start of a line removed (RFC 5321 4.5.2), as aiosmtpd does.
    """
    body = raw[:-3]
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\r\n.", b"\r\n")


@functools.lru_cache(maxsize=256)
def parse_address(arg: str) -> tuple[str | None, str | None]:
    """The address and the rest of a MAIL FROM / RCPT TO argument, as aiosmtpd parses it
    (its ``SMTP._getaddr``, whose local part limit the process sink leaves unset).

    aiosmtpd builds a ``typing.Protocol`` class on every call of ``_getaddr``, a tenth of the
    process sink's CPU; this does not. Memoised: every MAIL FROM of a run is the same string.
    """
    if not arg:
        return "", ""
    try:
        if arg.lstrip().startswith("<"):
            address, rest = get_angle_addr(arg)
        else:
            address, rest = get_addr_spec(arg)
    except HeaderParseError:
        return None, None
    return address.addr_spec, rest


class LeanSMTP(SMTP):
    """aiosmtpd's server with a DATA phase that reads in large pieces (:func:`read_data`) and
    a cheaper address parser (:func:`parse_address`), for the process sink.

    The rest of the dialogue is aiosmtpd's own; DATA keeps its checks and replies: 503
    without a recipient, 501 with an argument, 500 for a line over the length limit, 552
    over the size limit, and the handler's reply otherwise.
    """

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if self.local_part_limit:
            return super()._getaddr(arg)
        return parse_address(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        raw = await read_data(self._reader)
        limit = self.data_size_limit
        if limit and len(raw) - 3 > limit:
            status = "552 Error: Too much mail data"
        elif max(map(len, raw.split(b"\r\n"))) + 2 > self.line_length_limit:
            status = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            content = unstuff(raw)
            self.envelope.content = self.envelope.original_content = content
            status = await self.event_handler.handle_DATA(self, self.session, self.envelope)
        self._set_post_data_state()
        await self.push(status)


class LeanController(Controller):
    def factory(self) -> SMTP:
        return LeanSMTP(self.handler, **self.SMTP_kwargs)


def _serve(port: int, log: Path) -> None:
    # uvloop: less CPU per message in the sink, which shares the machine with the sender
    loop = uvloop.new_event_loop() if uvloop is not None else None
    controller = LeanController(LogHandler(log), hostname="127.0.0.1", port=port, loop=loop)
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("READY", port, flush=True)
    while not done.wait(0.5):
        if os.getppid() == 1:  # the test that started us is gone
            break
    controller.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    _serve(args.port, args.log)
