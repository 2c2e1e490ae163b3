"""send_due against a real aiosmtpd server, and the local transports."""

from __future__ import annotations

import asyncio
import itertools
import mailbox
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from digestbot.clock import now as clock_now
from digestbot.deliver import outbox, send_due, send_now, state_counts
from digestbot.deliver.ratelimit import RateLimiter
from digestbot.deliver.verp import tag_for
from digestbot.errors import DeliveryError
from digestbot.store import Digest, Store, Subscriber

from .conftest import PUBLIC_MAIL, make_config
from .smtp_sink import SmtpSink
from .test_deliver_support import make_message, seed_outbox, smtp_config

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _digests(store: Store) -> list[Digest]:
    with store.session() as s:
        return list(s.scalars(select(Digest).order_by(Digest.id)))


def test_500_digests_arrive_exactly_once(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    addresses = seed_outbox(store, 500)
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=4, smtp__per_connection=50)
    seen: list[tuple[int, int]] = []
    report = send_due(store, cfg, progress=lambda done, total: seen.append((done, total)))
    assert (report.sent, report.retried, report.failed, report.bounced) == (500, 0, 0, 0)
    assert report.due == 500 and report.released == 0 and report.ok
    assert smtp_sink.recipients() == Counter(dict.fromkeys(addresses, 1))
    # the bytes that arrived are the stored ones, Message-ID and all
    by_msgid = {d.message_id: d for d in _digests(store)}
    for got in smtp_sink.received:
        assert got.message["Message-ID"] in by_msgid
        # VERP: each digest's own envelope sender names the digest, never the reader
        digest = by_msgid[got.message["Message-ID"]]
        assert got.mail_from == f"bounces+{digest.id}-{tag_for(digest.message_id)}@example.org"
        assert digest.recipient not in got.mail_from
    assert {d.state for d in by_msgid.values()} == {"sent"}
    assert all(d.sent_at is not None and d.attempts == 1 for d in by_msgid.values())
    assert report.connections >= 10  # 50 per connection: connections were renewed
    assert seen[-1] == (500, 500) and all(
        a <= b for (a, _), (b, _) in zip(seen, seen[1:], strict=False)
    )
    # nothing left: a second run sends nothing
    again = send_due(store, cfg)
    assert again.due == 0 and again.sent == 0 and len(smtp_sink.received) == 500


def test_postgresql_claims_do_not_wait_behind_group_commits(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: claims run on a thread (and connection) of their own, beside the group
    commits, which touch other rows; SQLite keeps every store call on one thread (one write
    lock would serialise them anyway)."""
    seed_outbox(store, 120)
    threads: dict[str, set[str]] = {"claim": set(), "record": set()}
    claim, record = outbox.claim, outbox.record

    def claim_spy(*args: Any, **kwargs: Any) -> list[outbox.Job]:
        threads["claim"].add(threading.current_thread().name)
        return claim(*args, **kwargs)

    def record_spy(*args: Any, **kwargs: Any) -> outbox.Tally:
        threads["record"].add(threading.current_thread().name)
        return record(*args, **kwargs)

    monkeypatch.setattr(outbox, "claim", claim_spy)
    monkeypatch.setattr(outbox, "record", record_spy)
    # small claims, so that several run while results are being committed
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=4, delivery__batch_size=10)
    report = send_due(store, cfg)
    assert report.sent == 120 and state_counts(store) == {"sent": 120}
    assert len(threads["claim"]) == len(threads["record"]) == 1
    apart = threads["claim"] != threads["record"]
    assert apart == (store.dialect == "postgresql")


def test_results_are_committed_in_groups_of_at_most_the_pool(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_outbox(store, 200)
    groups: list[int] = []
    # messages the server had accepted while a group was being committed, beyond those
    # committed before: never more than one per channel
    unrecorded: list[int] = []
    record = outbox.record

    def spy(*args: Any, **kwargs: Any) -> outbox.Tally:
        committed = sum(groups)
        groups.append(len(args[1]))
        unrecorded.append(len(smtp_sink.received) - committed)
        # a slow commit: channels announce their next messages meanwhile, and must wait
        time.sleep(0.01)
        unrecorded.append(len(smtp_sink.received) - committed)
        return record(*args, **kwargs)

    monkeypatch.setattr(outbox, "record", spy)
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=4)
    report = send_due(store, cfg)
    assert report.sent == 200 and sum(groups) == 200
    # a channel hands over its next message only once its last result is committed
    assert max(groups) <= 4 and max(unrecorded) <= 4
    # results of messages in flight together share a commit
    assert len(groups) < 200
    assert state_counts(store) == {"sent": 200}


def test_temporary_failures_retry_with_backoff(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 1)
    smtp_sink.handler.data_replies = ["451 4.3.0 try again later"] * 2
    cfg = smtp_config(tmp_path, store, smtp_sink, delivery__backoff_seconds=60)
    first = send_due(store, cfg, now=lambda: T0)
    assert (first.sent, first.retried) == (0, 1) and not first.ok
    (row,) = _digests(store)
    assert row.state == "retry" and row.attempts == 1
    assert row.last_error == "451 4.3.0 try again later"
    assert T0 + timedelta(seconds=45) <= row.next_attempt_at <= T0 + timedelta(seconds=75)
    # not yet due
    assert send_due(store, cfg, now=lambda: T0 + timedelta(seconds=30)).due == 0
    second = send_due(store, cfg, now=lambda: T0 + timedelta(minutes=2))
    assert second.retried == 1
    (row,) = _digests(store)
    later = T0 + timedelta(minutes=2)
    assert later + timedelta(seconds=90) <= row.next_attempt_at <= later + timedelta(seconds=150)
    third = send_due(store, cfg, now=lambda: T0 + timedelta(hours=1))
    assert third.sent == 1
    (row,) = _digests(store)
    assert row.state == "sent" and row.attempts == 3 and row.last_error is None
    assert len(smtp_sink.received) == 1


def test_unknown_user_bounces_and_the_rest_arrive(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 40)
    smtp_sink.handler.rcpt_replies = {"reader7@example.org": "550 5.1.1 no such user here"}
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink))
    assert (report.sent, report.bounced, report.failed, report.retried) == (39, 1, 0, 0)
    assert set(smtp_sink.recipients()) == set(addresses) - {"reader7@example.org"}
    with store.session() as s:
        sub = s.scalars(select(Subscriber).where(Subscriber.email == "reader7@example.org")).one()
        digest = s.scalars(select(Digest).where(Digest.subscriber_id == sub.id)).one()
    assert sub.status == "bounced" and sub.bounced_reason == "550 5.1.1 no such user here"
    assert digest.state == "failed" and digest.last_error == "bounced: 550 5.1.1 no such user here"


def test_other_permanent_failure_fails_without_retry(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 3)
    smtp_sink.handler.data_replies = ["554 5.7.1 message refused"]
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1))
    assert (report.sent, report.failed, report.retried, report.bounced) == (2, 1, 0, 0)
    failed = [d for d in _digests(store) if d.state == "failed"]
    assert len(failed) == 1 and failed[0].last_error == "554 5.7.1 message refused"
    with store.session() as s:
        assert s.scalar(select(func.count()).where(Subscriber.status == "bounced")) == 0


def test_dropped_connections_are_reopened(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 30)
    smtp_sink.handler.drop_after = 3
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=2))
    assert (report.sent, report.retried, report.failed) == (30, 0, 0)
    assert smtp_sink.recipients() == Counter(dict.fromkeys(addresses, 1))
    assert report.connections >= 10


def test_stalled_server_times_out_and_retries(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 2)
    smtp_sink.handler.stall = 2.0
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__timeout=0.5, smtp__pool_size=2)
    report = send_due(store, cfg, now=lambda: T0)
    assert (report.sent, report.retried) == (0, 2)
    assert all(d.state == "retry" and "Timeout" in (d.last_error or "") for d in _digests(store))
    smtp_sink.handler.stall = 0
    later = send_due(store, cfg, now=lambda: T0 + timedelta(hours=2))
    assert later.sent == 2
    # the stalled attempts did reach the server; the same Message-ID lets it drop the repeats
    ids = Counter(m.message["Message-ID"] for m in smtp_sink.received)
    assert len(ids) == 2


def test_a_hanging_server_trips_the_breaker_and_the_rest_stays_queued(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    """Without the breaker 40 digests would take 40 x smtp.timeout on one connection."""
    seed_outbox(store, 40)
    smtp_sink.handler.stall = 3.0
    cfg = smtp_config(
        tmp_path, store, smtp_sink, smtp__timeout=0.3, smtp__pool_size=1, smtp__max_timeouts=3
    )
    started = time.monotonic()
    report = send_due(store, cfg, now=lambda: T0)
    took = time.monotonic() - started
    assert (report.sent, report.retried) == (0, 3)
    assert report.error is not None and "3 messages in a row timed out" in report.error
    assert state_counts(store) == {"retry": 3, "queued": 37}
    assert took < 10, f"took {took:.1f} s"


def test_a_relay_refusing_everyone_is_a_settings_error_and_nothing_fails(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 30)
    smtp_sink.handler.rcpt_replies = dict.fromkeys(addresses, "554 5.7.1 Relay access denied")
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=2, smtp__max_refusals=5)
    with pytest.raises(DeliveryError) as info:
        send_due(store, cfg, now=lambda: T0)
    assert info.value.field == "smtp.host"
    assert "refused 5 recipients in a row" in info.value.message
    assert "554 5.7.1 Relay access denied" in info.value.message
    assert state_counts(store) == {"queued": 30}  # none failed for good, none left claimed


def test_a_few_refused_readers_fail_alone(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 30)
    # refusals spread out: never five in a row
    smtp_sink.handler.rcpt_replies = {a: "554 5.7.1 Relay access denied" for a in addresses[::6]}
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1, smtp__max_refusals=5)
    report = send_due(store, cfg, now=lambda: T0)
    assert (report.sent, report.failed) == (25, 5)
    assert state_counts(store) == {"sent": 25, "failed": 5}


def test_the_deadline_stops_claiming_and_keeps_the_rest_queued(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 30)
    smtp_sink.handler.stall = 0.2  # each message takes a fifth of a second
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1, delivery__deadline_seconds=1)
    report = send_due(store, cfg, now=lambda: T0)
    assert 0 < report.sent < 30
    assert report.error is not None and "delivery.deadline_seconds (1 s)" in report.error
    counts = state_counts(store)
    assert counts == {"sent": report.sent, "queued": 30 - report.sent}


def test_unreachable_server_stops_the_run_and_keeps_the_queue(store: Store, tmp_path: Path) -> None:
    seed_outbox(store, 10)
    report = send_due(store, smtp_config(tmp_path, store, None, smtp__pool_size=1))
    assert report.sent == 0 and report.retried == 1 and not report.ok
    assert report.error is not None and report.error.startswith("cannot connect to 127.0.0.1:")
    assert state_counts(store) == {"retry": 1, "queued": 9}


def test_limit_sends_only_that_many(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    seed_outbox(store, 10)
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink), limit=3)
    assert report.sent == 3 and report.due == 3
    assert state_counts(store) == {"sent": 3, "queued": 7}


def test_stop_finishes_in_flight_and_gives_back_the_rest(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 200)
    stop = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 20:
            stop.set()

    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=2, delivery__batch_size=50)
    report = send_due(store, cfg, progress=progress, stop=stop)
    assert report.stopped and 20 <= report.sent < 200
    counts = state_counts(store)
    assert counts == {"sent": report.sent, "queued": 200 - report.sent}
    assert len(smtp_sink.received) == report.sent


def test_rate_limit_holds_within_five_percent(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 126)
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__rate=50.0, smtp__pool_size=4)
    report = send_due(store, cfg)
    assert report.sent == 126
    times = smtp_sink.handler.times
    # a limit is a ceiling: a loaded machine may send slower, never faster. The schedule
    # itself (that pacing reaches the rate, not below it) is checked on a clock we control.
    achieved = (len(times) - 1) / (times[-1] - times[0])
    assert achieved <= 52.5, achieved
    # and no one-second window holds more than the limit (+5%), give or take the messages
    # of the 4 connections that a busy machine held up and that then arrive together (the
    # grants themselves are spaced exactly, as the tests on a controlled clock below show)
    worst = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert worst <= 52 + 4, worst


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _grants(limiter: RateLimiter, clock: FakeClock, count: int, work: float = 0.0) -> list[float]:
    async def run() -> list[float]:
        granted = []
        for _ in range(count):
            await limiter.acquire()
            granted.append(clock.now)
            clock.now += work  # time spent sending before asking for the next slot
        return granted

    return asyncio.run(run())


def test_rate_limiter_paces_exactly_at_the_rate() -> None:
    clock = FakeClock()
    granted = _grants(RateLimiter(50.0, clock=clock, sleep=clock.sleep), clock, 126)
    achieved = (len(granted) - 1) / (granted[-1] - granted[0])
    assert achieved == pytest.approx(50.0, rel=1e-9)
    assert min(b - a for a, b in itertools.pairwise(granted)) == pytest.approx(0.02)


def test_rate_limiter_does_not_burst_after_falling_behind() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    first = _grants(limiter, clock, 5)
    clock.now += 5.0  # a slow server: 50 slots' worth of time goes by unused
    later = _grants(limiter, clock, 5)
    gaps = [b - a for a, b in itertools.pairwise(first + later)]
    assert min(gaps) == pytest.approx(0.1)


def test_rate_limiter_waits_less_when_sending_takes_time() -> None:
    clock = FakeClock()
    # each send takes 15 ms of the 20 ms slot: the limiter sleeps only the remaining 5 ms
    granted = _grants(RateLimiter(50.0, clock=clock, sleep=clock.sleep), clock, 51, work=0.015)
    assert granted[-1] - granted[0] == pytest.approx(1.0)


def test_rate_zero_means_unlimited() -> None:
    clock = FakeClock()
    granted = _grants(RateLimiter(0.0, clock=clock, sleep=clock.sleep), clock, 100)
    assert granted == [1000.0] * 100


def test_daily_limit_is_a_sliding_window(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    seed_outbox(store, 8)
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__daily_limit=5)
    first = send_due(store, cfg, now=lambda: T0)
    assert first.sent == 5 and first.limited
    again = send_due(store, cfg, now=lambda: T0 + timedelta(hours=23))
    assert again.sent == 0 and again.limited
    nextday = send_due(store, cfg, now=lambda: T0 + timedelta(hours=24, seconds=1))
    assert nextday.sent == 3 and not nextday.limited
    assert len(smtp_sink.received) == 8


def test_every_transport_the_setting_offers_is_registered() -> None:
    from digestbot.config import SETTINGS
    from digestbot.deliver.transports import TRANSPORTS

    (setting,) = [s for s in SETTINGS if s.name == "delivery.transport"]
    assert sorted(setting.choices) == sorted(TRANSPORTS)


def test_maildir_is_the_default_transport(store: Store, tmp_path: Path) -> None:
    addresses = seed_outbox(store, 5)
    cfg = make_config(tmp_path, store.url)
    assert cfg["delivery.transport"] == "maildir"
    report = send_due(store, cfg)
    assert report.sent == 5 and report.transport == "maildir"
    box = mailbox.Maildir(tmp_path / "maildir", create=False)
    assert sorted(m["To"] for m in box) == sorted(addresses)
    assert len(list((tmp_path / "maildir" / "tmp").iterdir())) == 0


def test_file_transport_writes_one_eml_per_digest(store: Store, tmp_path: Path) -> None:
    seed_outbox(store, 3)
    cfg = make_config(tmp_path, store.url, delivery__transport="file")
    report = send_due(store, cfg)
    assert report.sent == 3
    files = sorted((tmp_path / "eml").glob("*.eml"))
    names = sorted(d.message_id.strip("<>") + ".eml" for d in _digests(store))
    assert [f.name for f in files] == names
    assert not list((tmp_path / "eml").glob(".tmp-*"))


def test_dry_run_writes_eml_and_changes_nothing(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 4)
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink), dry_run=True, limit=3)
    assert report.dry_run and report.sent == 3
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 3
    assert state_counts(store) == {"queued": 4}
    assert smtp_sink.received == []


def test_inactive_reader_gets_nothing(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    seed_outbox(store, 3)
    with store.session() as s:
        s.scalars(
            select(Subscriber).where(Subscriber.email == "reader1@example.org")
        ).one().status = "unsubscribed"
    report = send_due(store, smtp_config(tmp_path, store, smtp_sink))
    assert report.sent == 2
    assert "reader1@example.org" not in smtp_sink.recipients()


def test_send_now_delivers_or_raises(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    cfg = make_config(
        tmp_path,
        str(tmp_path / "x.db"),
        delivery__transport="smtp",
        smtp__port=smtp_sink.port,
        **PUBLIC_MAIL,
    )
    msg = make_message("new@example.org", subject="Confirm your subscription")
    send_now(cfg, msg, recipient="new@example.org")
    assert smtp_sink.recipients() == Counter({"new@example.org": 1})
    assert smtp_sink.received[0].message["Subject"] == "Confirm your subscription"

    # also from inside a running event loop, as the web front is
    async def from_async() -> None:
        send_now(cfg, msg.as_bytes(), recipient="again@example.org")

    asyncio.run(from_async())
    assert smtp_sink.recipients()["again@example.org"] == 1

    smtp_sink.handler.rcpt_replies = {"gone@example.org": "550 5.1.1 unknown user"}
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, msg, recipient="gone@example.org")
    assert str(err.value) == (
        "message to gone@example.org was not delivered: 550 5.1.1 unknown user"
    )


def test_send_now_maildir(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, str(tmp_path / "x.db"))
    send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert [m["To"] for m in mailbox.Maildir(tmp_path / "maildir")] == ["a@example.org"]


def test_unwritable_maildir_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    seed_outbox(store, 1)
    (tmp_path / "blocker").write_text("a file, not a folder")
    cfg = make_config(tmp_path, store.url, delivery__maildir=str(tmp_path / "blocker" / "md"))
    with pytest.raises(DeliveryError) as err:
        send_due(store, cfg)
    assert err.value.field == "delivery.maildir"
    assert "cannot write to" in err.value.message
    # the claim went back to the queue
    assert state_counts(store) == {"queued": 1}


def test_a_slow_batch_renews_its_leases_so_nothing_is_sent_twice(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 40)
    cfg = smtp_config(
        tmp_path, store, smtp_sink, smtp__rate=10.0, smtp__pool_size=2, delivery__lease_seconds=1
    )
    reports: list[Any] = []

    def sender() -> None:
        reports.append(send_due(store, cfg))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert smtp_sink.recipients() == Counter(dict.fromkeys(addresses, 1))
    assert sum(r.sent for r in reports) == 40 and state_counts(store) == {"sent": 40}


def test_one_sender_never_says_its_claims_were_taken_over(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    # leases renewed every third of a second while results are committed: a renewal that
    # raced a group's commit took the rows just recorded for claims another sender took
    addresses = seed_outbox(store, 300)
    cfg = smtp_config(
        tmp_path, store, smtp_sink, smtp__rate=200.0, smtp__pool_size=4, delivery__lease_seconds=1
    )
    with caplog.at_level("WARNING", logger="digestbot"):
        report = send_due(store, cfg)
    assert [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()] == []
    assert (report.sent, report.lost) == (300, 0)
    assert smtp_sink.recipients() == Counter(dict.fromkeys(addresses, 1))


def test_claims_another_sender_really_took_are_reported_and_not_sent(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    seed_outbox(store, 30)
    # slow (5 a second), so most claims wait in this sender's queue past a renewal
    cfg = smtp_config(
        tmp_path, store, smtp_sink, smtp__rate=5.0, smtp__pool_size=1, delivery__lease_seconds=3
    )
    reports: list[Any] = []
    with caplog.at_level("WARNING", logger="digestbot"):
        thread = threading.Thread(target=lambda: reports.append(send_due(store, cfg)))
        thread.start()
        deadline = time.monotonic() + 10
        while not smtp_sink.recipients() and time.monotonic() < deadline:
            time.sleep(0.05)
        # another sender whose clock says the leases ran out takes what is still claimed
        taken = outbox.claim(
            store, "other", 30, clock_now() + timedelta(hours=1), timedelta(hours=1)
        )
        thread.join(30)
    assert taken
    (report,) = reports
    warnings = [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()]
    assert warnings and report.lost > 0
    sent_to = smtp_sink.recipients()
    assert max(sent_to.values()) == 1
    # what the other sender holds was not sent by this one, nor recorded by it
    taken_ids = {j.id for j in taken}
    with store.session() as s:
        rows = s.scalars(select(Digest).where(Digest.id.in_(taken_ids))).all()
    assert {r.claimed_by for r in rows if r.state == "sending"} <= {"other"}
    assert report.sent + len([r for r in rows if r.state == "sending"]) <= 30


def test_a_dead_local_workers_claims_are_served_before_the_queue(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 40)
    # a worker of this machine that claimed the last ten rows, then died (a real process
    # that has exited: its pid is free), long before its lease would run out
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = f"{outbox.new_worker_id().rsplit(':', 2)[0]}:{dead.pid}:dead00"
    with store.session() as s:
        last = s.scalars(select(Digest.id).order_by(Digest.id.desc()).limit(10)).all()
        s.execute(
            update(Digest)
            .where(Digest.id.in_(last))
            .values(state="sending", claimed_by=owner, lease_until=T0 + timedelta(days=1))
        )
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1)
    report = send_due(store, cfg, limit=10)
    assert report.sent == 10
    # the ten readers whose sender died got theirs first; the fresh queue waits
    assert set(smtp_sink.recipients()) == set(addresses[-10:])
    report = send_due(store, cfg)
    assert report.sent == 30 and state_counts(store) == {"sent": 40}
    assert smtp_sink.recipients() == Counter(dict.fromkeys(addresses, 1))


def test_a_refused_envelope_sender_stops_the_run_and_bounces_nobody(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 5)
    smtp_sink.handler.mail_reply = "553 5.1.3 Bad sender address syntax"
    cfg = smtp_config(tmp_path, store, smtp_sink, delivery__envelope_from="refused@example.org")
    with pytest.raises(DeliveryError) as info:
        send_due(store, cfg)
    assert info.value.field == "delivery.envelope_from"
    assert "553 5.1.3" in str(info.value) and "digest.from_address" in info.value.hint
    assert state_counts(store) == {"queued": 5}
    with store.session() as s:
        assert set(s.scalars(select(Subscriber.status))) == {"active"}
    assert smtp_sink.received == []


def test_a_reader_who_leaves_during_the_run_gets_nothing_more(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 10)

    def progress(done: int, total: int) -> None:
        with store.session() as s:
            s.execute(
                update(Subscriber)
                .where(Subscriber.email == "reader9@example.org")
                .values(status="unsubscribed")
            )

    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1, delivery__batch_size=2)
    report = send_due(store, cfg, progress=progress)
    assert report.sent == 9 and "reader9@example.org" not in smtp_sink.recipients()
    with store.session() as s:
        left = s.scalars(select(Digest).where(Digest.recipient == "reader9@example.org")).one()
    assert left.state == "failed" and left.last_error == "subscriber is not active"


def test_a_failing_progress_callback_does_not_hang_the_run(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    seed_outbox(store, 6)

    def progress(done: int, total: int) -> None:
        raise RuntimeError("display gone")

    report = send_due(store, smtp_config(tmp_path, store, smtp_sink), progress=progress)
    assert report.sent == 6 and state_counts(store) == {"sent": 6}


def test_rows_whose_result_was_not_recorded_stay_claimed(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_outbox(store, 6)

    def broken(*args: Any, **kwargs: Any) -> outbox.Tally:
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox, "record", broken)
    cfg = smtp_config(tmp_path, store, smtp_sink, smtp__pool_size=1, delivery__batch_size=6)
    report = send_due(store, cfg)  # ends with a summary, not a traceback
    assert report.error is not None and "cannot record delivery results" in report.error
    assert report.hint is not None
    # the one that went out stays claimed (its lease runs out), the rest go back at once
    assert len(smtp_sink.received) == 1
    assert state_counts(store) == {"sending": 1, "queued": 5}
