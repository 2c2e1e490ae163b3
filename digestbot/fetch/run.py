"""Fetch the configured sources for some days into the inbox.

Each answer that is a listing is written atomically into ``ingest.inbox`` under its dump
name, so ``digestbot ingest`` stays the one way papers come in and any fetched file can be
replayed. An answer that did not change (304, or the same bytes as last time) and a day
with no papers write nothing. One request failing fails that day alone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from filelock import FileLock, Timeout

from .. import clock
from ..config import Config
from ..errors import ConfigError, FetchError, LockError
from ..files import write_atomic
from .http import Client, Response
from .report import FetchReport, FetchResult
from .sources import SOURCES, Request, Source
from .state import FetchState

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
LOCK_NAME = ".fetch.lock"
MAX_DAYS = 366  # a backfill longer than a year is almost surely a typo


def user_agent(contact: str) -> str:
    try:
        ours = version("digestbot")
    except PackageNotFoundError:  # running from a source tree that was never installed
        ours = "0"
    return f"digestbot/{ours} (+{contact})" if contact.strip() else f"digestbot/{ours}"


def days_between(since: date, until: date) -> list[date]:
    """Every day from ``since`` to ``until``, both included."""
    if since > until:
        raise FetchError(
            f"--since {since} is after today ({until})", hint="Give a date in the past."
        )
    count = (until - since).days + 1
    if count > MAX_DAYS:
        raise FetchError(
            f"--since {since} asks for {count} days, more than {MAX_DAYS}",
            hint="Backfill a year at a time.",
        )
    return [since + timedelta(days=n) for n in range(count)]


def configured_sources(config: Config, names: Sequence[str] | None = None) -> list[Source]:
    """The sources asked for (else ``fetch.sources``), each checked against its settings."""
    chosen = list(names) if names else list(config["fetch.sources"])
    if not chosen:
        raise ConfigError(
            "no source to fetch: fetch.sources is empty",
            field="fetch.sources",
            hint='Set [fetch] sources = ["hf"] (or "arxiv") in digestbot.toml, or pass --source.',
        )
    unknown = [n for n in chosen if n not in SOURCES]
    if unknown:
        raise ConfigError(
            f"unknown source {unknown[0]!r}",
            field="fetch.sources",
            hint="Known sources: " + ", ".join(sorted(SOURCES)) + ".",
        )
    return [SOURCES[name](config) for name in dict.fromkeys(chosen)]


def fetch_sources(
    config: Config,
    *,
    sources: Sequence[str] | None = None,
    days: list[date] | None = None,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> FetchReport:
    """Fetch ``days`` (None: the listing of ``now``'s day, by default the clock's) from
    ``sources`` (None: ``fetch.sources``).

    Raises for what stops every request alike (no source, bad settings, another fetch
    running); a request that fails is a failed result, and the others go on."""
    chosen = configured_sources(config, sources)
    inbox = config.writable_dir("ingest.inbox")
    now = now or clock.now()
    today = now.date()
    planned = [(source, req) for source in chosen for req in source.requests(days, today)]
    report = FetchReport()
    lock = FileLock(str(inbox / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockError(f"another digestbot fetch is writing into {inbox}") from None
    try:
        state = FetchState(inbox)
        clients: dict[str, Client] = {}
        try:
            for done, (source, req) in enumerate(planned, 1):
                if stop is not None and stop.is_set():
                    break
                if source.name not in clients:
                    clients[source.name] = _client(config, stop)
                result = _fetch_one(clients[source.name], source, req, state, inbox, now)
                log.log(logging.WARNING if result.status == "failed" else logging.INFO, result)
                report.results.append(result)
                if progress is not None:
                    progress(done, len(planned))
        finally:
            for client in clients.values():
                client.close()
    finally:
        lock.release()
    return report


def _client(config: Config, stop: threading.Event | None) -> Client:
    return Client(
        user_agent=user_agent(config["fetch.contact"]),
        timeout=config["fetch.timeout"],
        retries=config["fetch.retries"],
        backoff=config["fetch.backoff"],
        max_wait=config["fetch.max_wait"],
        spacing=config["fetch.spacing"],
        max_bytes=config["ingest.max_file_mb"] * 2**20,
        stop=stop,
    )


def _fetch_one(
    client: Client, source: Source, req: Request, state: FetchState, inbox: Path, now: datetime
) -> FetchResult:
    result = FetchResult(source.name, req.label, req.url, "failed")
    try:
        response = client.get(req.url, state.validators(req.url))
        return _store(source, req, response, state, inbox, now, result)
    except FetchError as exc:
        result.error, result.hint = exc.message, exc.hint
    except OSError as exc:  # the inbox or the state file could not be written
        result.error = f"cannot write into the inbox: {exc.strerror or exc}"
        result.hint = "Check that ingest.inbox is writable and the disk is not full."
    return result


def _store(
    source: Source,
    req: Request,
    response: Response,
    state: FetchState,
    inbox: Path,
    now: datetime,
    result: FetchResult,
) -> FetchResult:
    if response.status == 304:
        result.status = "unchanged"
        return result
    if response.status != 200:
        what = "no listing there" if response.status == 404 else "refused"
        raise FetchError(
            f"HTTP {response.status} {response.reason}: {what}".replace("  ", " "),
            hint=f"Check the date and fetch.{source.name}_url; nothing was written.",
        )
    papers = source.check(response.body)
    digest = hashlib.sha256(response.body).hexdigest()
    if digest == state.sha256(req.url):
        # a server without validators sent the same bytes again: ingest has them already
        result.status = "unchanged"
    elif papers == 0:
        result.status = "empty"
    else:
        path = inbox / req.file_name
        write_atomic(path, response.body)
        result.status, result.file, result.papers = "written", str(path), papers
    state.remember(req.url, response.validators, digest, now)
    return result
