"""HTTP for the sources, polite and patient: one client per source, requests spaced by
``fetch.spacing``, retries with exponential backoff on 429, 5xx and network errors (a
``Retry-After`` header wins, in seconds or as an HTTP date), conditional requests, a size
limit, and a deadline for the whole answer (httpx's timeout is per read, so a server that
trickles bytes would otherwise hold a run forever)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from .. import clock
from ..errors import FetchError

log = logging.getLogger(__name__)

_RETRY_HINT = (
    "The server is down, overloaded or unreachable; the next run tries again "
    "(fetch.retries, fetch.backoff and fetch.timeout set how hard one run tries)."
)


@dataclass(frozen=True)
class Validators:
    """What a server said about the copy we have, sent back to ask "changed since?"."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass
class Response:
    status: int
    reason: str
    body: bytes
    validators: Validators
    retry_after: float | None = None  # seconds, from a Retry-After header
    attempts: int = 1


def retry_after_seconds(value: str | None, date_header: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds, or an HTTP date taken
    relative to the response's own ``Date`` (so a skewed local clock does not matter),
    else to digestbot's clock. None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(date_header) if date_header else None
    return max(0.0, (when - (reference or clock.now())).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


class Client:
    """GET with retries; one per source, so ``spacing`` keeps its requests apart."""

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float,
        retries: int,
        backoff: float,
        max_wait: float,
        spacing: float,
        max_bytes: int,
        stop: threading.Event | None = None,
    ) -> None:
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_wait, self.spacing, self.max_bytes = max_wait, spacing, max_bytes
        # waits are on an event, never time.sleep: a shutdown cuts them short, and
        # time.sleep fails outright under libfaketime (the test suite's clock a year ahead)
        self.stop = stop or threading.Event()
        self._last: float | None = None  # when the previous request ended (monotonic)
        self._http = httpx.Client(
            headers={"User-Agent": user_agent},
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=5,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, url: str, known: Validators | None = None) -> Response:
        """The answer to GET ``url``: any status but a retryable one once retries are
        exhausted, which raises :class:`FetchError` saying what went wrong."""
        headers = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        attempt = 0
        while True:
            attempt += 1
            self._pause(self._spacing_left())
            response: Response | None = None
            try:
                response = self._once(url, headers)
            except httpx.TimeoutException:
                problem = f"no complete answer within {self.timeout:g} s"
            except httpx.TransportError as exc:
                problem = f"network error: {exc or type(exc).__name__}"
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise FetchError(
                    f"bad URL {url!r}: {exc}", hint="Check fetch.hf_url and fetch.arxiv_url."
                ) from None
            except httpx.RequestError as exc:  # too many redirects, an undecodable body
                raise FetchError(f"the request failed: {exc}", hint=_RETRY_HINT) from None
            finally:
                self._last = time.monotonic()
            if response is not None:
                if not _retryable(response.status):
                    response.attempts = attempt
                    return response
                problem = f"HTTP {response.status} {response.reason}".rstrip()
            if attempt > self.retries:
                tries = f"{attempt} attempt{'s' if attempt != 1 else ''}"
                raise FetchError(f"{problem}; gave up after {tries}", hint=_RETRY_HINT)
            wait = response.retry_after if response is not None else None
            if wait is None:
                wait = self.backoff * 2 ** (attempt - 1)
            if wait > self.max_wait:
                raise FetchError(
                    f"{problem}; the server asks to wait {wait:.0f} s, longer than "
                    f"fetch.max_wait ({self.max_wait:g} s)",
                    hint="The next run tries again.",
                )
            log.info("%s: %s; retrying in %.1f s", url, problem, wait)
            self._pause(wait)

    def _once(self, url: str, headers: dict[str, str]) -> Response:
        deadline = time.monotonic() + self.timeout
        with self._http.stream("GET", url, headers=headers) as answer:
            chunks: list[bytes] = []
            size = 0
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(
                        f"the answer is over {self.max_bytes / 2**20:.0f} MB; nothing was written",
                        hint="Raise ingest.max_file_mb if a listing really is that big.",
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the whole answer took too long")
            return Response(
                answer.status_code,
                answer.reason_phrase,
                b"".join(chunks),
                Validators(answer.headers.get("ETag"), answer.headers.get("Last-Modified")),
                retry_after=retry_after_seconds(
                    answer.headers.get("Retry-After"), answer.headers.get("Date")
                ),
            )

    def _spacing_left(self) -> float:
        if self._last is None:
            return 0.0
        return self.spacing - (time.monotonic() - self._last)

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and self.stop.wait(seconds):
            raise FetchError("stopped: shutdown requested", hint="The next run fetches again.")
