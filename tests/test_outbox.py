"""The outbox on both backends: idempotent enqueue, exclusive claims, leases, results."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from digestbot.deliver import outbox, state_counts
from digestbot.deliver.outbox import Outcome, backoff_delay
from digestbot.scoring.picks import Pick
from digestbot.store import Digest, DigestItem, Store, Subscriber, open_store

from .test_deliver_support import (
    PERIOD,
    add_papers,
    add_subscribers,
    enqueue,
    make_message,
    seed_outbox,
)

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def _enqueue_one(store: Store, sub_id: int, period: str = PERIOD, **kw: object) -> Digest | None:
    papers = add_papers(store)
    with store.session() as s:
        sub = s.get(Subscriber, sub_id)
        msg = make_message(sub.email)
        args = {
            "message": msg.as_bytes(),
            "message_id": msg["Message-ID"],
            "subject": "Your papers",
            "picks": [Pick(p, 0.5, matched=("moe",)) for p in papers],
        }
        args.update(kw)
        return enqueue(s, subscriber=sub, period=period, **args)  # type: ignore[arg-type]


def test_enqueue_writes_digest_and_items_once(store: Store) -> None:
    (sub_id,) = add_subscribers(store, 1)
    first = _enqueue_one(store, sub_id)
    assert (
        first is not None and first.state == "queued" and first.recipient == "reader0@example.org"
    )
    again = _enqueue_one(store, sub_id)
    assert again is None
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Digest)) == 1
        items = s.scalars(select(DigestItem).order_by(DigestItem.rank)).all()
    assert [i.rank for i in items] == [1, 2, 3]
    assert items[0].why == {"matched": ["moe"], "similar_to": None, "similar_title": None}
    # another period is another digest
    assert _enqueue_one(store, sub_id, period="2026-11-23/daily") is not None


def test_feed_only_digest_is_recorded_and_never_sent(store: Store) -> None:
    (sub_id,) = add_subscribers(store, 1)
    row = _enqueue_one(store, sub_id, message=None, state="feed_only")
    assert row is not None and row.state == "feed_only" and row.message is None
    assert outbox.claim(store, "w", 10, NOW, LEASE) == []


def _outbox_rows(store: Store, period: str) -> tuple[list[tuple], list[tuple]]:
    """A period's digests and their papers, without ids and timestamps."""
    with store.session() as s:
        digests = s.execute(
            select(
                Digest.subscriber_id,
                Digest.state,
                Digest.message_id,
                Digest.recipient,
                Digest.subject,
                Digest.message,
                Digest.attempts,
                Digest.next_attempt_at,
                Digest.last_error,
                Digest.claimed_by,
                Digest.lease_until,
                Digest.sent_at,
            )
            .where(Digest.period == period)
            .order_by(Digest.subscriber_id)
        ).all()
        items = s.execute(
            select(
                Digest.subscriber_id,
                DigestItem.paper_id,
                DigestItem.rank,
                DigestItem.score,
                DigestItem.why,
            )
            .join(Digest, Digest.id == DigestItem.digest_id)
            .where(Digest.period == period)
            .order_by(Digest.subscriber_id, DigestItem.rank)
        ).all()
    return [tuple(r) for r in digests], [tuple(r) for r in items]


def test_enqueue_many_writes_what_enqueue_writes(store: Store) -> None:
    ids = add_subscribers(store, 5)
    papers = add_papers(store)
    with store.session() as s:
        subs = list(s.scalars(select(Subscriber).where(Subscriber.id.in_(ids))))
    picks = [Pick(p, 0.9 - i / 10, matched=("moe", "routing")) for i, p in enumerate(papers)]

    def outgoing(sub: Subscriber, period: str) -> outbox.Outgoing:
        rss = sub.id == ids[2]
        return outbox.Outgoing(
            subscriber=sub,
            period=period,
            message=None if rss else f"To: {sub.email}\n\nhello\n".encode(),
            message_id=f"<{sub.id}@digestbot.localhost>",
            subject="Your papers",
            picks=picks[: 1 + sub.id % 3],
            state="feed_only" if rss else "queued",
        )

    with store.session() as s:
        for sub in subs:
            d = outgoing(sub, "one/daily")
            enqueue(
                s,
                subscriber=d.subscriber,
                period=d.period,
                message=d.message,
                message_id=d.message_id,
                subject=d.subject,
                picks=d.picks,
                state=d.state,
            )
    with store.session() as s:
        got = outbox.enqueue_many(s, [outgoing(sub, "many/daily") for sub in subs])
    assert all(isinstance(i, int) for i in got) and len(set(got)) == 5
    assert _outbox_rows(store, "many/daily") == _outbox_rows(store, "one/daily")
    with store.session() as s:
        assert got == sorted(s.scalars(select(Digest.id).where(Digest.period == "many/daily")))

    # existing digests (and a repeat within one call) are left alone and come back as None
    with store.session() as s:
        again = outbox.enqueue_many(
            s,
            [
                outgoing(subs[0], "many/daily"),
                outgoing(subs[1], "new/daily"),
                outgoing(subs[1], "new/daily"),
            ],
        )
    assert again[0] is None and isinstance(again[1], int) and again[2] is None
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Digest)) == 11
        n_items = s.scalar(
            select(func.count()).select_from(DigestItem).where(DigestItem.digest_id == again[1])
        )
    assert n_items == 1 + subs[1].id % 3
    with store.session() as s:
        assert outbox.enqueue_many(s, []) == []
        with pytest.raises(ValueError, match="needs its message"):
            outbox.enqueue_many(s, [outbox.Outgoing(subs[0], "x", None, "<x@y>", "s", [])])
        with pytest.raises(ValueError, match="queued or feed_only"):
            outbox.enqueue_many(
                s, [outbox.Outgoing(subs[0], "x", b"m", "<x@y>", "s", [], state="sent")]
            )


def test_enqueue_from_many_threads_creates_one_row(store: Store) -> None:
    (sub_id,) = add_subscribers(store, 1)
    add_papers(store)
    results: list[object] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(_enqueue_one(store, sub_id))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert state_counts(store) == {"queued": 1}


def test_claims_are_exclusive_across_threads(store: Store) -> None:
    seed_outbox(store, 60)
    got: list[list[int]] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        barrier.wait()
        mine: list[int] = []
        while jobs := outbox.claim(store, f"w{i}", 7, NOW, LEASE):
            mine += [j.id for j in jobs]
        got.append(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in got for i in mine]
    assert len(every) == 60 and len(set(every)) == 60
    assert state_counts(store) == {"sending": 60}


def test_lease_of_a_dead_worker_is_taken_over_after_it_expires(store: Store) -> None:
    seed_outbox(store, 3)
    jobs = outbox.claim(store, "otherhost:1:aaaaaa", 10, NOW, LEASE)
    assert len(jobs) == 3
    assert outbox.claim(store, "me", 10, NOW + LEASE - timedelta(seconds=1), LEASE) == []
    taken = outbox.claim(store, "me", 10, NOW + LEASE + timedelta(seconds=1), LEASE)
    assert [j.id for j in taken] == [j.id for j in jobs]
    assert all(j.attempts == 1 for j in taken)  # a takeover counts as an attempt


def test_claims_of_dead_local_processes_are_released_at_once(store: Store) -> None:
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    here = outbox.new_worker_id().rsplit(":", 2)[0]  # host/boot/pid namespace
    host, boot, namespace = here.split("/")
    seed_outbox(store, 5)
    (dead_job,) = outbox.claim(store, f"{here}:{pid}:abcdef", 1, NOW, LEASE)
    outbox.claim(store, "elsewhere/b00t/1:1:abcdef", 1, NOW, LEASE)
    # the same host name and PID, another PID namespace (a container): not ours to judge
    outbox.claim(store, f"{host}/{boot}/{namespace}9:{pid}:abcdef", 1, NOW, LEASE)
    # this host before its last boot: whatever the PID, that process is gone
    (rebooted,) = outbox.claim(store, f"{host}/0ldb00t/{namespace}:{os.getpid()}:ab", 1, NOW, LEASE)
    # a live process of this machine keeps its claim
    outbox.claim(store, f"{here}:{os.getpid()}:abcdef", 1, NOW, LEASE)
    assert outbox.release_dead_local_claims(store) == 2
    # the dead process may have been sending it: that counts as an attempt, due again at once
    assert state_counts(store) == {"retry": 2, "sending": 3}
    retried = {d["id"]: d["attempts"] for d in outbox.list_digests(store) if d["state"] == "retry"}
    assert retried == {dead_job.id: 1, rebooted.id: 1}


def test_release_returns_claims_untouched(store: Store) -> None:
    seed_outbox(store, 5)
    jobs = outbox.claim(store, "w", 5, NOW, LEASE)
    assert outbox.release(store, "other") == 0
    assert outbox.release(store, "w", [jobs[0].id]) == 1
    assert outbox.release(store, "w") == 4
    assert state_counts(store) == {"queued": 5}


def test_a_cursor_claims_on_from_the_last_claim_and_comes_back_for_rows_given_back(
    store: Store,
) -> None:
    seed_outbox(store, 6)
    ids = sorted(d["id"] for d in outbox.list_digests(store))
    cursor = outbox.QueueCursor()
    first = outbox.claim(store, "w", 3, NOW, LEASE, cursor=cursor)
    assert [j.id for j in first] == ids[:3] and cursor.queued_after == ids[2]
    # given back: queued again, below where the claims have read
    outbox.release(store, "w", [first[0].id])
    second = outbox.claim(store, "w", 3, NOW, LEASE, cursor=cursor)
    assert [j.id for j in second] == ids[3:]
    # nothing left above the cursor: the claim goes back for the row given back
    third = outbox.claim(store, "w", 3, NOW, LEASE, cursor=cursor)
    assert [j.id for j in third] == [first[0].id]
    assert cursor.queued_after == second[-1].id
    assert outbox.claim(store, "w", 3, NOW, LEASE, cursor=cursor) == []


def test_record_sent_retry_failed_bounced(store: Store) -> None:
    seed_outbox(store, 4)
    jobs = outbox.claim(store, "w", 4, NOW, LEASE)
    tally = outbox.record(
        store,
        [
            (jobs[0], Outcome("sent")),
            (jobs[1], Outcome("retry", "451 4.3.0 later")),
            (jobs[2], Outcome("failed", "554 5.7.1 spam")),
            (jobs[3], Outcome("bounced", "550 5.1.1 no such user")),
        ],
        NOW,
        max_attempts=3,
        backoff_seconds=60,
    )
    assert (tally.sent, tally.retried, tally.failed, tally.bounced) == (1, 1, 1, 1)
    with store.session() as s:
        rows = {d.id: d for d in s.scalars(select(Digest))}
        bounced = s.get(Subscriber, jobs[3].subscriber_id)
    assert rows[jobs[0].id].state == "sent" and rows[jobs[0].id].sent_at == NOW
    retry = rows[jobs[1].id]
    assert retry.state == "retry" and retry.attempts == 1 and retry.last_error == "451 4.3.0 later"
    assert NOW + timedelta(seconds=45) <= retry.next_attempt_at <= NOW + timedelta(seconds=75)
    assert rows[jobs[2].id].state == "failed" and rows[jobs[2].id].last_error == "554 5.7.1 spam"
    assert rows[jobs[3].id].state == "failed"
    assert bounced.status == "bounced" and bounced.bounced_reason == "550 5.1.1 no such user"
    assert all(r.claimed_by is None for r in rows.values())


def test_retry_gives_up_after_max_attempts(store: Store) -> None:
    seed_outbox(store, 1)
    now = NOW
    for attempt in range(1, 4):
        (job,) = outbox.claim(store, "w", 1, now, LEASE)
        outbox.record(
            store, [(job, Outcome("retry", "421 busy"))], now, max_attempts=3, backoff_seconds=10
        )
        now += timedelta(hours=1)
        assert job.attempts == attempt - 1
    with store.session() as s:
        row = s.scalars(select(Digest)).one()
    assert row.state == "failed" and row.attempts == 3
    assert row.last_error == "gave up after 3 attempts: 421 busy"


def test_backoff_doubles_with_jitter() -> None:
    import random

    rng = random.Random(1)
    for attempt, base in ((1, 60), (2, 120), (3, 240), (8, 7680)):
        delay = backoff_delay(attempt, 60, rng).total_seconds()
        assert base * 0.75 <= delay <= base * 1.25
    assert backoff_delay(40, 60, rng) == timedelta(days=1)


def test_other_digests_of_a_bounced_reader_stop(store: Store) -> None:
    (sub_id,) = add_subscribers(store, 1)
    _enqueue_one(store, sub_id)
    _enqueue_one(store, sub_id, period="2026-11-23/daily")
    (job,) = outbox.claim(store, "w", 1, NOW, LEASE)
    outbox.record(
        store, [(job, Outcome("bounced", "550 5.1.1 gone"))], NOW, max_attempts=3, backoff_seconds=1
    )
    assert state_counts(store) == {"failed": 2}


def test_inactive_readers_digests_are_stopped(store: Store) -> None:
    seed_outbox(store, 2)
    with store.session() as s:
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == "reader1@example.org")
            .values(status="unsubscribed")
        )
    assert outbox.stop_inactive(store, NOW) == 1
    assert state_counts(store) == {"queued": 1, "failed": 1}


def test_daily_headroom_counts_sent_and_in_flight(store: Store) -> None:
    seed_outbox(store, 5)
    jobs = outbox.claim(store, "w", 3, NOW, LEASE)
    outbox.record(
        store,
        [(jobs[0], Outcome("sent"))],
        NOW - timedelta(hours=23),
        max_attempts=3,
        backoff_seconds=1,
    )
    outbox.record(
        store,
        [(jobs[1], Outcome("sent"))],
        NOW - timedelta(hours=25),
        max_attempts=3,
        backoff_seconds=1,
    )
    # one sent within the day, one still claimed: 10 - 2
    assert outbox.daily_headroom(store, NOW, 10) == 8


def test_requeue_failed(store: Store) -> None:
    seed_outbox(store, 2)
    jobs = outbox.claim(store, "w", 2, NOW, LEASE)
    outbox.record(
        store,
        [(j, Outcome("failed", "554 no")) for j in jobs],
        NOW,
        max_attempts=3,
        backoff_seconds=1,
    )
    assert outbox.requeue(store, ids=[jobs[0].id]) == 1
    assert state_counts(store) == {"queued": 1, "failed": 1}
    assert outbox.requeue(store, failed=True) == 1
    assert state_counts(store) == {"queued": 2}


@pytest.mark.parametrize("n", [2])
def test_two_processes_claiming_on_sqlite_file(tmp_path, n: int) -> None:  # type: ignore[no-untyped-def]
    """Separate engines (as separate processes have) still never share a claim."""
    url = str(tmp_path / "two.db")
    stores = [open_store(url) for _ in range(n)]
    seed_outbox(stores[0], 80)
    got: list[list[int]] = [[] for _ in range(n)]

    def worker(i: int) -> None:
        while jobs := outbox.claim(stores[i], f"p{i}", 5, NOW, LEASE):
            got[i] += [j.id for j in jobs]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = got[0] + got[1]
    assert sorted(every) == sorted(set(every)) and len(every) == 80
    for s in stores:
        s.dispose()


def test_results_of_a_claim_taken_over_are_not_written(store: Store) -> None:
    seed_outbox(store, 2)
    slow = outbox.claim(store, "slow", 2, NOW, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    # the slow worker renewed the first claim in time, not the second
    assert outbox.renew(store, "slow", [slow[0].id], NOW + LEASE / 2, LEASE) == {slow[0].id}
    (taken,) = outbox.claim(store, "fast", 2, later, LEASE)
    assert taken.id == slow[1].id
    assert outbox.renew(store, "slow", [j.id for j in slow], later, LEASE) == {slow[0].id}
    tally = outbox.record(
        store,
        [(slow[0], Outcome("sent")), (slow[1], Outcome("bounced", "550 5.1.1 late"))],
        later,
        max_attempts=3,
        backoff_seconds=1,
    )
    assert (tally.sent, tally.bounced, tally.lost) == (1, 0, 1)
    with store.session() as s:
        row = s.get(Digest, taken.id)
        status = s.get(Subscriber, taken.subscriber_id).status
    assert (row.state, row.claimed_by, status) == ("sending", "fast", "active")
    assert outbox.release(store, "slow", [taken.id]) == 0


def test_a_taken_over_claim_given_back_is_due_again(store: Store) -> None:
    seed_outbox(store, 1)
    outbox.claim(store, "dead", 1, NOW, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    (taken,) = outbox.claim(store, "w", 1, later, LEASE)
    assert taken.attempts == 1
    assert outbox.release(store, "w", now=later) == 1
    (again,) = outbox.claim(store, "w2", 1, later + timedelta(seconds=1), LEASE)
    assert again.id == taken.id and again.attempts == 1
    # a retry row without a time (written before this fix) is due too
    outbox.release(store, "w2")
    with store.session() as s:
        s.execute(update(Digest).values(state="retry", next_attempt_at=None))
    assert len(outbox.claim(store, "w3", 1, NOW, LEASE)) == 1


def test_claim_skips_and_fails_readers_who_left_meanwhile(store: Store) -> None:
    seed_outbox(store, 3)
    with store.session() as s:
        s.execute(
            update(Subscriber)
            .where(Subscriber.email.in_(["reader1@example.org", "reader2@example.org"]))
            .values(status="unsubscribed")
        )
    jobs = outbox.claim(store, "w", 10, NOW, LEASE)
    assert [j.recipient for j in jobs] == ["reader0@example.org"]
    with store.session() as s:
        failed = s.scalars(select(Digest).where(Digest.state == "failed")).all()
    assert [d.last_error for d in failed] == ["subscriber is not active"] * 2


def test_a_message_that_kills_its_sender_stops_at_max_attempts(store: Store) -> None:
    seed_outbox(store, 1)
    now = NOW
    for _ in range(2):
        (job,) = outbox.claim(store, "w", 1, now, LEASE, max_attempts=3)
        assert outbox.release(store, "w", now=now, count_attempt=True) == 1
        now += timedelta(seconds=1)
    # third death: the lease runs out and the takeover would be attempt 3
    outbox.claim(store, "w", 1, now, LEASE, max_attempts=3)
    assert outbox.claim(store, "x", 1, now + LEASE * 2, LEASE, max_attempts=3) == []
    with store.session() as s:
        row = s.scalars(select(Digest)).one()
    assert row.state == "failed" and row.attempts == 3 and "gave up" in row.last_error


def test_parallel_claims_never_spend_more_than_the_daily_limit(store: Store) -> None:
    """Workers reading the headroom at the same moment must not each spend all of it."""
    seed_outbox(store, 60)
    outbox.record(
        store,
        [(j, Outcome("sent")) for j in outbox.claim(store, "earlier", 4, NOW, LEASE)],
        NOW - timedelta(hours=2),
        max_attempts=3,
        backoff_seconds=1,
    )
    workers = 4
    start = threading.Barrier(workers)
    got: list[list[int]] = [[] for _ in range(workers)]

    def worker(i: int) -> None:
        start.wait()
        while jobs := outbox.claim(store, f"w{i}", 3, NOW, LEASE, daily_limit=25):
            got[i] += [j.id for j in jobs]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for g in got for x in g]
    # 4 sent in the last day, so 21 may be claimed, by whichever workers, once each
    assert len(every) == len(set(every)) == 21
    assert outbox.daily_headroom(store, NOW, 25) == 0
    assert state_counts(store) == {"sent": 4, "sending": 21, "queued": 35}


def test_peek_due_reads_in_batches_and_claims_nothing(store: Store) -> None:
    seed_outbox(store, 10)
    with store.session() as s:
        ids = list(s.scalars(select(Digest.id).order_by(Digest.id)))
    peeked = outbox.peek_due(store, None, NOW, batch=3)
    assert iter(peeked) is peeked  # a generator: one batch of messages in memory at a time
    assert [j.id for j in peeked] == ids
    for n in (7, 6, 1, 0):
        assert [j.id for j in outbox.peek_due(store, n, NOW, batch=3)] == ids[:n]
    assert all(j.message for j in outbox.peek_due(store, None, NOW, batch=4))
    assert state_counts(store) == {"queued": 10}


def test_a_claim_reads_no_more_than_it_claims(sqlite_store: Store) -> None:
    """Each statement of a claim is planned on an index, in id order: no scan of the
    outbox or of the readers, no sort of every due row, whatever the outbox holds."""
    from sqlalchemy import event

    store = sqlite_store
    seed_outbox(store, 30)
    statements: list[tuple[str, Any]] = []

    def seen(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            statements.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert len(outbox.claim(store, "w", 5, NOW, LEASE, max_attempts=3)) == 5
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert statements
    raw = store.engine.raw_connection()
    try:
        for statement, params in statements:
            plan = " | ".join(
                row[-1] for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, params)
            )
            assert "TEMP B-TREE" not in plan, (statement, plan)
            # SQLite names a full table scan "SCAN <table>" (an index walk: "... USING")
            for table in ("digests", "subscribers", "digest_messages"):
                assert f"SCAN {table}" not in plan.replace(f"SCAN {table} USING", ""), (
                    statement,
                    plan,
                )
    finally:
        raw.close()
