"""MIME messages, for digests and every other email: one builder.

``EmailMessage`` with ``policy.default`` costs about two milliseconds per two-part message
(header objects, content managers, the generator); a digest run builds one per reader. So
messages are written directly: headers folded by the stdlib policy only when they need it
(non-ASCII or long), bodies 7-bit when they can be, else quoted-printable by
``binascii.b2a_qp``. Tests parse every message back with ``policy.default`` and require no
defects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from email import policy
from email.utils import format_datetime, formataddr, make_msgid
from functools import lru_cache

from .. import clock
from ..config import Config
from .clean import clean_text

_FOLD = policy.default.clone(linesep="\n")


@lru_cache(maxsize=64)
def _from_header(name: str, address: str) -> str:
    return formataddr((clean_text(name), address))


@lru_cache(maxsize=256)
def _date_header(naive: datetime, offset: timedelta | None, date: datetime) -> str:
    # keyed by the local time and offset: aware datetimes at the same instant compare equal
    return format_datetime(date)


def sender_domain(config: Config) -> str:
    address = str(config["digest.from_address"])
    return address.rsplit("@", 1)[1] if "@" in address else "localhost"


def header_line(name: str, value: str) -> str:
    """One header field, folded and RFC 2047-encoded only when it has to be."""
    if "\r" in value or "\n" in value:
        # every caller cleans its values; a line break here would be header injection
        raise ValueError(f"line break in the {name} header")
    if value.isascii():
        return _fold_ascii(name, value)
    if name.lower() in _UNSTRUCTURED:
        return f"{name}: {encoded_words(value)}\n"
    # addresses with non-ASCII parts: rare, and the stdlib knows the rules
    return _FOLD.header_factory(name, value).fold(policy=_FOLD)


# headers every reader's digest shares (with a few values): folded once per process
_SHARED = frozenset(("From", "Date", "Auto-Submitted", "List-Id", "List-Unsubscribe-Post"))
_shared_line = lru_cache(maxsize=256)(header_line)


# Unstructured headers we write with non-ASCII text. The stdlib folder takes ~0.3 ms per
# header; RFC 2047 "B" words are simple enough to write directly.
_UNSTRUCTURED = {"subject", "list-id", "comments", "x-digestbot-topic"}
_WORD_BYTES = 45  # base64 of 45 bytes is 60 characters: each encoded word stays <= 75


def encoded_words(value: str) -> str:
    """``value`` as RFC 2047 base64 encoded words, never splitting a character."""
    data = value.encode("utf-8")
    words: list[str] = []
    start, size = 0, len(data)
    while start < size:
        end = min(start + _WORD_BYTES, size)
        while end < size and data[end] & 0xC0 == 0x80:  # inside a character: cut before it
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return "\n ".join(words)


def _fold_ascii(name: str, value: str) -> str:
    # The stdlib policy would RFC 2047-encode a long URL in List-Unsubscribe, which clients
    # then fail to read; plain ASCII only needs folding at spaces (a long word may stay).
    line = f"{name}:"
    lines: list[str] = []
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = " " + word
        else:
            line = f"{line} {word}"
    lines.append(line)
    return "\n".join(lines) + "\n"


_BLOCK = 499  # a line of 999 bytes or more holds a whole block of 499 starting at any k


def _short_lines(data: bytes) -> bool:
    """No line is longer than 998 bytes. Splitting a digest into its thousand lines cost
    a tenth of a millisecond; a newline in every 499-byte block proves it, and only a
    block without one needs its line measured."""
    size, k = len(data), 0
    while k < size:
        if data.find(b"\n", k, k + _BLOCK) >= 0:
            k += _BLOCK
            continue
        start = data.rfind(b"\n", 0, k) + 1
        end = data.find(b"\n", k)
        end = size if end < 0 else end
        if end - start > 998:
            return False
        k = end + 1
    return True


def encode_body(data: str, *, html: bool) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body), the cheapest that is valid 7-bit.

    HTML is made ASCII with character references, which every client decodes, so it needs
    no transfer encoding at all as long as its lines are short; quoted-printable (slow in
    bulk, and it turns every ``=`` in the markup into ``=3D``) is the fallback.
    """
    raw = data.encode("ascii", "xmlcharrefreplace") if html else data.encode("utf-8")
    if raw.isascii() and _short_lines(raw):
        return b"7bit", raw
    return b"quoted-printable", binascii.b2a_qp(raw if not html else data.encode("utf-8"))


def _part_head(subtype: str, cte: bytes) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: '.encode()
        + cte
        + b"\n\n"
    )


def mime_bytes(headers: Iterable[tuple[str, str]], text: str, html: str | None) -> bytes:
    """A UTF-8 message: text/plain alone, or multipart/alternative of text then HTML."""
    html_part = None if html is None else encode_body(html, html=True)
    return assemble(headers, encode_body(text, html=False), html_part)


def html_part(encoded: bytes, html: Callable[[], str]) -> tuple[bytes, bytes]:
    """:func:`encode_body` for HTML already ``encoded`` (ASCII with character references);
    ``html()`` gives the document, needed only when a line is too long for 7-bit."""
    if _short_lines(encoded):
        return b"7bit", encoded
    return encode_body(html(), html=True)


def assemble(
    headers: Iterable[tuple[str, str]],
    text: tuple[bytes, bytes],
    html: tuple[bytes, bytes] | None,
) -> bytes:
    """:func:`mime_bytes` from the bodies encoded: (Content-Transfer-Encoding, body)."""
    head = "".join(
        _shared_line(n, v) if n in _SHARED else header_line(n, v) for n, v in headers
    ).encode("ascii")
    text_cte, text_body = text
    if html is None:
        return b"".join(
            (head, b"MIME-Version: 1.0\n", _part_head("plain", text_cte), text_body, b"\n")
        )
    html_cte, html_body = html
    # a boundary is safe when no body line starts with it; "=_" never starts a line of
    # quoted-printable, and the hash makes a clash in 7-bit text practically impossible
    boundary = "=_" + hashlib.sha1(text_body).hexdigest()[:28]
    while boundary.encode() in text_body or boundary.encode() in html_body:
        boundary += "_"
    sep = f"\n--{boundary}\n".encode("ascii")
    return b"".join(
        (
            head,
            b"MIME-Version: 1.0\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'.encode("ascii"),
            b"This is a multi-part message in MIME format.\n",
            sep,
            _part_head("plain", text_cte),
            text_body,
            sep,
            _part_head("html", html_cte),
            html_body,
            f"\n--{boundary}--\n".encode("ascii"),
        )
    )


def base_headers(
    config: Config,
    *,
    to: str,
    subject: str,
    message_id: str | None,
    date: datetime | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    when = date or clock.now().astimezone()
    out = [
        ("From", _from_header(config["digest.from_name"], config["digest.from_address"])),
        ("To", to),
        ("Subject", clean_text(subject)),
        ("Date", _date_header(when.replace(tzinfo=None), when.utcoffset(), when)),
        ("Message-ID", message_id or make_msgid(domain=sender_domain(config))),
        ("Auto-Submitted", "auto-generated"),
    ]
    out.extend((name, clean_text(value)) for name, value in headers)
    return out


def build_message(
    config: Config,
    *,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    headers: Mapping[str, str] = {},  # noqa: B006 - read only
) -> bytes:
    """A complete message from the configured sender, for any email digestbot sends
    besides digests (confirmations): built as digests are, by :func:`mime_bytes`."""
    return mime_bytes(
        base_headers(config, to=to, subject=subject, message_id=None, headers=headers.items()),
        text,
        html,
    )
