"""A store that fails under a send: locked by another process, full, or a PostgreSQL server
that goes away. The send ends with a summary saying what happened and what to do, every
message the server took is recorded or stays claimed (never sent twice beyond what was in
flight), and the next run delivers the rest. Real parts: SQLite's own write lock and page
limit, a TCP proxy in front of PostgreSQL that is cut, an aiosmtpd sink."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from digestbot import clock
from digestbot.deliver import send_due, state_counts
from digestbot.store import open_store

from .smtp_sink import SinkHandler, SmtpSink
from .test_deliver_support import seed_outbox, smtp_config


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


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder``: a real file system that fills up. Needs
    root, as `make test` is run (tools/test-machine)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs (run the tests as root): {done.stderr}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_up(folder: Path) -> Path:
    """Write a file until the file system is full; returns it, to free the space."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                out.write(block)
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as out:
        while True:  # the last few bytes, one at a time
            out.write(b"\0")
    return filler


class FillingSink(SinkHandler):
    """Fills the store's file system when the nth message arrives."""

    def __init__(self, folder: Path, nth: int) -> None:
        super().__init__()
        self.folder, self.nth = folder, nth
        self.filler: Path | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.received) == self.nth and self.filler is None:
            self.filler = fill_up(self.folder)
        return reply


def test_a_disk_that_fills_mid_send_ends_the_run_and_the_next_run_delivers_the_rest(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", "32m") as disk:
        path = disk / "d.db"
        store = open_store(path)
        addresses = seed_outbox(store, 300)
        handler = FillingSink(disk, nth=40)
        sink = SmtpSink(handler).start()
        try:
            cfg = smtp_config(tmp_path, store, sink, smtp__pool_size=2, smtp__rate=100.0)
            report = send_due(store, cfg)
        finally:
            sink.stop()
        assert handler.filler is not None
        # the disk filled after the first claims and results went in: mid-send
        assert report.sent >= 1
        assert report.error is not None and "database or disk is full" in report.error
        assert report.hint is not None and "free space" in report.hint.lower()
        first = sink.recipients()
        # stopped at once: no more than what was in flight went out after the disk filled
        assert sum(first.values()) <= 40 + 2 and set(first.values()) == {1}
        store.dispose()
        # space again (the operator cleaned up); the next run, in a new process as cron runs
        # it, takes back the dead run's claims and delivers the rest
        handler.filler.unlink()
        second = SmtpSink().start()
        try:
            later = clock.now() + timedelta(seconds=601)
            again = open_store(path)
            rest = send_due(again, smtp_config(tmp_path, again, second), now=lambda: later)
            counts = state_counts(again)
            again.dispose()
        finally:
            second.stop()
        assert counts == {"sent": 300}
        every = first + second.recipients()
        assert set(every) == set(addresses)
        # repeated: only the messages whose result the full disk kept from being recorded,
        # at most the pool size
        assert sum(every.values()) - 300 <= 2
        assert rest.sent == sum(second.recipients().values())
