"""DKIM: digests are signed as they leave, and dkimpy verifies them against the public key.

The key pair is made here with `cryptography`; verification gets the DNS TXT record from
dkimpy's ``dnsfunc`` hook, so no DNS is asked.
"""

from __future__ import annotations

import base64
import mailbox
import re
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digestbot.config import load_config
from digestbot.deliver import send_due, send_now
from digestbot.errors import ConfigError
from digestbot.pipeline import run_once
from digestbot.store import open_store

from .conftest import PUBLIC_MAIL, make_config
from .pipeline_helpers import add, fill_inbox
from .smtp_sink import SmtpSink
from .test_deliver_support import make_message, seed_outbox

NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DOMAIN = "example.org"
SELECTOR = "digest2026"


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    """(PEM private key, the TXT record that publishes its public half)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _key_file(tmp_path: Path, pem: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem)
    path.chmod(mode)
    return path


def _dkim_settings(key_file: Path) -> dict[str, object]:
    return {"dkim__domain": DOMAIN, "dkim__selector": SELECTOR, "dkim__key_file": str(key_file)}


def _verify(message: bytes, txt: bytes) -> bool:
    wire = re.sub(rb"\r?\n", b"\r\n", message)  # as on the wire

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return txt

    return bool(dkim.verify(wire, dnsfunc=dnsfunc))


def _signed_headers(message: bytes) -> set[str]:
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", message.split(b"\n\n", 1)[0])
    line = next(h for h in unfolded.splitlines() if h.startswith(b"DKIM-Signature:"))
    h = re.search(rb"\bh=([^;]+)", line)
    assert h is not None
    return {name.strip().decode().lower() for name in h.group(1).split(b":")}


def test_digests_are_signed_and_verify(tmp_path: Path, key_pair: tuple[bytes, bytes]) -> None:
    pem, txt = key_pair
    db = str(tmp_path / "d.db")
    config = make_config(tmp_path, db, **PUBLIC_MAIL, **_dkim_settings(_key_file(tmp_path, pem)))
    store = open_store(db)
    try:
        fill_inbox(config.path("ingest.inbox"))
        add(store, "ada@example.org", send_hour=6, keywords=["diffusion"])
        add(store, "kenji@example.org", send_hour=6, keywords=["language model"])
        assert run_once(store, config, now=NOON).sent == 2
    finally:
        store.dispose()
    box = mailbox.Maildir(config.path("delivery.maildir"), factory=None, create=False)
    messages = [box.get_bytes(key) for key in box.keys()]
    assert len(messages) == 2
    for message in messages:
        assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
        assert _verify(message, txt)
        # RFC 8058: one-click unsubscribe needs both List-Unsubscribe headers signed
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        } <= _signed_headers(message)
        # a changed unsubscribe link, or a changed body, breaks the signature
        tampered = re.sub(rb"(List-Unsubscribe: <https://)", rb"\1evil.", message)
        assert tampered != message and not _verify(tampered, txt)
        assert not _verify(message.replace(b"papers", b"Papers", 1), txt)


def test_signed_over_smtp_as_received(
    tmp_path: Path, smtp_sink: SmtpSink, key_pair: tuple[bytes, bytes]
) -> None:
    pem, txt = key_pair
    db = str(tmp_path / "d.db")
    store = open_store(db)
    try:
        seed_outbox(store, 3)
        config = make_config(
            tmp_path,
            db,
            delivery__transport="smtp",
            smtp__port=smtp_sink.port,
            **PUBLIC_MAIL,
            **_dkim_settings(_key_file(tmp_path, pem)),
        )
        assert send_due(store, config).sent == 3
        # the web front's confirmation mails take the same path
        send_now(config, make_message("new@example.org"), recipient="new@example.org")
    finally:
        store.dispose()
    assert len(smtp_sink.received) == 4
    for got in smtp_sink.received:
        assert _verify(got.data, txt)


def test_key_file_readable_by_others_is_refused(
    tmp_path: Path, key_pair: tuple[bytes, bytes]
) -> None:
    path = _key_file(tmp_path, key_pair[0], mode=0o644)
    env = {
        f"DIGESTBOT_DKIM_{k.split('__')[1].upper()}": str(v)
        for k, v in _dkim_settings(path).items()
    }
    with pytest.raises(ConfigError) as info:
        load_config(Path("/dev/null"), env=env)
    assert info.value.field == "dkim.key_file" and "chmod 600" in (info.value.hint or "")


def test_half_a_dkim_setup_is_refused(tmp_path: Path, key_pair: tuple[bytes, bytes]) -> None:
    db = str(tmp_path / "d.db")
    store = open_store(db)
    try:
        seed_outbox(store, 1)
        config = make_config(tmp_path, db, dkim__domain=DOMAIN)
        with pytest.raises(ConfigError) as info:
            send_due(store, config)
        assert info.value.field == "dkim.selector" and "dkim.key_file" in str(info.value)
        bad = _key_file(tmp_path, b"not a key")
        config = make_config(tmp_path, db, **_dkim_settings(bad))
        with pytest.raises(ConfigError, match="cannot sign"):
            send_due(store, config)
    finally:
        store.dispose()
