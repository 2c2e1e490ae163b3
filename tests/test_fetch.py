"""`digestbot fetch` against a real HTTP server on 127.0.0.1 playing Hugging Face and arXiv:
success, empty and missing days, 429 and 503 with retries, a slow server, malformed
answers, conditional requests, the arXiv Atom feed, and `digestbot run` end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from filelock import FileLock

from digestbot import clock
from digestbot.cli import main
from digestbot.config import BY_NAME, Config
from digestbot.errors import LockError
from digestbot.fetch import SOURCES, fetch_sources, user_agent
from digestbot.fetch.http import retry_after_seconds
from digestbot.ingest import ingest_inbox, ingest_paths
from digestbot.pipeline import run_once
from digestbot.schedule import Jobs
from digestbot.store import Digest, Paper, Store, open_store

from .conftest import make_config
from .fetch_server import FetchServer, Reply, fetch_server
from .pipeline_helpers import add, fill_inbox, maildir_recipients

DATA = Path(__file__).parent / "data" / "fetch"
HF_DAY = (DATA / "hf-2026-10-03.json").read_bytes()
ATOM = (DATA / "arxiv-cs.LG+cs.CL.atom").read_bytes()
DAY = date(2026, 10, 3)
NOON = datetime(2026, 10, 3, 12, 0, tzinfo=UTC)
HF_PATH, ARXIV_PATH = "/api/daily_papers", "/api/query"
ENV = {"DIGESTBOT_SECRET_KEY": "test-secret-key-not-for-production"}


@pytest.fixture
def server() -> Iterator[FetchServer]:
    with fetch_server() as running:
        yield running


def _config(tmp_path: Path, server: FetchServer, db: str = "", **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "fetch__sources": ["hf"],
        "fetch__hf_url": server.base + HF_PATH,
        "fetch__arxiv_url": server.base + ARXIV_PATH,
        "fetch__spacing": 0.0,
        "fetch__backoff": 0.0,
        "fetch__timeout": 5.0,
        "fetch__retries": 2,
        "fetch__contact": "mailto:ops@example.org",
    }
    settings.update(overrides)
    return make_config(tmp_path, db or str(tmp_path / "d.db"), **settings)


def _visible(inbox: Path) -> list[str]:
    """What ingest would read: the inbox's files, hidden ones (the fetch state) aside."""
    return sorted(p.name for p in inbox.iterdir() if p.is_file() and not p.name.startswith("."))


def _hf_day(upvotes: int = 0, comments: int = 0) -> bytes:
    """The recorded day with other counts, as a later fetch the same day would see them."""
    items = json.loads(HF_DAY)
    for i, item in enumerate(items):
        item["paper"]["upvotes"] = upvotes + i
        item["numComments"] = comments + i
    return json.dumps(items).encode()


# --- Hugging Face, one day ------------------------------------------------------------------


def test_a_day_is_written_into_the_inbox_as_sent(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY, etag='"v1"'), date="2026-10-03")
    config = _config(tmp_path, server)
    report = fetch_sources(config, days=[DAY])
    inbox = config.path("ingest.inbox")
    assert [(r.label, r.status, r.papers) for r in report.results] == [
        ("hf 2026-10-03", "written", 5)
    ]
    assert report.results[0].file == str(inbox / "hf-2026-10-03.json")
    assert (inbox / "hf-2026-10-03.json").read_bytes() == HF_DAY
    assert _visible(inbox) == ["hf-2026-10-03.json"]
    (request,) = server.seen(HF_PATH)
    assert request.query == {"date": "2026-10-03", "limit": "100"}
    assert request.headers["User-Agent"] == user_agent("mailto:ops@example.org")
    assert request.headers["User-Agent"].startswith("digestbot/")
    assert request.headers["User-Agent"].endswith(" (+mailto:ops@example.org)")
    assert "If-None-Match" not in request.headers


def test_today_comes_from_the_clock(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    with clock.moved_to(datetime(2026, 10, 3, 23, 30, tzinfo=UTC)):
        report = fetch_sources(_config(tmp_path, server))
    assert [r.label for r in report.results] == ["hf 2026-10-03"]
    assert report.written == 1


def test_unchanged_day_costs_a_304_and_writes_nothing(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY, etag='"v1"'), date="2026-10-03")
    config = _config(tmp_path, server)
    inbox = config.path("ingest.inbox")
    assert fetch_sources(config, days=[DAY]).written == 1
    (inbox / "hf-2026-10-03.json").unlink()  # as if ingest had filed it away
    state = inbox / ".fetch-state.json"
    before = state.stat().st_mtime_ns
    again = fetch_sources(config, days=[DAY])
    assert [r.status for r in again.results] == ["unchanged"]
    assert _visible(inbox) == []
    assert state.stat().st_mtime_ns == before
    assert server.seen(HF_PATH)[-1].headers["If-None-Match"] == '"v1"'


def test_last_modified_is_sent_back_too(tmp_path: Path, server: FetchServer) -> None:
    stamp = "Sat, 03 Oct 2026 10:00:00 GMT"
    server.route(HF_PATH, Reply(body=HF_DAY, last_modified=stamp), date="2026-10-03")
    config = _config(tmp_path, server)
    fetch_sources(config, days=[DAY])
    again = fetch_sources(config, days=[DAY])
    assert [r.status for r in again.results] == ["unchanged"]
    assert server.seen(HF_PATH)[-1].headers["If-Modified-Since"] == stamp


def test_same_bytes_from_a_server_without_validators_write_nothing(
    tmp_path: Path, server: FetchServer
) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    config = _config(tmp_path, server)
    inbox = config.path("ingest.inbox")
    fetch_sources(config, days=[DAY])
    (inbox / "hf-2026-10-03.json").unlink()
    state = (inbox / ".fetch-state.json").read_bytes()
    assert [r.status for r in fetch_sources(config, days=[DAY]).results] == ["unchanged"]
    assert _visible(inbox) == []
    assert (inbox / ".fetch-state.json").read_bytes() == state
    server.route(HF_PATH, Reply(body=_hf_day(upvotes=7)), date="2026-10-03")
    assert [r.status for r in fetch_sources(config, days=[DAY]).results] == ["written"]


def test_an_empty_day_writes_nothing(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=b"[]"), date="2026-10-04")
    config = _config(tmp_path, server)
    report = fetch_sources(config, days=[date(2026, 10, 4)])
    assert [(r.status, r.file) for r in report.results] == [("empty", None)]
    assert str(report.results[0]) == "hf 2026-10-04: no papers listed, nothing written"
    assert _visible(config.path("ingest.inbox")) == []


def test_a_missing_day_fails_alone(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    server.route(HF_PATH, Reply(body=b"[]"), date="2026-10-04")
    # 2026-10-02 has no route: the server answers 404
    config = _config(tmp_path, server)
    report = fetch_sources(config, days=[date(2026, 10, 2), DAY, date(2026, 10, 4)])
    assert [r.status for r in report.results] == ["failed", "written", "empty"]
    failed = report.results[0]
    assert failed.error == "HTTP 404 Not Found: no listing there"
    assert failed.hint is not None and "fetch.hf_url" in failed.hint
    assert len(server.seen(HF_PATH, "2026-10-02")) == 1  # a 404 is not retried
    assert _visible(config.path("ingest.inbox")) == ["hf-2026-10-03.json"]


# --- retries, Retry-After, timeouts ----------------------------------------------------------


def test_429_waits_as_retry_after_says_then_succeeds(tmp_path: Path, server: FetchServer) -> None:
    server.route(
        HF_PATH,
        Reply(429, b"slow down", headers={"Retry-After": "1"}),
        Reply(body=HF_DAY),
        date="2026-10-03",
    )
    report = fetch_sources(_config(tmp_path, server), days=[DAY])
    assert [r.status for r in report.results] == ["written"]
    first, second = server.seen(HF_PATH)
    assert second.at - first.at >= 0.95  # backoff is 0: the wait is the server's


def test_503_until_retries_run_out_backs_off_exponentially(
    tmp_path: Path, server: FetchServer
) -> None:
    server.route(HF_PATH, Reply(503, b"<html>down</html>"), date="2026-10-03")
    config = _config(tmp_path, server, fetch__retries=2, fetch__backoff=0.2)
    report = fetch_sources(config, days=[DAY])
    (result,) = report.results
    assert result.status == "failed"
    assert result.error == "HTTP 503 Service Unavailable; gave up after 3 attempts"
    times = [s.at for s in server.seen(HF_PATH)]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.19 and times[2] - times[1] >= 0.39
    assert _visible(config.path("ingest.inbox")) == []


def test_a_server_asking_to_wait_too_long_is_left_for_the_next_run(
    tmp_path: Path, server: FetchServer
) -> None:
    server.route(HF_PATH, Reply(429, headers={"Retry-After": "3600"}), date="2026-10-03")
    started = time.monotonic()
    report = fetch_sources(_config(tmp_path, server, fetch__max_wait=60.0), days=[DAY])
    assert time.monotonic() - started < 5
    assert report.results[0].error == (
        "HTTP 429 Too Many Requests; the server asks to wait 3600 s, longer than "
        "fetch.max_wait (60 s)"
    )
    assert len(server.seen(HF_PATH)) == 1


def test_a_shutdown_cuts_a_backoff_wait_short(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(503))
    config = _config(tmp_path, server, fetch__backoff=30.0)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    report = fetch_sources(config, days=[DAY, date(2026, 10, 4)], stop=stop)
    assert time.monotonic() - started < 5
    assert [(r.label, r.error) for r in report.results] == [
        ("hf 2026-10-03", "stopped: shutdown requested")
    ]
    assert len(server.requests) == 1


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("120") == 120.0
    # an HTTP date is taken against the answer's own Date header: no clock skew
    assert (
        retry_after_seconds("Sat, 03 Oct 2026 12:00:05 GMT", "Sat, 03 Oct 2026 12:00:00 GMT") == 5.0
    )
    with clock.moved_to(datetime(2026, 10, 3, 12, 0, 0, tzinfo=UTC)):
        assert retry_after_seconds("Sat, 03 Oct 2026 12:00:30 GMT") == 30.0
        assert retry_after_seconds("Sat, 03 Oct 2026 11:00:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_a_slow_server_times_out(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY, delay=2.0), date="2026-10-03")
    config = _config(tmp_path, server, fetch__timeout=0.3, fetch__retries=1)
    started = time.monotonic()
    report = fetch_sources(config, days=[DAY])
    took = time.monotonic() - started
    assert report.results[0].error == "no complete answer within 0.3 s; gave up after 2 attempts"
    assert took < 2.0  # two attempts of 0.3 s, not the server's 2 s each
    assert len(server.seen(HF_PATH)) == 2


def test_a_server_that_trickles_is_cut_off_at_the_deadline(
    tmp_path: Path, server: FetchServer
) -> None:
    # each piece comes well within the read timeout; the whole answer would take 2 s
    server.route(HF_PATH, Reply(body=HF_DAY, trickle=0.2), date="2026-10-03")
    config = _config(tmp_path, server, fetch__timeout=0.5, fetch__retries=0)
    started = time.monotonic()
    (result,) = fetch_sources(config, days=[DAY]).results
    assert time.monotonic() - started < 1.5
    assert result.error == "no complete answer within 0.5 s; gave up after 1 attempt"
    assert _visible(config.path("ingest.inbox")) == []


def test_an_answer_over_the_size_limit_is_dropped(tmp_path: Path, server: FetchServer) -> None:
    big = b"[" + b",".join([HF_DAY[1:-1]] * 60) + b"]"  # 1.3 MB, a valid list
    assert len(big) > 2**20
    server.route(HF_PATH, Reply(body=big), date="2026-10-03")
    config = _config(tmp_path, server, ingest__max_file_mb=1)
    (result,) = fetch_sources(config, days=[DAY]).results
    assert result.error == "the answer is over 1 MB; nothing was written"
    assert len(server.seen(HF_PATH)) == 1
    assert _visible(config.path("ingest.inbox")) == []


def test_a_network_error_is_retried_then_reported(tmp_path: Path, server: FetchServer) -> None:
    port = server.port
    server.stop()  # nothing listens there any more
    config = _config(tmp_path, server, fetch__hf_url=f"http://127.0.0.1:{port}{HF_PATH}")
    (result,) = fetch_sources(config, days=[DAY]).results
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("network error: ")
    assert result.error.endswith("gave up after 3 attempts")


# --- answers that are not listings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'[{"paper": {"id": "2610.01092", "title": "Ego', "the response is not valid JSON: "),
        (b"<!doctype html><title>Log in</title>", "the response is not valid JSON: "),
        (b'{"error": "Invalid date"}', "the API answered with an error: 'Invalid date'"),
        (b'{"papers": 3}', "the response is a JSON dict, not a list of papers"),
        (b'[{"paper": {"id": "1"}}]', "item [0] has no title: not a daily_papers entry"),
        (b"[1, 2]", "item [0] is not a daily_papers entry"),
    ],
)
def test_an_answer_that_is_not_a_listing_is_refused_and_not_written(
    tmp_path: Path, server: FetchServer, body: bytes, error: str
) -> None:
    server.route(HF_PATH, Reply(body=body), date="2026-10-03")
    config = _config(tmp_path, server)
    (result,) = fetch_sources(config, days=[DAY]).results
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith(error)
    assert result.hint is not None and result.hint.startswith("Nothing was written.")
    assert _visible(config.path("ingest.inbox")) == []
    # nothing remembered either: the good answer that follows is written
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    assert fetch_sources(config, days=[DAY]).written == 1


# --- arXiv -----------------------------------------------------------------------------------


def test_arxiv_asks_for_the_newest_submissions_once(tmp_path: Path, server: FetchServer) -> None:
    server.route(ARXIV_PATH, Reply(body=ATOM))
    config = _config(tmp_path, server, fetch__sources=["arxiv"], fetch__arxiv_max_results=50)
    report = fetch_sources(config, now=NOON)
    (result,) = report.results
    assert (result.label, result.status, result.papers) == ("arxiv 2026-10-03", "written", 5)
    inbox = config.path("ingest.inbox")
    assert _visible(inbox) == ["arxiv-cs.LG+cs.CL-2026-10-03.atom"]
    assert (inbox / "arxiv-cs.LG+cs.CL-2026-10-03.atom").read_bytes() == ATOM
    (request,) = server.seen(ARXIV_PATH)
    assert request.query == {
        "search_query": "cat:cs.LG OR cat:cs.CL",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "start": "0",
        "max_results": "50",
    }


def test_arxiv_backfill_asks_day_by_day(tmp_path: Path, server: FetchServer) -> None:
    server.route(ARXIV_PATH, Reply(body=ATOM))
    config = _config(tmp_path, server, fetch__sources=["arxiv"], fetch__arxiv_categories=["cs.CL"])
    report = fetch_sources(config, days=[date(2026, 10, 1), date(2026, 10, 2)])
    assert [r.file and Path(r.file).name for r in report.results] == [
        "arxiv-cs.CL-2026-10-01.atom",
        "arxiv-cs.CL-2026-10-02.atom",
    ]
    assert [s.query["search_query"] for s in server.seen(ARXIV_PATH)] == [
        "(cat:cs.CL) AND submittedDate:[202610010000 TO 202610012359]",
        "(cat:cs.CL) AND submittedDate:[202610020000 TO 202610022359]",
    ]


EMPTY_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>ArXiv Query</title>
<opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">0</opensearch:totalResults>
</feed>"""
ERROR_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><entry>
<id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id><title>Error</title>
<summary>incorrect id format for 1234</summary></entry></feed>"""
BOMB = b"""<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&b;</title></feed>"""


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (EMPTY_FEED, "empty", None),
        (ERROR_FEED, "failed", "the arXiv API refused the query: incorrect id format for 1234"),
        (BOMB, "failed", "the response is refused: the XML declares a DTD"),
        (b"<feed><entry>", "failed", "the response is refused: not well-formed XML"),
        (
            b"<rss version='2.0'/>",
            "failed",
            "the response is XML but not an Atom feed (root <rss>)",
        ),
    ],
)
def test_arxiv_answers_that_are_not_listings(
    tmp_path: Path, server: FetchServer, body: bytes, status: str, error: str | None
) -> None:
    server.route(ARXIV_PATH, Reply(body=body))
    config = _config(tmp_path, server, fetch__sources=["arxiv"])
    (result,) = fetch_sources(config, now=NOON).results
    assert result.status == status
    assert (result.error or "").startswith(error or "")
    assert _visible(config.path("ingest.inbox")) == []


def test_bad_arxiv_categories_are_a_config_error(tmp_path: Path, server: FetchServer) -> None:
    from digestbot.errors import ConfigError

    config = _config(
        tmp_path, server, fetch__sources=["arxiv"], fetch__arxiv_categories=["cs.LG", "cs LG"]
    )
    with pytest.raises(ConfigError, match="not an arXiv category: 'cs LG'"):
        fetch_sources(config, now=NOON)
    assert server.requests == []


# --- into the store --------------------------------------------------------------------------


def _paper_counts(store: Store) -> dict[str, tuple[int | None, int | None]]:
    with store.session() as session:
        return {p.id: (p.upvotes, p.comments) for p in session.query(Paper)}


@pytest.mark.parametrize("hf_first", [True, False], ids=["hf-first", "arxiv-first"])
def test_hf_and_arxiv_give_one_paper_each_keeping_hf_counts(
    tmp_path: Path, store: Store, hf_first: bool
) -> None:
    hf = tmp_path / "hf-2026-10-03.json"
    hf.write_bytes(_hf_day(upvotes=20, comments=3))
    atom = tmp_path / "arxiv-cs.LG+cs.CL-2026-10-03.atom"
    atom.write_bytes(ATOM)
    report = ingest_paths(store, [hf, atom] if hf_first else [atom, hf], now=NOON)
    assert report.failed == [] and report.files == 2
    assert report.papers_new == 7  # five from HF, five from arXiv, three of them the same
    counts = _paper_counts(store)
    hf_ids = [item["paper"]["id"] for item in json.loads(HF_DAY)]
    assert {i: counts[i] for i in hf_ids} == {i: (20 + n, 3 + n) for n, i in enumerate(hf_ids)}
    arxiv_only = sorted(set(counts) - set(hf_ids))
    assert arxiv_only == ["2609.36585", "2609.37690"]
    assert all(counts[i] == (None, None) for i in arxiv_only)
    with store.session() as session:
        memfold = session.get(Paper, "2609.36435")
        assert memfold is not None
        # arXiv's hard-wrapped title and abstract are the same text as HF's
        assert memfold.title == "MemFold: " + memfold.title.split(": ", 1)[1]
        assert "\n" not in memfold.abstract and "  " not in memfold.abstract
        assert len(memfold.sightings) == 2


def test_arxiv_feed_ingests_with_its_fields(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "feed.atom"
    path.write_bytes(ATOM)
    report = ingest_paths(store, [path], now=NOON)
    (dump,) = report.dumps
    assert (dump.status, dump.format, dump.listed_on, dump.entries) == (
        "ok",
        "arxiv-atom",
        date(2026, 9, 30),  # the newest submission in the feed
        5,
    )
    with store.session() as session:
        paper = session.get(Paper, "2609.36585")
        assert paper is not None
        assert paper.title.startswith("Transformers Stop Thinking Too Early")
        assert paper.published_on == date(2026, 9, 29)
        assert paper.authors is not None and len(paper.authors) == paper.author_count == 3
        assert paper.links == ["https://arxiv.org/abs/2609.36585"]
        assert paper.upvotes is None and paper.comments is None


def test_a_big_feed_goes_in_whole(tmp_path: Path, sqlite_store: Store) -> None:
    # a feed of thousands of entries is over the size at which ingest parses in a child
    head, rest = ATOM.split(b"<entry>", 1)
    entry = b"<entry>" + rest.split(b"</entry>", 1)[0] + b"</entry>\n"
    entries = [
        entry.replace(b"2609.37690", b"2611.%05d" % n).replace(b"Honeycomb", b"Honeycomb%d" % n)
        for n in range(1800)
    ]
    path = tmp_path / "big.atom"
    path.write_bytes(head + b"".join(entries) + b"</feed>\n")
    assert path.stat().st_size > 4 * 2**20
    report = ingest_paths(sqlite_store, [path], now=NOON)
    assert report.failed == [] and report.papers_new == 1800
    assert _paper_counts(sqlite_store).keys() == {f"2611.{n:05d}" for n in range(1800)}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            BOMB,
            "Atom feed refused: the XML declares a DTD (<!DOCTYPE ...>), which a feed never needs",
        ),
        (EMPTY_FEED, "the Atom feed holds no entries: no papers"),
        (ERROR_FEED, "the feed is an arXiv API error: incorrect id format for 1234"),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>tag:x</id><title>T</title>'
            b"<summary>S</summary></entry></feed>",
            "an Atom feed, but not from arXiv: no entry has an arxiv.org/abs/ id",
        ),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry>'
            b"<id>http://arxiv.org/abs/2610.00001v1</id><title>T</title></entry></feed>",
            "entry[0].summary: the paper has no abstract",
        ),
    ],
)
def test_bad_atom_dumps_fail_alone(tmp_path: Path, store: Store, body: bytes, error: str) -> None:
    bad = tmp_path / "bad.atom"
    bad.write_bytes(body)
    good = tmp_path / "good.atom"
    good.write_bytes(ATOM)
    report = ingest_paths(store, [bad, good], now=NOON)
    (failure,) = report.failed
    assert failure.error == error
    assert report.papers_new == 5


def test_a_refetch_updates_counts_and_sends_nothing_again(
    tmp_path: Path, server: FetchServer, db_url: str
) -> None:
    server.route(HF_PATH, Reply(body=_hf_day(), etag='"morning"'), date="2026-10-03")
    server.route(HF_PATH, Reply(body=b"[]"), date="2026-10-04")
    config = _config(tmp_path, server, db_url)
    store = open_store(db_url)
    try:
        add(store, "ada@example.org", send_hour=0, keywords=["video generation", "memory"])
        first = run_once(store, config, now=NOON)
        assert first.status == "ok", first.as_dict()
        assert (first.fetch_written, first.files, first.papers_new, first.sent) == (1, 1, 5, 1)
        assert set(_paper_counts(store).values()) <= {(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)}

        # trending: the same day's listing, fetched again in the evening, has new counts
        server.route(HF_PATH, Reply(body=_hf_day(40, 6), etag='"evening"'), date="2026-10-03")
        evening = run_once(store, config, now=datetime(2026, 10, 3, 20, 0, tzinfo=UTC))
        assert (evening.fetch_written, evening.files, evening.papers_new) == (1, 1, 0)
        assert evening.papers_updated == 5
        assert (evening.due, evening.queued, evening.sent) == (0, 0, 0)
        ids = [item["paper"]["id"] for item in json.loads(HF_DAY)]
        assert _paper_counts(store) == {i: (40 + n, 6 + n) for n, i in enumerate(ids)}
        assert server.seen(HF_PATH, "2026-10-03")[-1].headers["If-None-Match"] == '"morning"'

        # the next day's digest does not send the updated papers again
        next_day = run_once(store, config, now=datetime(2026, 10, 4, 12, 0, tzinfo=UTC))
        assert [d.state for d in next_day.digests] == ["empty"]
        assert maildir_recipients(config.path("delivery.maildir")) == {"ada@example.org": 1}
        with store.session() as session:
            assert session.query(Digest).count() == 1
    finally:
        store.dispose()


def test_a_run_goes_on_when_a_source_is_down(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(503))
    config = _config(tmp_path, server, fetch__retries=1)
    store = open_store(config["store.db"])
    try:
        fill_inbox(config.path("ingest.inbox"), count=1)
        add(store, "mail@example.org", send_hour=0)
        report = run_once(store, config, now=NOON)
        assert report.status == "partial"
        assert (report.files, report.ingest_failed, report.sent) == (1, 0, 1)
        lines = report.summary_lines()
        assert lines[0].startswith("fetch:   0 written, 0 unchanged, 0 empty, 1 failed  (")
        assert (
            "error:   fetch: hf 2026-10-03: failed: HTTP 503 Service Unavailable; "
            "gave up after 2 attempts"
        ) in lines
        assert report.as_dict()["fetch"]["failed"] == 1
    finally:
        store.dispose()


def test_no_sources_no_fetching(tmp_path: Path, server: FetchServer) -> None:
    config = _config(tmp_path, server, fetch__sources=[])
    store = open_store(config["store.db"])
    try:
        report = run_once(store, config, now=NOON)
    finally:
        store.dispose()
    assert not report.fetched and "fetch" not in report.timings
    assert not any(line.startswith("fetch:") for line in report.summary_lines())
    assert server.requests == []


def test_the_daemons_digest_job_fetches_before_it_ingests(
    tmp_path: Path, server: FetchServer
) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    server.route(ARXIV_PATH, Reply(body=ATOM))
    config = _config(tmp_path, server, fetch__sources=["hf", "arxiv"])
    store = open_store(config["store.db"])
    try:
        report = Jobs(store, config).digest(now=NOON)
    finally:
        store.dispose()
    assert report is not None
    assert (report.fetch_written, report.files, report.papers_new) == (2, 2, 7)


def test_one_fetch_at_a_time(tmp_path: Path, server: FetchServer) -> None:
    config = _config(tmp_path, server)
    inbox = config.writable_dir("ingest.inbox")
    with FileLock(str(inbox / ".fetch.lock")), pytest.raises(LockError, match="another"):
        fetch_sources(config, days=[DAY])
    assert server.requests == []


def test_every_registered_source_is_a_setting_choice() -> None:
    kind = BY_NAME["fetch.sources"].type
    assert kind.startswith("list:") and set(kind[5:].split("|")) == set(SOURCES)
    assert BY_NAME["fetch.sources"].default == []


def test_a_fetched_day_replays_through_ingest(tmp_path: Path, server: FetchServer) -> None:
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    config = _config(tmp_path, server)
    fetch_sources(config, days=[DAY])
    store = open_store(config["store.db"])
    try:
        report = ingest_inbox(store, config.path("ingest.inbox"), now=NOON)
        (dump,) = report.dumps
        assert (dump.status, dump.format, dump.listed_on, dump.papers) == (
            "ok",
            "hf-json",
            DAY,
            5,
        )
        inbox = config.path("ingest.inbox")
        assert _visible(inbox) == [] and (inbox / "processed" / "hf-2026-10-03.json").exists()
        # a copy of the processed file replays to the same papers: nothing new
        again = ingest_paths(store, [inbox / "processed" / "hf-2026-10-03.json"], now=NOON)
        assert [d.status for d in again.dumps] == ["skipped"]
    finally:
        store.dispose()


# --- the commands ----------------------------------------------------------------------------


def _toml(server: FetchServer, sources: str = '["hf"]') -> str:
    return (
        '[store]\ndb = "d.db"\n'
        "[fetch]\n"
        f"sources = {sources}\n"
        f'hf_url = "{server.base}{HF_PATH}"\n'
        f'arxiv_url = "{server.base}{ARXIV_PATH}"\n'
        "spacing = 0.0\nbackoff = 0.0\nretries = 1\n"
    )


def test_fetch_command_output_and_exit_codes(runner: CliRunner, server: FetchServer) -> None:
    Path("digestbot.toml").write_text(_toml(server), encoding="utf-8")
    server.route(HF_PATH, Reply(body=HF_DAY, etag='"v1"'), date="2026-10-03")
    server.route(HF_PATH, Reply(body=b"[]"), date="2026-10-02")
    now = ["--now", "2026-10-03T09:00Z"]

    first = runner.invoke(main, ["fetch", *now])
    assert first.exit_code == 0, first.output
    assert first.output == (
        f"hf 2026-10-03: 5 papers -> {Path('inbox') / 'hf-2026-10-03.json'}\n"
        "Fetched: 1 written, 0 unchanged, 0 empty, 0 failed.\n"
    )
    again = runner.invoke(main, ["fetch", "--date", "2026-10-03", *now])
    assert again.exit_code == 4
    assert again.output.splitlines() == [
        "hf 2026-10-03: unchanged since the last fetch, nothing written",
        "Fetched: 0 written, 1 unchanged, 0 empty, 0 failed.",
    ]
    assert runner.invoke(main, ["fetch", *now, "--nothing-exit-code", "0"]).exit_code == 0

    # 2026-10-01: no route, a 404 day among good ones
    backfill = runner.invoke(main, ["fetch", "--since", "2026-10-01", *now])
    assert backfill.exit_code == 3
    assert "Error: hf 2026-10-01: failed: HTTP 404 Not Found: no listing there\n" in backfill.output
    assert "Hint: Check the date and fetch.hf_url; nothing was written.\n" in backfill.output
    assert "hf 2026-10-02: no papers listed, nothing written\n" in backfill.output
    assert backfill.output.endswith("Fetched: 0 written, 1 unchanged, 1 empty, 1 failed.\n")

    as_json = runner.invoke(main, ["fetch", "--date", "2026-10-01", "--json", *now])
    data = json.loads(as_json.output)
    assert as_json.exit_code == 1  # every request failed
    assert (data["failed"], data["exit_code"]) == (1, 1)
    assert data["results"][0]["url"].endswith("/api/daily_papers?date=2026-10-01&limit=100")


def test_fetch_command_refusals(runner: CliRunner, server: FetchServer) -> None:
    now = ["--now", "2026-10-03T09:00Z"]
    nothing = runner.invoke(main, ["fetch", *now])
    assert nothing.exit_code == 1
    assert nothing.output == (
        "Error: fetch.sources: no source to fetch: fetch.sources is empty\n"
        'Hint: Set [fetch] sources = ["hf"] (or "arxiv") in digestbot.toml, or pass --source.\n'
    )
    both = runner.invoke(main, ["fetch", "--date", "2026-10-01", "--since", "2026-10-01", *now])
    assert both.exit_code == 2 and "give --date or --since, not both" in both.output
    future = runner.invoke(main, ["fetch", "--source", "hf", "--date", "2026-10-04", *now])
    assert future.exit_code == 2 and "2026-10-04 is after today (2026-10-03)" in future.output
    unknown = runner.invoke(main, ["fetch", "--source", "rss", *now])
    assert unknown.exit_code == 2
    too_long = runner.invoke(main, ["fetch", "--source", "hf", "--since", "2020-01-01", *now])
    assert too_long.exit_code == 1
    assert "--since 2020-01-01 asks for 2468 days, more than 366" in too_long.output
    assert server.requests == []


def test_run_command_with_sources_ingests_from_the_server(
    runner: CliRunner, server: FetchServer
) -> None:
    Path("digestbot.toml").write_text(_toml(server, '["hf", "arxiv"]'), encoding="utf-8")
    server.route(HF_PATH, Reply(body=HF_DAY), date="2026-10-03")
    server.route(ARXIV_PATH, Reply(body=ATOM))
    store = open_store("d.db")
    add(store, "ada@example.org", send_hour=0, keywords=["video generation"])
    store.dispose()
    result = runner.invoke(main, ["run", "--now", "2026-10-03T12:00Z"], env=ENV)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "digestbot run at 2026-10-03T12:00:00+00:00"
    assert lines[1].startswith("fetch:   2 written, 0 unchanged, 0 empty, 0 failed  (")
    # arXiv's file comes first; HF's adds to three of its papers, new in this same run
    assert lines[2].startswith("ingest:  2 files, 7 new papers, 0 updated, 0 failed  (")
    assert lines[-1].startswith("result:  ok in ")
    assert "send:    1 sent" in result.output
    processed = sorted(p.name for p in Path("inbox/processed").iterdir())
    assert processed == ["arxiv-cs.LG+cs.CL-2026-10-03.atom", "hf-2026-10-03.json"]

    no_fetch = runner.invoke(main, ["run", "--now", "2026-10-03T13:00Z", "--no-fetch"], env=ENV)
    assert no_fetch.exit_code == 4 and "fetch:" not in no_fetch.output
    assert len(server.requests) == 2
