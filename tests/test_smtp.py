"""SMTP security and login against a real aiosmtpd: STARTTLS and implicit TLS with a
self-signed (trustme) certificate, authentication, and reply classification."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from digestbot.config import ConfigError, load_config
from digestbot.deliver import send_now
from digestbot.deliver.smtp import classify
from digestbot.errors import DeliveryError

from .conftest import PUBLIC_MAIL, make_config
from .smtp_sink import SmtpSink, free_port, password_authenticator
from .test_deliver_support import make_message


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_sink(ca: trustme.CA) -> Iterator[SmtpSink]:
    sink = SmtpSink(
        tls_context=_server_context(ca),
        require_starttls=True,
        authenticator=password_authenticator({"bot": "s3cret"}),
        auth_require_tls=True,
    )
    sink.start()
    yield sink
    sink.stop()


def _cfg(tmp_path: Path, sink: SmtpSink, **kw: object):  # type: ignore[no-untyped-def]
    return make_config(
        tmp_path,
        str(tmp_path / "x.db"),
        delivery__transport="smtp",
        smtp__host="127.0.0.1",
        smtp__port=sink.port,
        smtp__timeout=5.0,
        **{**PUBLIC_MAIL, **kw},
    )


def test_starttls_with_self_signed_cert_and_login(
    tls_sink: SmtpSink, tmp_path: Path, cafile: str
) -> None:
    cfg = _cfg(
        tmp_path,
        tls_sink,
        smtp__security="starttls",
        smtp__cafile=cafile,
        smtp__username="bot",
        smtp__password="s3cret",
    )
    send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert tls_sink.recipients() == Counter({"a@example.org": 1})


def test_untrusted_certificate_is_refused_with_a_hint(tls_sink: SmtpSink, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tls_sink, smtp__security="starttls")
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert err.value.field == "smtp.cafile"
    assert "could not be verified" in err.value.message
    assert tls_sink.received == []


def test_validate_certs_off(tls_sink: SmtpSink, tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        tls_sink,
        smtp__security="starttls",
        smtp__validate_certs=False,
        smtp__username="bot",
        smtp__password="s3cret",
    )
    send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert len(tls_sink.received) == 1


def test_wrong_password_is_a_clear_error(tls_sink: SmtpSink, tmp_path: Path, cafile: str) -> None:
    cfg = _cfg(
        tmp_path,
        tls_sink,
        smtp__security="starttls",
        smtp__cafile=cafile,
        smtp__username="bot",
        smtp__password="nope",
    )
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert err.value.field == "smtp.username"
    assert err.value.message.startswith(
        f"127.0.0.1:{tls_sink.port} refused the login for 'bot': 535"
    )


def test_server_requiring_starttls_refuses_plain(tls_sink: SmtpSink, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tls_sink)
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert "530" in err.value.message and tls_sink.received == []
    assert err.value.field == "smtp.security"


def test_starttls_not_offered_is_a_settings_error(tmp_path: Path) -> None:
    sink = SmtpSink().start()  # plain SMTP, no STARTTLS in its EHLO
    try:
        cfg = _cfg(tmp_path, sink, smtp__security="starttls")
        with pytest.raises(DeliveryError) as err:
            send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    finally:
        sink.stop()
    assert err.value.field == "smtp.security"
    assert "STARTTLS" in err.value.message and sink.received == []


def test_authentication_required_points_at_the_username(tmp_path: Path) -> None:
    sink = SmtpSink(auth_required=True, auth_require_tls=False).start()
    try:
        cfg = _cfg(tmp_path, sink)
        with pytest.raises(DeliveryError) as err:
            send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    finally:
        sink.stop()
    assert "530" in err.value.message
    assert err.value.field == "smtp.username"
    assert "smtp.username" in (err.value.hint or "")


def test_implicit_tls(ca: trustme.CA, tmp_path: Path, cafile: str) -> None:
    sink = SmtpSink(ssl_context=_server_context(ca))
    sink.start()
    try:
        cfg = _cfg(tmp_path, sink, smtp__security="tls", smtp__cafile=cafile)
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
        assert sink.recipients() == Counter({"a@example.org": 1})
    finally:
        sink.stop()


def test_plain_auth_without_tls(tmp_path: Path) -> None:
    sink = SmtpSink(authenticator=password_authenticator({"bot": "pw"}), auth_require_tls=False)
    sink.start()
    try:
        cfg = _cfg(tmp_path, sink, smtp__username="bot", smtp__password="pw")
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
        assert len(sink.received) == 1
    finally:
        sink.stop()


def test_username_without_password_is_refused(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    cfg = _cfg(tmp_path, smtp_sink, smtp__username="bot")
    with pytest.raises(DeliveryError) as err:
        send_now(cfg, make_message("a@example.org"), recipient="a@example.org")
    assert err.value.field == "smtp.password"


def test_password_comes_from_env_or_owner_only_file(tmp_path: Path) -> None:
    conf = tmp_path / "digestbot.toml"
    conf.write_text('[smtp]\npassword = "in-git"\n')
    with pytest.raises(ConfigError) as err:
        load_config(conf, env={})
    assert err.value.field == "smtp.password"
    secret = tmp_path / "smtp-password"
    secret.write_text("from-file\n")
    os.chmod(secret, 0o644)
    conf.write_text(f'[smtp]\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError) as err:
        load_config(conf, env={})
    assert err.value.hint == f"Run: chmod 600 {secret}"
    os.chmod(secret, 0o600)
    assert load_config(conf, env={})["smtp.password"] == "from-file"
    assert load_config(conf, env={"DIGESTBOT_SMTP_PASSWORD": "env"})["smtp.password"] == "env"


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (451, "4.3.0 try later", "retry"),
        (421, "closing", "retry"),
        (550, "5.1.1 <x@y>: Recipient address rejected: User unknown", "bounced"),
        (550, "5.1.10 null MX", "bounced"),
        (553, "5.1.3 bad address syntax", "bounced"),
        (550, "5.7.1 relaying denied", "failed"),
        (552, "message too large", "failed"),
        (554, "5.1.1x", "failed"),
    ],
)
def test_classify(code: int, message: str, kind: str) -> None:
    assert classify(code, message).kind == kind


def _dialogue(host: str, port: int, data: bytes) -> bytes:
    """One message over a raw socket, its DATA bytes exactly as given: the reply to them."""
    with socket.create_connection((host, port), timeout=10) as sock:
        replies = sock.makefile("rb")

        def reply() -> bytes:
            while (line := replies.readline())[3:4] == b"-":
                pass
            return line.rstrip()

        assert reply().startswith(b"220")
        for command in (b"EHLO test", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>"):
            sock.sendall(command + b"\r\n")
            assert reply().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reply().startswith(b"354")
        sock.sendall(data)
        answer = reply()
        with contextlib.suppress(OSError):  # a server that gave up on us may be gone already
            sock.sendall(b"QUIT\r\n")
        return answer


def test_the_process_sink_receives_what_aiosmtpd_receives() -> None:
    """The benchmarks' own sink (tests/process_sink.py) gives the same replies to DATA and
    keeps the same message bytes as aiosmtpd, on the edge cases of RFC 5321."""
    from .process_sink import serve

    # lines starting or ending with a dot, or both, or neither; 50 KB in all (never a lone
    # dot, which would end the message early and make the rest bogus commands)
    prose = b"".join(
        b"." * (i % 7 == 0) + b"word " * (i % 19 or 1) + b"." * (i % 5 == 0) + b"\r\n"
        for i in range(2_000)
    )
    assert b"\r\n.\r\n" not in b"\r\n" + prose
    cases = [
        b".\r\n",  # an empty message
        b"a\r\n.\r\n",
        b"..\r\n..x\r\nend.\r\n.\r\n",  # dot-stuffed lines, a line ending in a dot
        b"a\nb.\r\n.c\rd\n.\r\n.\r\n",  # bare LF and CR are not line ends in SMTP
        prose + b".\r\n",
        b"x" * 999 + b"\r\n.\r\n",  # the longest line allowed
        b"x" * 1000 + b"\r\n.\r\n",  # one byte too long: 500
        b"ok\r\n" + b"y" * 5000 + b"\r\n.\r\n",
    ]
    ours: list[bytes] = []
    loop = asyncio.new_event_loop()
    port = free_port()
    server = loop.run_until_complete(serve(port, lambda _f, _r, content: ours.append(content)))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stock = SmtpSink().start()
    try:
        for data in cases:
            mine = _dialogue("127.0.0.1", port, data)
            assert mine == _dialogue(stock.host, stock.port, data), data[:40]
        assert ours == [m.data for m in stock.received]
        assert len(stock.received) == len(cases) - 2
    finally:
        stock.stop()
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_login_over_a_plain_connection_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digestbot.deliver.smtp import SmtpSettings

    plain = make_config(
        tmp_path,
        str(tmp_path / "d.db"),
        smtp__host="mail.example.org",
        smtp__username="bot",
        smtp__password="s3cret",
    )
    SmtpSettings.from_config(plain)  # reads settings only: nothing connects anywhere
    assert "the password goes to mail.example.org in clear text" in caplog.text
    caplog.clear()
    SmtpSettings.from_config(plain.replace(smtp__security="starttls"))
    assert "clear text" not in caplog.text


@pytest.mark.parametrize("section", ["smtp", "mailbox"])
def test_an_unreadable_ca_file_names_its_setting(tmp_path: Path, section: str) -> None:
    from digestbot.deliver.tls import client_context

    assert client_context(section, "none", str(tmp_path / "missing.pem")) is None
    with pytest.raises(ConfigError) as err:
        client_context(section, "starttls", str(tmp_path / "missing.pem"))
    assert err.value.field == f"{section}.cafile"
    assert err.value.hint is not None and f"{section}.cafile" in err.value.hint
