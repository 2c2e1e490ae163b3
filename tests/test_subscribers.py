"""Subscribers: validation of every field, feedback, CSV import/export, on both backends."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digestbot.errors import NotFoundError, ValidationError
from digestbot.store import Feedback, Paper, Store, Subscriber, open_store
from digestbot.store.subscribers import (
    add_subscriber,
    disliked_ids,
    export_csv,
    find_subscriber,
    get_subscriber,
    import_csv,
    liked_ids,
    parse_keywords,
    remove_subscriber,
    set_feedback,
    update_subscriber,
    validate_email,
)


def add_papers(store: Store, *ids: str) -> None:
    with store.session() as s:
        for pid in ids:
            s.add(
                Paper(
                    id=pid,
                    title_key=pid,
                    title=f"Paper {pid}",
                    abstract="",
                    first_seen_at=datetime(2026, 11, 1, tzinfo=UTC),
                )
            )


def test_add_normalises_and_stores_everything(store: Store) -> None:
    add_papers(store, "p1", "p2")
    with store.session() as s:
        sub = add_subscriber(
            s,
            email="Ada@Example.ORG",
            name="  Ada   Lovelace ",
            keywords="sparse autoencoders,  Mechanistic   interpretability, sparse Autoencoders,",
            frequency="weekly",
            weekday="fri",
            send_hour=7,
            timezone="Europe/Berlin",
            max_items=5,
            min_score=0.05,
            formats="both",
            liked=["p1"],
            disliked=["p2"],
        )
        sub_id = sub.id
    with store.session() as s:
        sub = s.get(Subscriber, sub_id)
        assert sub.email == "Ada@example.org"
        assert sub.email_key == "ada@example.org"
        assert sub.name == "Ada Lovelace"
        assert sub.keywords == ["sparse autoencoders", "Mechanistic interpretability"]
        assert (sub.frequency, sub.weekday, sub.send_hour) == ("weekly", 4, 7)
        assert (sub.timezone, sub.max_items, sub.min_score) == ("Europe/Berlin", 5, 0.05)
        assert (sub.formats, sub.status) == ("both", "active")
        assert len(sub.feed_token) == 32 and len(sub.pref_token) == 32
        assert sub.feed_token != sub.pref_token
        assert sub.created_at.tzinfo is not None and sub.confirmed_at is not None
        assert liked_ids(s, sub) == ["p1"] and disliked_ids(s, sub) == ["p2"]
        for key in (sub_id, str(sub_id), "ADA@example.org", sub.feed_token, sub.pref_token):
            assert get_subscriber(s, key).id == sub_id
        assert find_subscriber(s, "ada@EXAMPLE.org").id == sub_id
        assert find_subscriber(s, "nobody@example.org") is None


def _add(store: Store, **kw: object) -> Subscriber:
    with store.session() as s:
        return add_subscriber(s, **{"email": "x@example.org", "keywords": "llm", **kw})


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"email": "not-an-address"}, "email", "invalid address 'not-an-address'"),
        ({"email": "a@b@example.org"}, "email", "invalid address"),
        ({"email": "ada@example.org\r\nBcc: all@example.org"}, "email", "control characters"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
        ({"keywords": ""}, "keywords", "no keywords and no liked papers"),
        ({"keywords": " , ,"}, "keywords", "no keywords and no liked papers"),
        ({"keywords": "x" * 101}, "keywords", "is 101 characters long (at most 100)"),
        ({"keywords": ",".join(f"k{i}" for i in range(51))}, "keywords", "51 keywords"),
        ({"name": "Eve\r\nBcc: victim@example.org"}, "name", "line breaks or control"),
        ({"name": "Eve\x00"}, "name", "control characters"),
        ({"name": "Eve\u202egnp.exe"}, "name", "control characters"),
        ({"name": "n" * 201}, "name", "201 characters long"),
        ({"frequency": "hourly"}, "frequency", "'hourly' is not one of daily, weekly"),
        ({"weekday": "someday"}, "weekday", "'someday' is not a weekday"),
        ({"weekday": 7}, "weekday", "7 is not between 0 and 6"),
        ({"send_hour": 24}, "send_hour", "24 is not between 0 and 23"),
        ({"send_hour": "eight"}, "send_hour", "'eight' is not a whole number"),
        ({"max_items": 0}, "max_items", "0 is not between 1 and 100"),
        ({"min_score": -1}, "min_score", "-1.0 is not between 0 and 10"),
        ({"formats": "pdf"}, "formats", "'pdf' is not one of email, rss, both"),
        ({"status": "deleted"}, "status", "is not one of pending, active"),
        ({"liked": ["nope"]}, "liked", "unknown paper id: nope"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    store: Store, kw: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        _add(store, **kw)
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.hint
    with store.session() as s:
        assert s.query(Subscriber).count() == 0


def test_empty_keywords_hint_tells_what_to_do(store: Store) -> None:
    with pytest.raises(ValidationError) as info:
        _add(store, keywords=[])
    assert "comma-separated phrases" in info.value.hint


def test_unknown_zone_hint_suggests_the_closest(store: Store) -> None:
    with pytest.raises(ValidationError) as info:
        _add(store, timezone="Europe/Berln")
    assert info.value.hint.startswith("Did you mean 'Europe/Berlin'?")


def test_duplicate_address_is_refused_case_insensitively(store: Store) -> None:
    _add(store, email="Ada@example.org")
    with pytest.raises(ValidationError) as info:
        _add(store, email="ADA@EXAMPLE.ORG")
    assert info.value.field == "email" and "already subscribed" in info.value.message
    assert "subscribers update" in info.value.hint


def test_liked_papers_alone_are_enough(store: Store) -> None:
    add_papers(store, "p1")
    sub = _add(store, keywords="", liked=["p1"])
    assert sub.keywords == []


def test_parse_keywords_and_validate_email() -> None:
    assert parse_keywords(["a, b", "c;d", " B "]) == ["a", "b", "c", "d"]
    assert parse_keywords("line one\nline two") == ["line one", "line two"]
    assert validate_email(" bob@EXAMPLE.com ") == "bob@example.com"


def test_update_validates_and_keeps_the_rest(store: Store) -> None:
    add_papers(store, "p1")
    sub = _add(store, email="a@example.org")
    _add(store, email="b@example.org")
    with store.session() as s:
        sub = s.get(Subscriber, sub.id)
        update_subscriber(s, sub, send_hour=21, timezone="Asia/Tokyo", liked=["p1"])
    with store.session() as s:
        sub = s.get(Subscriber, sub.id)
        assert (sub.send_hour, sub.timezone, sub.keywords) == (21, "Asia/Tokyo", ["llm"])
        assert liked_ids(s, sub) == ["p1"]
        with pytest.raises(ValidationError, match="already subscribed"):
            update_subscriber(s, sub, email="B@example.org")
        with pytest.raises(ValidationError, match="cannot change feed_token"):
            update_subscriber(s, sub, feed_token="x")
        with pytest.raises(ValidationError) as info:
            update_subscriber(s, sub, name="x\r\nBcc: y@example.org")
        assert info.value.field == "name"
        # keywords may go once a liked paper carries the profile
        update_subscriber(s, sub, keywords="")
        set_feedback(s, sub, "p1", 0)
        with pytest.raises(ValidationError, match="no keywords and no liked papers"):
            update_subscriber(s, sub, status="active")


def test_feedback_like_dislike_clear(store: Store) -> None:
    add_papers(store, "p1", "p2")
    sub = _add(store)
    with store.session() as s:
        sub = s.get(Subscriber, sub.id)
        set_feedback(s, sub, "p1", 1)
        set_feedback(s, sub, "p2", -1)
        assert (liked_ids(s, sub), disliked_ids(s, sub)) == (["p1"], ["p2"])
        set_feedback(s, sub, "p2", 1)
        assert liked_ids(s, sub) == ["p1", "p2"] and disliked_ids(s, sub) == []
        set_feedback(s, sub, "p1", 0)
        assert liked_ids(s, sub) == ["p2"]
        with pytest.raises(ValidationError):
            set_feedback(s, sub, "p1", 2)
        with pytest.raises(ValidationError, match="unknown paper id"):
            set_feedback(s, sub, "missing", 1)


def test_remove_takes_feedback_with_it(store: Store) -> None:
    add_papers(store, "p1")
    sub = _add(store, liked=["p1"])
    with store.session() as s:
        remove_subscriber(s, s.get(Subscriber, sub.id))
    with store.session() as s:
        assert s.query(Subscriber).count() == 0 and s.query(Feedback).count() == 0
        with pytest.raises(NotFoundError, match="no subscriber '1'"):
            get_subscriber(s, 1)


CSV = """email,name,keywords,liked,frequency,weekday,send_hour,timezone
ada@example.org,Ada,"sparse autoencoders, interpretability",p1,daily,,7,Europe/Berlin
not-an-address,Bad,llm,,daily,,8,UTC
bob@example.org,Bob,retrieval,,weekly,tue,9,America/New_York
ADA@example.org,Dup,llm,,daily,,8,UTC
carol@example.org,Carol,vision,,daily,,8,Mars/Base
dave@example.org,"Dave
Smith",llm,,daily,,8,UTC
erin@example.org,Erin,,,daily,,8,UTC
"""


def test_import_reports_bad_rows_by_line_and_imports_the_rest(store: Store) -> None:
    add_papers(store, "p1")
    with store.session() as s:
        report = import_csv(s, io.StringIO(CSV))
    assert report.added == 2
    failed = {line: (e.field, e.message) for line, e in report.failed}
    assert failed == {
        3: ("email", "invalid address 'not-an-address': An email address must have an @-sign."),
        5: ("email", "ADA@example.org is already subscribed"),
        6: ("timezone", "unknown time zone 'Mars/Base'"),
        7: ("name", "the name contains line breaks or control characters"),
        9: ("keywords", "no keywords and no liked papers: nothing to choose papers by"),
    }
    with store.session() as s:
        subs = {x.email: x for x in s.query(Subscriber)}
        assert sorted(subs) == ["ada@example.org", "bob@example.org"]
        assert subs["bob@example.org"].weekday == 1
        assert liked_ids(s, subs["ada@example.org"]) == ["p1"]


def test_import_refuses_a_bad_header_and_a_missing_file(store: Store, tmp_path) -> None:
    with store.session() as s:
        with pytest.raises(ValidationError) as info:
            import_csv(s, io.StringIO("email,colour\na@example.org,red\n"))
        assert (info.value.line, info.value.field) == (1, "colour")
        with pytest.raises(ValidationError, match="no 'email' column"):
            import_csv(s, io.StringIO("name\nAda\n"))
        with pytest.raises(ValidationError, match="file not found"):
            import_csv(s, tmp_path / "missing.csv")


def test_export_then_import_round_trips(store: Store, tmp_path) -> None:
    add_papers(store, "p1", "p2")
    _add(store, email="a@example.org", name="A, with comma", keywords="x, y z", liked=["p1"])
    _add(store, email="b@example.org", frequency="weekly", weekday=3, disliked=["p2"])
    path = tmp_path / "subs.csv"
    with store.session() as s:
        assert export_csv(s, path) == 2
        before = [
            (x.email, x.name, x.keywords, x.frequency, x.weekday)
            for x in s.query(Subscriber).order_by(Subscriber.id)
        ]
        for sub in s.query(Subscriber).all():
            remove_subscriber(s, sub)
    with store.session() as s:
        report = import_csv(s, path)
        assert report.added == 2 and report.ok
        after = [
            (x.email, x.name, x.keywords, x.frequency, x.weekday)
            for x in s.query(Subscriber).order_by(Subscriber.id)
        ]
        assert after == before
        b = find_subscriber(s, "b@example.org")
        assert disliked_ids(s, b) == ["p2"]


def test_duplicates_are_case_insensitive_but_distinct_mailboxes_stay_distinct() -> None:
    from digestbot.store.subscribers.validate import email_key

    assert email_key("Ada@Example.ORG") == email_key("ada@example.org")
    # casefold() would make these one mailbox and lock the second reader out
    assert email_key("straße@example.org") != email_key("strasse@example.org")


def test_a_long_import_commits_as_it_goes(tmp_path: Path) -> None:
    """Other connections see the first thousand rows while the import is still reading."""
    from digestbot.store.subscribers import import_csv

    db = str(tmp_path / "d.db")
    store = open_store(db)
    seen: list[int] = []

    def lines() -> Iterator[str]:
        yield "email,keywords\n"
        for i in range(2500):
            if i == 1500:
                other = open_store(db, create=False)
                with other.session() as s:
                    seen.append(s.query(Subscriber).count())
                other.dispose()
            yield f"reader{i}@example.org,diffusion\n"

    with store.sessions() as session:
        report = import_csv(session, lines(), commit_every=1000)  # type: ignore[arg-type]
    with store.session() as s:
        assert s.query(Subscriber).count() == 2500
    store.dispose()
    assert report.added == 2500
    assert seen == [1000]


def test_tokens_never_start_with_a_dash_so_the_command_line_takes_them() -> None:
    from digestbot.store.subscribers.core import new_token

    tokens = [new_token() for _ in range(5000)]  # about 78 would start with "-" otherwise
    assert not any(t.startswith("-") for t in tokens)
    assert {len(t) for t in tokens} == {32} and len(set(tokens)) == 5000
