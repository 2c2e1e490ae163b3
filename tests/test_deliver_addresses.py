"""Addresses beyond ASCII: an IDN domain goes out in IDNA, a non-ASCII local part only to a
server that offers SMTPUTF8, and one message that cannot be sent never stops the others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digestbot.deliver.smtp import ascii_domain
from digestbot.deliver.transports import SendFailure
from digestbot.pipeline import run_once
from digestbot.store import Digest, open_store

from .conftest import PUBLIC_MAIL, make_config
from .pipeline_helpers import add, fill_inbox
from .smtp_sink import SmtpSink

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ASCII = [f"reader{i}@example.org" for i in range(6)]
IDN = "user@münchen.example"
UTF8_LOCAL = "josé@example.org"


def test_ascii_domain() -> None:
    assert ascii_domain(IDN) == "user@xn--mnchen-3ya.example"
    assert ascii_domain("plain@example.org") == "plain@example.org"
    assert ascii_domain(UTF8_LOCAL) == UTF8_LOCAL  # the local part is the server's business
    with pytest.raises(SendFailure) as info:
        ascii_domain("user@ex ámple.org")
    assert info.value.kind == "failed"


def _run(tmp_path: Path, sink: SmtpSink) -> tuple[dict[str, tuple[str, str | None]], object]:
    db = str(tmp_path / "d.db")
    config = make_config(
        tmp_path,
        db,
        delivery__transport="smtp",
        smtp__host=sink.host,
        smtp__port=sink.port,
        **PUBLIC_MAIL,
    )
    fill_inbox(config.path("ingest.inbox"))
    store = open_store(db)
    # the awkward ones in the middle, so that the ones after them must still go out
    for email in [*ASCII[:3], UTF8_LOCAL, IDN, *ASCII[3:]]:
        add(store, email, send_hour=0)
    report = run_once(store, config, now=NOW)
    with store.session() as session:
        states = {d.recipient: (d.state, d.last_error) for d in session.query(Digest)}
    store.dispose()
    return states, report


def test_without_smtputf8_only_the_non_ascii_local_part_fails(tmp_path: Path) -> None:
    sink = SmtpSink(enable_SMTPUTF8=False).start()  # aiosmtpd's Controller offers it by default
    try:
        states, report = _run(tmp_path, sink)
    finally:
        sink.stop()
    got = sink.recipients()
    assert got == {**dict.fromkeys(ASCII, 1), "user@xn--mnchen-3ya.example": 1}
    assert states[UTF8_LOCAL][0] == "failed"
    assert "SMTPUTF8" in str(states[UTF8_LOCAL][1])
    assert all(states[a][0] == "sent" for a in [*ASCII, IDN])
    assert report.status == "partial"  # type: ignore[attr-defined]


def test_with_smtputf8_everyone_gets_their_digest(tmp_path: Path) -> None:
    sink = SmtpSink(enable_SMTPUTF8=True).start()
    try:
        states, _report = _run(tmp_path, sink)
    finally:
        sink.stop()
    assert sink.recipients()[UTF8_LOCAL] == 1
    assert {state for state, _ in states.values()} == {"sent"}
