"""RSS and Atom over HTTP, with validators so feed readers polling every few minutes get
a 304 and no body when nothing changed."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import clock
from ..render.feeds import feed_bytes_for
from .pages import site_of
from .site import Site

# Subscriber feed tokens are random URL-safe strings; "new" is the public feed.
FEED_NAME = re.compile(r"^(new|[A-Za-z0-9_-]{16,64})\.(rss|atom)$")
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
_BUILD_DATE = re.compile(rb"<lastBuildDate>([^<]{1,64})</lastBuildDate>|<updated>([^<]{1,64})<")
CACHE = "public, max-age=300"
NOT_FOUND = "There is no feed at this address. Copy the feed link from your preferences page."


def is_not_modified(request_headers: Headers, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 13.1: If-None-Match wins over If-Modified-Since; ETags compare weakly."""
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        ours = etag.removeprefix("W/")
        return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))
    since = request_headers.get("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return last_modified.replace(microsecond=0) <= when
    return False


def _built_at(body: bytes) -> datetime | None:
    match = _BUILD_DATE.search(body)
    if not match:
        return None
    raw = (match.group(1) or match.group(2)).decode("ascii", "replace").strip()
    try:
        if match.group(1):
            return parsedate_to_datetime(raw).astimezone(UTC)
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _load(site: Site, token: str, kind: str, name: str) -> tuple[bytes, datetime]:
    """A feed written by the last digest run if there is one, else built from the store."""
    static = site.config.path("digest.feeds_dir") / name
    if static.is_file():
        body = static.read_bytes()
        return body, datetime.fromtimestamp(static.stat().st_mtime, UTC)
    built = feed_bytes_for(site.store, site.config, token, kind)
    if built is None:  # no active reader has this token
        raise HTTPException(404, NOT_FOUND)
    return built, _built_at(built) or clock.now()


async def feed(request: Request) -> Response:
    site = site_of(request)
    name = request.path_params["name"]
    match = FEED_NAME.match(name)
    if not match:
        raise HTTPException(404, NOT_FOUND)
    token, kind = match.groups()
    body, modified = await run_in_threadpool(_load, site, token, kind, name)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(modified.replace(microsecond=0), usegmt=True),
        "Cache-Control": CACHE if token == "new" else "private, max-age=300",
    }
    if is_not_modified(request.headers, etag, modified):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=MEDIA_TYPES[kind] + "; charset=utf-8", headers=headers)
