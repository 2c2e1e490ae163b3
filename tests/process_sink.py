"""A minimal SMTP sink for a process of its own: what benchmarks send to, and what tests that
SIGKILL a sender talk to (``python -m tests.process_sink``, see :class:`SinkProcess`).

It is not aiosmtpd: a sink that shares two cores with the sender it measures must cost
little, and aiosmtpd reads DATA a line at a time. This one is an asyncio protocol that takes
whole buffers and finds the end of DATA with one search; everything else is the plainest
SMTP (RFC 5321): EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, each answered as aiosmtpd
answers it, with PIPELINING (RFC 2920) offered as production relays offer it.
tests/test_smtp.py checks it receives, byte for byte, what aiosmtpd receives.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

try:  # less CPU per message
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

LINE_LIMIT = 1001  # bytes of a line with its CRLF, as aiosmtpd counts them (RFC 5321 4.5.3.1.6)
# PIPELINING as Postfix, Exim and the large relays announce it (aiosmtpd does not): a sender
# measured against this sink pipelines as it would in production; commands that arrive
# together are answered in order, as the loop in data_received reads them
EHLO = (
    "250-{host}\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n"
    "250 HELP\r\n"
)
_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
Deliver = Callable[[str, list[str], bytes], None]


def unstuff(raw: bytes) -> bytes:
    """The message in DATA without its end line, the doubled leading dots undone (4.5.2)."""
    if raw.startswith(b"."):
        raw = raw[1:]
    return raw.replace(b"\r\n.", b"\r\n")


class SinkProtocol(asyncio.Protocol):
    def __init__(self, deliver: Deliver, host: str) -> None:
        self.deliver = deliver
        self.host = host
        self.buf = bytearray()
        self.in_data = False
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.write(f"220 {self.host} ESMTP sink\r\n")

    def write(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.transport.is_closing():
            if self.in_data:
                if not self._data():
                    return
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            self._command(line.decode("utf-8", "replace"))

    def _data(self) -> bool:
        """The end of DATA (a ``.`` line) if it has arrived: the message is taken."""
        if self.buf.startswith(b".\r\n"):
            raw, rest = b"", 3
        else:
            end = self.buf.find(b"\r\n.\r\n")
            if end < 0:
                return False
            raw, rest = bytes(self.buf[: end + 2]), end + 5
        del self.buf[:rest]
        self.in_data = False
        if max(map(len, raw.split(b"\r\n")), default=0) + 2 > LINE_LIMIT:
            reply = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            self.deliver(self.mail_from or "", self.rcpts, unstuff(raw))
            reply = "250 OK"
        self.mail_from, self.rcpts = None, []
        self.write(reply + "\r\n")
        return True

    def _command(self, line: str) -> None:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            self.write(EHLO.format(host=self.host))
        elif verb == "HELO":
            self.write(f"250 {self.host}\r\n")
        elif verb == "MAIL" and arg.upper().startswith("FROM:"):
            self.mail_from, self.rcpts = _address(arg[5:]), []
            self.write("250 OK\r\n")
        elif verb == "RCPT" and arg.upper().startswith("TO:"):
            if self.mail_from is None:
                self.write("503 Error: need MAIL command\r\n")
            else:
                self.rcpts.append(_address(arg[3:]))
                self.write("250 OK\r\n")
        elif verb == "DATA":
            if not self.rcpts:
                self.write("503 Error: need RCPT command\r\n")
            else:
                self.in_data = True
                self.write("354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb in ("RSET", "NOOP"):
            if verb == "RSET":
                self.mail_from, self.rcpts = None, []
            self.write("250 OK\r\n")
        elif verb == "QUIT":
            self.write("221 Bye\r\n")
            assert self.transport is not None
            self.transport.close()
        else:
            self.write(f'500 Error: command "{verb}" not recognized\r\n')


def _address(arg: str) -> str:
    """The address of a ``FROM:`` / ``TO:`` argument, without its angle brackets or options."""
    arg = arg.strip()
    if arg.startswith("<"):
        return arg[1 : arg.find(">")] if ">" in arg else arg[1:]
    return arg.split(" ", 1)[0]


def log_to(path: Path) -> Deliver:
    """One line per recipient of each message, ``recipient<TAB>message-id``, appended at once."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def deliver(mail_from: str, rcpts: list[str], content: bytes) -> None:
        head = content[: content.find(b"\r\n\r\n") + 2 or 8192]
        match = _MSGID.search(head)
        msgid = match.group(1).decode() if match else "-"
        os.write(fd, "".join(f"{rcpt}\t{msgid}\n" for rcpt in rcpts).encode())

    return deliver


async def serve(port: int, deliver: Deliver, host: str = "127.0.0.1") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SinkProtocol(deliver, host), host, port)


class SinkProcess:
    """The sink in another process, logging each message as ``recipient<TAB>message-id``."""

    def __init__(self, log: Path) -> None:
        from .smtp_sink import free_port

        self.log = log
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SinkProcess:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.process_sink", "--port", str(self.port)]
            + ["--log", str(self.log)],
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
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


async def _main(port: int, log: Path) -> None:
    server = await serve(port, log_to(log))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    print("READY", port, flush=True)
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except TimeoutError:
            if os.getppid() == 1:  # the test that started us is gone
                break
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    if uvloop is not None:
        uvloop.run(_main(args.port, args.log))
    else:  # pragma: no cover
        asyncio.run(_main(args.port, args.log))
