"""The one-shot run on both backends: who is due, the whole pipeline, the lock, exit codes."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digestbot.cli import main
from digestbot.config import Config
from digestbot.pipeline import run_lock, run_once, select_due
from digestbot.store import Digest, Store, Subscriber, open_store

from .conftest import PUBLIC_MAIL_ENV, make_config
from .pipeline_helpers import (
    add,
    digestbot_process,
    fill_inbox,
    maildir_recipients,
    stop_with_sigterm,
    subprocess_env,
)
from .smtp_sink import SmtpSink

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # a Sunday


def test_select_due_by_local_send_hour_and_last_period(store: Store) -> None:
    berlin_8 = add(store, "b8@example.org", timezone="Europe/Berlin", send_hour=8)  # 07:00Z
    berlin_14 = add(store, "b14@example.org", timezone="Europe/Berlin", send_hour=14)  # 13:00Z
    tokyo_weekly_fri = add(
        store, "t@example.org", timezone="Asia/Tokyo", frequency="weekly", weekday=4
    )
    tokyo_weekly_mon = add(
        store, "m@example.org", timezone="Asia/Tokyo", frequency="weekly", weekday=0, send_hour=9
    )
    # 12:00Z is 21:00 Sunday in Tokyo: Monday 09:00 of this ISO week has long passed
    already = add(store, "done@example.org", timezone="UTC", send_hour=6)
    paused = add(store, "p@example.org", timezone="UTC", send_hour=6, status="unsubscribed")
    with store.session() as session:
        session.get(Subscriber, already).last_period = "2026-11-22/daily"  # type: ignore[union-attr]

    selection = select_due(store, NOON)
    assert [(d.subscriber_id, d.period) for d in selection.due] == [
        (berlin_8, "2026-11-22/daily"),
        (tokyo_weekly_fri, "2026-W47/weekly"),
        (tokyo_weekly_mon, "2026-W47/weekly"),
    ]
    assert berlin_14 not in {d.subscriber_id for d in selection.due}
    assert paused not in {d.subscriber_id for d in selection.due}
    only = select_due(store, NOON, ids=[tokyo_weekly_mon, berlin_14])
    assert [d.subscriber_id for d in only.due] == [tokyo_weekly_mon]


def test_select_due_reports_a_schedule_it_cannot_evaluate(store: Store) -> None:
    good = add(store, "good@example.org", send_hour=0)
    bad = add(store, "bad@example.org", send_hour=0)
    with store.session() as session:
        # a zone the system's tz database no longer knows; validation stops new ones
        session.get(Subscriber, bad).timezone = "Mars/Olympus"  # type: ignore[union-attr]
    selection = select_due(store, NOON)
    assert [d.subscriber_id for d in selection.due] == [good]
    assert [s.timezone for s, _ in selection.bad_schedules] == ["Mars/Olympus"]


def _config(tmp_path: Path, db: str, **overrides: object) -> Config:
    return make_config(tmp_path, db, **overrides)


def test_whole_run_then_nothing_to_do(tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, db_url)
    store = open_store(db_url)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "mail@example.org", send_hour=0, keywords=["diffusion"])
        add(store, "feed@example.org", send_hour=0, keywords=["speech"], formats="rss")
        add(store, "later@example.org", send_hour=23, keywords=["speech"])
        # nothing matches: an empty digest, not sent (digest.send_empty), its period done
        add(store, "none@example.org", send_hour=0, keywords=["xylophone quasar"])
        report = run_once(store, config, now=NOON)
        assert report.status == "ok", report.as_dict()
        assert report.files == 5 and report.papers_new > 100 and report.ingest_failed == 0
        assert (report.due, report.queued, report.feed_only) == (3, 1, 1)
        assert (report.sent, report.retried, report.send_failed) == (1, 0, 0)
        assert report.feeds >= 1
        assert set(report.timings) == {"ingest", "select", "digests", "send", "feeds", "prune"}
        assert maildir_recipients(config.path("delivery.maildir")) == {"mail@example.org": 1}
        assert sorted(p.name for p in (config.path("ingest.inbox") / "processed").iterdir())
        with store.session() as session:
            rows = {s.email: s for s in session.query(Subscriber)}
            assert rows["mail@example.org"].last_period == "2026-11-22/daily"
            assert rows["mail@example.org"].last_digest_at == NOON
            assert rows["later@example.org"].last_period is None
            assert rows["none@example.org"].last_period == "2026-11-22/daily"
            assert rows["none@example.org"].last_digest_at is None
            states = sorted(d.state for d in session.query(Digest))
            assert states == ["feed_only", "sent"]

        again = run_once(store, config, now=NOON)
        assert again.status == "nothing", again.as_dict()
        assert maildir_recipients(config.path("delivery.maildir")) == {"mail@example.org": 1}
    finally:
        store.dispose()


def test_a_bad_dump_is_a_partial_failure_and_the_rest_goes_on(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    config = _config(tmp_path, db)
    store = open_store(db)
    try:
        inbox = config.path("ingest.inbox")
        fill_inbox(inbox, count=1)
        (inbox / "broken.json").write_text('{"papers": [', encoding="utf-8")
        add(store, "mail@example.org", send_hour=0)
        report = run_once(store, config, now=NOON)
        assert report.status == "partial"
        assert (report.files, report.ingest_failed, report.sent) == (2, 1, 1)
    finally:
        store.dispose()


def test_empty_digests_mark_the_period_without_sending(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    config = _config(tmp_path, db)
    store = open_store(db)
    try:
        sid = add(store, "mail@example.org", send_hour=0)
        report = run_once(store, config, now=NOON)  # no papers at all
        assert [(d.subscriber_id, d.state) for d in report.digests] == [(sid, "empty")]
        assert report.sent == 0 and report.status == "ok"
        assert select_due(store, NOON).due == []
    finally:
        store.dispose()


# --- the command ---------------------------------------------------------------------------

ENV = {"DIGESTBOT_SECRET_KEY": "test-secret-key-not-for-production"}
LINE = {
    "ingest": r"ingest:  (\d+) files, (\d+) new papers, (\d+) updated, (\d+) failed  \([\d.]+ s\)",
    "due": r"due:     (\d+) subscribers?  \([\d.]+ s\)",
    "digests": r"digests: (\d+) queued, (\d+) feed only, (\d+) empty, (\d+) failed  \(.*\)",
    "send": r"send:    (\d+) sent, (\d+) retried, (\d+) failed, (\d+) bounced  \([\d.]+ s\)",
    "feeds": r"feeds:   (\d+) written  \(.*\)",
    "result": r"result:  (ok|partial|nothing) in [\d.]+ s \(exit (\d+)\)",
}


def _parse(output: str) -> dict[str, tuple[str, ...]]:
    lines = output.splitlines()
    assert lines[0] == "digestbot run at 2026-11-22T12:00:00+00:00"
    assert len(lines) == 7, output
    out = {}
    for line, (name, pattern) in zip(lines[1:], LINE.items(), strict=True):
        match = re.fullmatch(pattern, line)
        assert match, f"{name}: {line!r}"
        out[name] = match.groups()
    return out


def test_a_run_without_a_secret_key_stops_before_any_work(runner: CliRunner) -> None:
    fill_inbox(Path("inbox"))
    store = open_store("d.db")
    add(store, "mail@example.org", send_hour=0)
    store.dispose()
    result = runner.invoke(main, ["run", "--db", "d.db", "--now", "2026-11-22T12:00:00Z"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: web.secret_key: the signing secret is missing")
    assert "Hint: Set DIGESTBOT_SECRET_KEY" in result.output
    assert not (Path("inbox") / "processed").exists()  # nothing ingested or moved
    store = open_store("d.db")
    with store.session() as session:
        assert session.query(Digest).count() == 0
    store.dispose()


def test_run_command_summary_and_exit_codes(runner: CliRunner) -> None:
    fill_inbox(Path("inbox"))
    store = open_store("d.db")
    add(store, "mail@example.org", send_hour=0)
    store.dispose()
    now = ["--db", "d.db", "--now", "2026-11-22T12:00:00Z"]
    first = runner.invoke(main, ["run", *now], env=ENV)
    assert first.exit_code == 0, first.output
    got = _parse(first.output)
    assert got["ingest"][0] == "5" and got["due"] == ("1",)
    assert got["digests"] == ("1", "0", "0", "0")
    assert got["send"] == ("1", "0", "0", "0")
    assert got["result"] == ("ok", "0")

    nothing = runner.invoke(main, ["run", *now], env=ENV)
    assert nothing.exit_code == 4
    assert _parse(nothing.output)["result"] == ("nothing", "4")
    zero = runner.invoke(main, ["run", *now, "--nothing-exit-code", "0"], env=ENV)
    assert zero.exit_code == 0 and _parse(zero.output)["result"] == ("nothing", "0")
    quiet = runner.invoke(main, ["-q", "run", *now], env=ENV)
    assert (quiet.exit_code, quiet.output) == (4, "")

    as_json = runner.invoke(main, ["run", *now, "--json"], env=ENV)
    data = json.loads(as_json.output)
    assert as_json.exit_code == 4
    assert (data["status"], data["exit_code"], data["now"]) == (
        "nothing",
        4,
        "2026-11-22T12:00:00+00:00",
    )
    assert data["send"] == {"sent": 0, "retried": 0, "failed": 0, "bounced": 0}


def test_run_command_partial_exit_code(runner: CliRunner) -> None:
    Path("inbox").mkdir()
    Path("inbox/broken.json").write_text("{", encoding="utf-8")
    result = runner.invoke(main, ["run", "--db", "d.db", "--now", "2026-11-22T12:00"], env=ENV)
    assert result.exit_code == 3, result.output
    assert _parse(result.output)["ingest"][:2] == ("1", "0")
    assert _parse(result.output)["ingest"][3] == "1"


def test_second_run_exits_at_once_with_a_clear_message(runner: CliRunner, db_url: str) -> None:
    store = open_store(db_url)
    config = make_config(Path.cwd(), db_url)
    lock = run_lock(store, config).acquire()
    try:
        result = runner.invoke(main, ["run", "--db", db_url], env=ENV)
    finally:
        lock.release()
        store.dispose()
    assert result.exit_code == 1
    lines = result.output.splitlines()
    if db_url.startswith("postgresql"):
        schema = db_url.rsplit("%3D", 1)[1]  # the test's own schema: the lock is per store
        assert lines[0] == (
            f"Error: another digestbot run holds the lock on this store (schema {schema})"
        )
    else:
        lock_path = Path(db_url).resolve().parent / "digestbot.db.run.lock"
        assert lines[0] == f"Error: another digestbot run is running (lock {lock_path})"
    assert lines[1] == (
        "Hint: Wait for the other run to finish; if none is running, the lock is stale."
    )
    assert len(lines) == 2


def test_bad_now_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["run", "--now", "yesterday"])
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO 8601 time" in result.output


@pytest.mark.parametrize("folder", ["digest.feeds_dir", "ingest.inbox"])
def test_unusable_folder_stops_the_run_before_any_work(tmp_path: Path, folder: str) -> None:
    from digestbot.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    db = str(tmp_path / "d.db")
    config = _config(tmp_path, db, **{folder.replace(".", "__"): str(blocker / "sub")})
    store = open_store(db)
    try:
        with pytest.raises(ConfigError) as info:
            run_once(store, config, now=NOON)
    finally:
        store.dispose()
    assert info.value.field == folder
    assert "Not a directory" in info.value.message


def test_an_unsubscribe_during_queueing_is_seen_or_waits(store: Store) -> None:
    """The status re-check and the enqueue are one transaction: an unsubscribe committed
    between them either is seen (no digest) or waits until the digest is queued."""
    import threading
    from types import SimpleNamespace

    from sqlalchemy import event, select, update

    from digestbot.pipeline.digests import _queue

    from .test_deliver_support import add_subscribers

    (sub_id,) = add_subscribers(store, 1)
    with store.session() as s:
        sub = s.get(Subscriber, sub_id)
    other = open_store(store.url, migrate=False)
    done = threading.Event()

    def unsubscribe() -> None:
        with other.session() as s:
            s.execute(
                update(Subscriber).where(Subscriber.id == sub_id).values(status="unsubscribed")
            )
        done.set()

    thread = threading.Thread(target=unsubscribe)
    seen: dict[str, bool] = {}

    def after(conn, cursor, statement, params, context, many) -> None:  # type: ignore[no-untyped-def]
        if not thread.is_alive() and not done.is_set() and "FROM subscribers" in statement:
            thread.start()
            thread.join(1.5)  # it finishes now unless the re-check holds a lock
            seen["meanwhile"] = done.is_set()

    event.listen(store.engine, "after_cursor_execute", after)
    message = SimpleNamespace(
        as_bytes=lambda: b"Subject: x\n\nhi\n", message_id="<m@x>", subject="x"
    )
    try:
        outcomes = _queue(store, [(sub, "2026-11-22/daily", [], message)], NOON)
    finally:
        event.remove(store.engine, "after_cursor_execute", after)
        thread.join(30)
        other.dispose()
    committed_meanwhile = seen["meanwhile"] and outcomes[0].state != "skipped"
    with store.session() as s:
        queued = s.scalars(select(Digest)).all()
    assert not (committed_meanwhile and queued), "queued a digest for a reader who had left"


def test_a_batch_marks_each_period_done_once(store: Store, tmp_path: Path) -> None:
    """A batch's readers are marked done in one UPDATE per period: a reader twice in one
    batch gets one digest (the second is skipped, as a period already done is), and a
    digest made for any of their entries still sets the time of their last digest."""
    from sqlalchemy import select

    from digestbot.pipeline.digests import _queue
    from digestbot.render import render_digest

    from .test_deliver_support import add_subscribers

    one, two = add_subscribers(store, 2)
    with store.session() as s:
        subs = {x.id: x for x in s.scalars(select(Subscriber))}
    day, week = "2026-11-22/daily", "2026-11-22/weekly"
    # a real rendered digest (digest.send_empty renders one without papers)
    message = render_digest(
        subs[one],
        [],
        period=day,
        config=make_config(tmp_path, str(store.engine.url), digest__send_empty=True),
        now=NOON,
    )
    assert message is not None
    outcomes = _queue(
        store,
        [
            (subs[one], day, [], message),
            (subs[one], day, [], message),  # the same period again: skipped
            (subs[one], week, [], None),  # another period, empty: done, time kept
            (subs[two], day, [], None),  # empty: done, no time
        ],
        NOON,
    )
    assert [o.state for o in outcomes] == ["queued", "skipped", "empty", "empty"]
    with store.session() as s:
        first, second = s.get(Subscriber, one), s.get(Subscriber, two)
        assert (first.last_period, first.last_digest_at) == (week, NOON)
        assert (second.last_period, second.last_digest_at) == (day, None)
        assert len(s.scalars(select(Digest)).all()) == 1


def test_a_run_killed_before_sending_delivers_once_on_the_next_run(
    tmp_path: Path, db_url: str
) -> None:
    """Queueing commits each digest with its period: a run that dies after queueing (here it
    stops before its send stage) loses nothing, and the next run sends, not re-queues."""
    config = _config(tmp_path, db_url)
    store = open_store(db_url)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "mail@example.org", send_hour=0, keywords=["diffusion"])
        first = run_once(store, config, now=NOON, send=False)
        assert (first.queued, first.sent) == (1, 0)
        assert maildir_recipients(config.path("delivery.maildir")) == {}

        later = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
        second = run_once(store, config, now=later)
        assert (second.due, second.queued, second.sent) == (0, 0, 1)
        assert maildir_recipients(config.path("delivery.maildir")) == {"mail@example.org": 1}
        with store.session() as session:
            assert [d.state for d in session.query(Digest)] == ["sent"]
    finally:
        store.dispose()


def test_due_subscribers_are_read_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring, rendering and queueing read due readers from the database in chunks
    (SUBSCRIBER_CHUNK to score, BATCH to render and queue), never all at once."""
    from sqlalchemy import event

    from digestbot.pipeline import digests as pipeline_digests

    monkeypatch.setattr(pipeline_digests, "SUBSCRIBER_CHUNK", 3)
    monkeypatch.setattr(pipeline_digests, "BATCH", 3)
    db = str(tmp_path / "chunks.db")
    config = _config(tmp_path, db)
    store = open_store(db)
    try:
        fill_inbox(config.path("ingest.inbox"))
        for n in range(8):
            add(store, f"reader{n}@example.org", send_hour=0, keywords=["diffusion"])
        rows_per_select: list[int] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            if statement.lstrip().upper().startswith("SELECT") and "FROM subscribers" in statement:
                if "subscribers.id IN" in statement:
                    rows_per_select.append(len(parameters))

        event.listen(store.engine, "before_cursor_execute", count)
        report = run_once(store, config, now=NOON)
        event.remove(store.engine, "before_cursor_execute", count)
        assert report.queued == 8 and report.sent == 8
        assert rows_per_select, "the digest stage read no subscribers by id"
        assert max(rows_per_select) <= 3
    finally:
        store.dispose()


def test_a_batch_is_queued_at_once_with_an_outcome_per_digest_in_order(store: Store) -> None:
    from types import SimpleNamespace

    from sqlalchemy import select, update

    from digestbot.deliver import Outgoing, enqueue_many
    from digestbot.pipeline.digests import _queue

    period = "2026-11-22/daily"
    ids = [add(store, f"r{i}@example.org") for i in range(5)]
    with store.session() as s:
        s.execute(update(Subscriber).where(Subscriber.id == ids[1]).values(status="bounced"))
        s.execute(update(Subscriber).where(Subscriber.id == ids[3]).values(formats="rss"))
        # another run queued r4's digest for this period a moment ago
        enqueue_many(
            s,
            [Outgoing(s.get(Subscriber, ids[4]), period, b"Subject: x\n\nhi\n", "<o@x>", "x", [])],
        )
    with store.session() as s:
        subs = [s.get(Subscriber, i) for i in ids]

    def message(n: int) -> SimpleNamespace:
        return SimpleNamespace(
            as_bytes=lambda: f"Subject: {n}\n\nhi\n".encode(), message_id=f"<{n}@x>", subject=str(n)
        )

    batch = [(subs[0], period, [], message(0)), (subs[1], period, [], message(1))]
    batch += [(subs[2], period, [], None), (subs[3], period, [], message(3))]
    batch += [(subs[4], period, [], message(4))]
    outcomes = _queue(store, batch, NOON)
    assert [(o.subscriber_id, o.state) for o in outcomes] == [
        (ids[0], "queued"),
        (ids[1], "skipped"),
        (ids[2], "empty"),
        (ids[3], "feed_only"),
        (ids[4], "exists"),
    ]
    with store.session() as s:
        digests = {d.subscriber_id: d for d in s.scalars(select(Digest))}
        assert {i: d.state for i, d in digests.items()} == {
            ids[0]: "queued",
            ids[3]: "feed_only",
            ids[4]: "queued",
        }
        assert digests[ids[0]].message == b"Subject: 0\n\nhi\n"
        assert digests[ids[4]].message_id == "<o@x>"  # the other run's digest stays
        periods = {sub.id: sub.last_period for sub in s.scalars(select(Subscriber))}
    assert periods == {ids[0]: period, ids[1]: None, ids[2]: period, ids[3]: period, ids[4]: period}


def test_sigterm_during_a_run_finishes_in_flight_and_gives_back_the_rest(
    tmp_path: Path,
) -> None:
    """`systemctl stop` during a timer run: out within 10 s, nothing left claimed."""
    sink = SmtpSink()
    sink.handler.stall = 0.5  # each DATA takes half a second: the run is mid-send for long
    sink.start()
    db = str(tmp_path / "d.db")
    fill_inbox(tmp_path / "inbox")
    store = open_store(db)
    for i in range(40):
        add(store, f"reader{i}@example.org", send_hour=0)
    store.dispose()
    env = subprocess_env(
        tmp_path,
        **PUBLIC_MAIL_ENV,
        DIGESTBOT_DB=db,
        DIGESTBOT_DELIVERY_TRANSPORT="smtp",
        DIGESTBOT_SMTP_HOST=sink.host,
        DIGESTBOT_SMTP_PORT=str(sink.port),
    )
    try:
        with digestbot_process(["run", "--now", "2026-11-22T12:00:00Z"], tmp_path, env) as proc:
            deadline = time.monotonic() + 120
            while not sink.received and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            assert sink.received, "no message arrived before the deadline"
            out, err, took = stop_with_sigterm(proc, timeout=30)
    finally:
        sink.stop()
    assert took < 10, f"took {took:.1f} s to stop"
    assert proc.returncode == 3, (out, err)  # partial: the rest waits for the next run
    assert "Stopping: finishing the messages in flight" in err
    assert "result:  partial" in out
    store = open_store(db)
    with store.session() as session:
        states = Counter(d.state for d in session.query(Digest))
    store.dispose()
    assert states["sending"] == 0
    assert 0 < states["sent"] < 40
    assert states["sent"] + states["queued"] == 40
    assert set(sink.recipients().values()) == {1}  # nobody twice
    assert len(sink.received) == states["sent"]


def test_digest_workers_queue_what_the_run_queues_in_its_own_process(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches rendered and queued in worker processes (spawned, each opening the store
    itself) give every reader the digest the run's own process gives them: same state,
    subject and papers in the same order, and a message the stdlib parser reads."""
    from email import message_from_bytes, policy

    from sqlalchemy import select

    from digestbot.pipeline import digests as pipeline_digests
    from digestbot.store.models import DigestItem, DigestMessage

    monkeypatch.setattr(pipeline_digests, "POOL_MIN_READERS", 1)
    interests = [["diffusion"], ["language model", "speech"], ["retrieval"], ["zyzzyva"]]

    def digests(db: str, workers: int) -> dict[str, tuple]:
        config = _config(tmp_path / f"w{workers}", db, digest__workers=workers)
        store = open_store(db)
        try:
            fill_inbox(config.path("ingest.inbox"))
            for n in range(450):  # three batches and a part
                formats = "rss" if n % 10 == 0 else "email"
                add(
                    store,
                    f"r{n}@example.org",
                    send_hour=0,
                    keywords=interests[n % 4],
                    formats=formats,
                )
            report = run_once(store, config, now=NOON, send=False)
            assert report.errors == [] and len(report.digests) == 450
            out: dict[str, tuple] = {}
            with store.session() as s:
                for d in s.scalars(select(Digest)):
                    items = s.scalars(
                        select(DigestItem.paper_id)
                        .where(DigestItem.digest_id == d.id)
                        .order_by(DigestItem.rank)
                    ).all()
                    raw = s.scalar(
                        select(DigestMessage.message).where(DigestMessage.digest_id == d.id)
                    )
                    parts = 0
                    if raw is not None:
                        parsed = message_from_bytes(raw, policy=policy.default)
                        parts = len(list(parsed.iter_parts()))
                    out[d.recipient] = (d.state, d.subject, tuple(items), parts)
            return out
        finally:
            store.dispose()

    alone = digests(str(tmp_path / "alone.db"), workers=1)
    assert "worker processes" not in caplog.text
    with caplog.at_level("INFO", logger="digestbot"):
        pooled = digests(db_url, workers=2)
    assert "in 2 worker processes" in caplog.text
    assert pooled == alone
    assert {state for state, *_ in alone.values()} == {"queued", "feed_only"}


def test_a_digest_worker_that_dies_fails_its_batches_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-run (as the OOM killer would): the batches it held are reported
    failed with the reason, new workers take the rest, and the next run queues the readers
    whose digests were lost, each reader getting exactly one digest."""
    import multiprocessing
    import os
    import signal
    import threading

    from sqlalchemy import func, select

    from digestbot.pipeline import digests as pipeline_digests

    monkeypatch.setattr(pipeline_digests, "POOL_MIN_READERS", 1)
    db = str(tmp_path / "d.db")
    config = _config(tmp_path, db, digest__workers=2)
    store = open_store(db)
    killed: list[int] = []

    def queued() -> int:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(Digest)) or 0

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = multiprocessing.active_children()
            if workers and queued() > 0:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.02)

    try:
        fill_inbox(config.path("ingest.inbox"))
        for n in range(2000):
            add(store, f"r{n}@example.org", send_hour=0, keywords=["diffusion"])
        killer = threading.Thread(target=kill_a_worker)
        killer.start()
        first = run_once(store, config, now=NOON, send=False)
        killer.join()
        assert killed
        failed = [d for d in first.digests if d.state == "failed"]
        assert failed and all("worker: " in (d.error or "") for d in failed)
        assert first.queued > 0 and first.queued + len(failed) == 2000
        later = datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
        second = run_once(store, config, now=later, send=False)
        assert second.queued <= len(failed)
        with store.session() as s:
            per_reader = s.execute(
                select(Digest.subscriber_id, func.count()).group_by(Digest.subscriber_id)
            ).all()
        assert len(per_reader) == 2000 and {n for _, n in per_reader} == {1}
    finally:
        store.dispose()


def test_digest_workers_start_with_the_pool(store: Store, tmp_path: Path) -> None:
    """All of them, before any batch is handed over: their start-up runs while the run
    loads the scoring model."""
    import multiprocessing

    from digestbot.pipeline.workers import DigestPool

    before = set(multiprocessing.active_children())
    pool = DigestPool(store, _config(tmp_path, store.url), 2)
    try:
        assert len(set(multiprocessing.active_children()) - before) == 2
    finally:
        pool.close()
