"""A real HTTP server on 127.0.0.1 playing the paper sources, for the fetch tests.

Each route (a path, and for the Hugging Face API a ``date``) answers with a script of
replies, one per request, the last one repeated: a test can say "429 with Retry-After,
then 200" or "503 forever". A reply with an ETag or Last-Modified answers 304 when the
request carries it back. Every request is recorded with its headers and when it came.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def _nap(seconds: float) -> None:
    # not time.sleep, which fails under libfaketime (the suite also runs a year ahead)
    threading.Event().wait(seconds)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line is sent: a slow server
    trickle: float = 0.0  # seconds between the body's ten pieces: a server that dawdles
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived


class FetchServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str | None], list[Reply]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server._answer(self)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, *replies: Reply, date: str | None = None) -> None:
        with self._lock:
            self.routes[(path, date)] = list(replies)

    def seen(self, path: str, date: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.requests
                if s.path == path and (date is None or s.query.get("date") == date)
            ]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append(
                Seen(url.path, query, dict(handler.headers.items()), time.monotonic())
            )
            script = self.routes.get((url.path, query.get("date"))) or self.routes.get(
                (url.path, None)
            )
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else Reply(404)
        if reply.delay:
            _nap(reply.delay)
        headers = dict(reply.headers)
        if reply.etag:
            headers["ETag"] = reply.etag
        if reply.last_modified:
            headers["Last-Modified"] = reply.last_modified
        unchanged = (reply.etag and handler.headers.get("If-None-Match") == reply.etag) or (
            reply.last_modified and handler.headers.get("If-Modified-Since") == reply.last_modified
        )
        status, body = (
            (304, b"") if unchanged and reply.status == 200 else (reply.status, reply.body)
        )
        if status == 404 and not body:
            body = b'{"error":"Not Found"}'
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if status != 304:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if status != 304 and reply.trickle:
                step = max(1, len(body) // 10 + 1)
                for i in range(0, len(body), step):
                    handler.wfile.write(body[i : i + step])
                    handler.wfile.flush()
                    _nap(reply.trickle)
            elif status != 304:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def fetch_server() -> Iterator[FetchServer]:
    server = FetchServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
