"""Our SMTP client (digestbot/deliver/smtpclient.py) against a real aiosmtpd server: the
bytes that arrive, PIPELINING, refusals inside a pipelined envelope, a message given up
inside DATA, a login where only AUTH LOGIN is offered."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digestbot.deliver import send_due, send_now
from digestbot.deliver.smtp import SmtpChannel, SmtpSettings
from digestbot.deliver.smtpclient import SmtpClient, wire_message
from digestbot.deliver.transports import SendFailure
from digestbot.errors import DeliveryError
from digestbot.store import Store, open_store

from .smtp_sink import (
    LimitedSinkHandler,
    PipeliningSinkHandler,
    SmtpSink,
    password_authenticator,
)
from .test_deliver_support import make_message, seed_outbox, smtp_config


@pytest.fixture
def pipelining_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(PipeliningSinkHandler()).start()
    yield sink
    sink.stop()


def _settings(tmp_path: Path, sink: SmtpSink, **kw: object) -> SmtpSettings:
    config = smtp_config(tmp_path, str(tmp_path / "x.db"), sink, **kw)
    return SmtpSettings.from_config(config)


class _CountingWrites:
    """Stands in for the client's transport: counts the writes, passes them on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# bare LFs, CRLFs, lone CRs, lines starting with dots (also the first, and a lone dot that
# would otherwise end the message), no line end at the end
EDGE_CASES = [
    b"Subject: a\n\nbody\n",
    b"Subject: b\r\n\r\n.starts with a dot\r\n.\r\n..two\r\nend",
    b".first line is a dot\nx\n",
    b"Subject: c\n\nlone\rCR and a lone dot:\n.\nafter\n",
    b"Subject: d\n\n" + b"".join(b"." * (i % 3) + b"line %d\n" % i for i in range(2000)),
]


@pytest.mark.parametrize("message", EDGE_CASES)
def test_the_server_keeps_the_message_with_crlf_line_ends(message: bytes) -> None:
    expected = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    sink = SmtpSink().start()
    try:

        async def go() -> None:
            client = await SmtpClient.open(
                sink.host, sink.port, timeout=5, local_hostname="client.example"
            )
            await client.begin("from@example.org", "to@example.org")
            await client.finish(message)
            await client.quit()

        asyncio.run(go())
    finally:
        sink.stop()
    (received,) = sink.received
    assert received.data == expected
    assert wire_message(message).endswith(b"\r\n.\r\n")


def test_pipelining_sends_mail_rcpt_and_data_in_one_write(pipelining_sink: SmtpSink) -> None:
    plain = SmtpSink().start()
    writes: dict[str, int] = {}
    try:
        for name, sink in (("pipelining", pipelining_sink), ("plain", plain)):

            async def go(sink: SmtpSink = sink, name: str = name) -> None:
                client = await SmtpClient.open(
                    sink.host, sink.port, timeout=5, local_hostname="client.example"
                )
                counting = _CountingWrites(client.wire.transport)
                client.wire.transport = counting  # type: ignore[assignment]
                await client.begin("from@example.org", f"{name}@example.org")
                writes[name] = counting.writes
                await client.finish(b"Subject: x\n\nhello\n")
                await client.quit()

            asyncio.run(go())
        assert plain.recipients() == Counter({"plain@example.org": 1})
    finally:
        plain.stop()
    assert writes == {"pipelining": 1, "plain": 3}
    assert pipelining_sink.recipients() == Counter({"pipelining@example.org": 1})


def test_a_refused_reader_in_a_pipelined_envelope_bounces_alone(
    store: Store, tmp_path: Path, pipelining_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 12)
    pipelining_sink.handler.rcpt_replies = {"reader4@example.org": "550 5.1.1 no such user"}
    cfg = smtp_config(tmp_path, store, pipelining_sink, smtp__pool_size=1)
    report = send_due(store, cfg)
    assert (report.sent, report.bounced, report.failed, report.retried) == (11, 1, 0, 0)
    assert set(pipelining_sink.recipients()) == set(addresses) - {"reader4@example.org"}
    # the refusal (its DATA answered 503) was reset: the same connection carried on
    assert report.connections == 1


def test_dropped_connections_with_pipelining_lose_and_repeat_nothing(
    store: Store, tmp_path: Path, pipelining_sink: SmtpSink
) -> None:
    addresses = seed_outbox(store, 20)
    pipelining_sink.handler.drop_after = 3
    cfg = smtp_config(tmp_path, store, pipelining_sink, smtp__pool_size=2)
    report = send_due(store, cfg)
    assert (report.sent, report.retried, report.failed) == (20, 0, 0)
    assert pipelining_sink.recipients() == Counter(dict.fromkeys(addresses, 1))


def test_a_refused_sender_in_a_pipelined_envelope_is_a_settings_error(
    tmp_path: Path, pipelining_sink: SmtpSink
) -> None:
    pipelining_sink.handler.mail_reply = "553 5.1.3 Bad sender address syntax"
    cfg = smtp_config(tmp_path, str(tmp_path / "x.db"), pipelining_sink)
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert err.value.field == "delivery.envelope_from" and "553" in err.value.message
    assert pipelining_sink.received == []


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_message_given_up_inside_data_is_not_delivered(tmp_path: Path, pipelining: bool) -> None:
    sink = SmtpSink(PipeliningSinkHandler() if pipelining else None).start()
    try:
        channel = SmtpChannel(_settings(tmp_path, sink), None, "client.example")

        async def go() -> None:
            await channel.envelope("from@example.org", "dropped@example.org")
            await channel.abandon()  # told to stop while the previous result committed
            await channel.envelope("from@example.org", "kept@example.org")
            await channel.content(b"Subject: kept\n\nhello\n")
            await channel.close()

        asyncio.run(go())
    finally:
        sink.stop()
    assert sink.recipients() == Counter({"kept@example.org": 1})
    assert channel.opened == 2  # the first connection was closed inside DATA


def test_a_control_character_in_an_address_fails_that_message_alone(
    tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    channel = SmtpChannel(_settings(tmp_path, smtp_sink), None, "client.example")

    async def go() -> None:
        with pytest.raises(SendFailure) as failure:
            await channel.envelope("from@example.org", "x@example.org>\r\nRCPT TO:<y@example.org")
        assert failure.value.kind == "failed" and "control character" in failure.value.reason
        await channel.envelope("from@example.org", "ok@example.org")
        await channel.content(b"Subject: ok\n\nhello\n")
        await channel.close()

    asyncio.run(go())
    assert smtp_sink.recipients() == Counter({"ok@example.org": 1})


def test_login_where_only_auth_login_is_offered(tmp_path: Path) -> None:
    sink = SmtpSink(
        authenticator=password_authenticator({"bot": "pw"}),
        auth_require_tls=False,
        auth_exclude_mechanism=["PLAIN"],
    ).start()
    try:
        cfg = smtp_config(
            tmp_path, str(tmp_path / "x.db"), sink, smtp__username="bot", smtp__password="pw"
        )
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
        with pytest.raises(DeliveryError) as err:
            send_now(
                cfg.replace(smtp__password="wrong"),
                make_message("b@example.org"),
                recipient="b@example.org",
            )
        assert err.value.field == "smtp.username" and "535" in err.value.message
    finally:
        sink.stop()
    assert sink.recipients() == Counter({"a@example.org": 1})


def test_a_send_imports_neither_alembic_nor_dkim_when_unsigned(tmp_path: Path) -> None:
    """Start-up counts in every `digestbot send`: the schema check reads the store's revision
    without alembic (100 ms of imports), and DKIM's modules load only for a signer."""
    db = tmp_path / "s.db"
    open_store(db, create=True).dispose()
    script = f"""
import sys
from digestbot.deliver.transports import make_transport
from digestbot.store import open_store
from tests.conftest import PUBLIC_MAIL, make_config
from pathlib import Path
open_store({str(db)!r}).dispose()
make_transport(make_config(Path({str(tmp_path)!r}), {str(db)!r}, delivery__transport="smtp",
    smtp__host="127.0.0.1", smtp__allow_test_settings=True, **PUBLIC_MAIL))
print(sorted(m for m in ("alembic", "dkim", "aiosmtplib") if m in sys.modules))
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_a_relay_that_admits_fewer_connections_than_the_pool_gets_everything(
    store: Store, tmp_path: Path
) -> None:
    """smtp.pool_size 8 against a relay that admits 3: the refused channels retire, the
    admitted ones send every message, once; the send is not stopped as for a relay down."""
    addresses = seed_outbox(store, 60)
    sink = SmtpSink(LimitedSinkHandler(admit=3)).start()
    try:
        report = send_due(store, smtp_config(tmp_path, store, sink, smtp__pool_size=8))
    finally:
        sink.stop()
    assert (report.sent, report.retried, report.failed, report.error) == (60, 0, 0, None)
    assert report.not_admitted == 5
    assert sink.recipients() == Counter(dict.fromkeys(addresses, 1))


def test_a_relay_that_admits_no_connection_still_stops_the_send(
    store: Store, tmp_path: Path
) -> None:
    seed_outbox(store, 10)
    sink = SmtpSink(LimitedSinkHandler(admit=0)).start()
    try:
        report = send_due(store, smtp_config(tmp_path, store, sink, smtp__pool_size=4))
    finally:
        sink.stop()
    assert report.sent == 0 and report.not_admitted == 0
    assert report.error is not None and "421" in report.error
    assert sink.received == []
