"""A store that fails under a send: locked by another process, full, or a PostgreSQL server
that goes away. The send ends with a summary saying what happened and what to do, every
message the server took is recorded or stays claimed (never sent twice beyond what was in
flight), and the next run delivers the rest. Real parts: SQLite's own write lock and page
limit, a TCP proxy in front of PostgreSQL that is cut, an aiosmtpd sink."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from digestbot import clock
from digestbot.deliver import send_due, state_counts
from digestbot.store import open_store

from .smtp_sink import SinkHandler, SmtpSink
from .test_deliver import smtp_config
from .test_deliver_support import seed_outbox


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Take the SQLite store's write lock from another connection for a while."""
    taken = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    return thread


class LockingSink(SinkHandler):
    """Takes the store's write lock, for a while, when the nth message arrives."""

    def __init__(self, path: Path, nth: int, seconds: float) -> None:
        super().__init__()
        self.path, self.nth, self.seconds = path, nth, seconds
        self.holder: threading.Thread | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.received) == self.nth and self.holder is None:
            self.holder = _hold_write_lock(self.path, self.seconds)
        return reply


def test_a_store_locked_mid_send_ends_the_run_with_a_summary_and_no_claims_left(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.db"
    store = open_store(path, busy_seconds=0.4)
    seed_outbox(store, 200)
    handler = LockingSink(path, nth=20, seconds=1.0)
    sink = SmtpSink(handler).start()
    try:
        cfg = smtp_config(tmp_path, store, sink, smtp__pool_size=2)
        report = send_due(store, cfg)
    finally:
        sink.stop()
    assert handler.holder is not None
    handler.holder.join()
    assert report.error is not None and "database is locked" in report.error
    assert report.hint is not None and "write lock" in report.hint
    counts = state_counts(store)
    store.dispose()
    # every message the server took is recorded as sent (none to send twice), nothing is
    # left claimed, the rest waits in the queue
    assert "sending" not in counts
    assert counts["sent"] == len(sink.received) == report.sent
    assert counts["queued"] == 200 - counts["sent"]
    assert set(sink.recipients().values()) == {1}


def test_a_full_disk_at_the_first_claim_ends_the_send_with_a_summary(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    path = tmp_path / "d.db"
    store = open_store(path)
    seed_outbox(store, 300)
    store.dispose()
    # SQLite's own limit on the file's size, with no free page left to reuse: the first
    # write that needs a page fails with "database or disk is full", as on a full disk
    with sqlite3.connect(path) as conn:
        conn.execute("VACUUM")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    full = open_store(path)
    event.listen(
        full.engine,
        "connect",
        lambda conn, _record: conn.execute(f"PRAGMA max_page_count={pages}"),
    )
    full.engine.dispose()  # the connection that ran the migrations was opened without it
    report = send_due(full, smtp_config(tmp_path, full, smtp_sink, smtp__pool_size=2))
    full.dispose()
    assert report.error is not None and "database or disk is full" in report.error
    assert report.hint is not None and "free space" in report.hint.lower()
    assert smtp_sink.received == []
    # with room again, the next send delivers every digest, once
    again = open_store(path)
    rest = send_due(again, smtp_config(tmp_path, again, smtp_sink, smtp__pool_size=2))
    assert state_counts(again) == {"sent": 300}
    again.dispose()
    assert rest.sent == 300 and set(smtp_sink.recipients().values()) == {1}


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL; cut() drops every link at once and
    refuses new ones, like a server that went away."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links: list[socket.socket] = []
        self.closed = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.closed:
                client.close()
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.closed = True
        # a close() alone leaves a blocked accept() accepting on Linux
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for s in self.links:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


class CuttingSink(SinkHandler):
    """Cuts the link to the store when the nth message arrives."""

    def __init__(self, proxy: CuttableProxy, nth: int) -> None:
        super().__init__()
        self.proxy, self.nth = proxy, nth

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.received) == self.nth:
            self.proxy.cut()
        return reply


def test_postgresql_lost_mid_send_ends_the_run_with_a_summary(tmp_path: Path, pg_url: str) -> None:
    store = open_store(pg_url)
    seed_outbox(store, 200)
    store.dispose()
    proxy = CuttableProxy(make_url(pg_url).port or 5432)
    via_proxy = make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    via_proxy = via_proxy.update_query_dict({"connect_timeout": "2"})
    cut = open_store(via_proxy.render_as_string(hide_password=False))
    sink = SmtpSink(CuttingSink(proxy, nth=30)).start()
    try:
        report = send_due(cut, smtp_config(tmp_path, cut, sink, smtp__pool_size=2))
    finally:
        sink.stop()
        cut.dispose()
    assert report.error is not None and report.hint is not None
    assert "server" in report.hint
    # straight to the server again: what was recorded is right, nothing was sent twice;
    # claims could not be given back with the server gone: they return after their lease
    # (or at once to the next run on this host, the holder being dead by then)
    direct = open_store(pg_url)
    try:
        counts = state_counts(direct)
        assert set(sink.recipients().values()) == {1}
        assert counts["sent"] <= len(sink.received) <= counts["sent"] + counts.get("sending", 0)
        first = len(sink.received)
        later = clock.now() + timedelta(seconds=601)
        sink = SmtpSink().start()
        try:
            rest = send_due(direct, smtp_config(tmp_path, direct, sink), now=lambda: later)
        finally:
            sink.stop()
        assert state_counts(direct) == {"sent": 200}
    finally:
        direct.dispose()
    # repeated: at most the messages in flight when the link went, one per connection
    assert first + rest.sent - 200 <= 2
