"""Every link a reader sees: the paper, and the signed links back to the web front.

Signed values never carry the address: unsubscribe/preferences sign the subscriber's
random ``pref_token``, feedback signs ``{"s": pref_token, "p": paper_id, "d": direction}``.
The web front verifies them with :class:`digestbot.tokens.Tokens` and the same secret.
"""

from __future__ import annotations

import hmac
import json
from binascii import b2a_base64
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes

from .. import clock
from ..config import Config
from ..store import Paper
from ..tokens import Tokens

HF_PAPER = "https://huggingface.co/papers/"
HF_SEARCH = "https://huggingface.co/papers?q="
DIRECTIONS = ("more", "less")


class _SubscriberLike(Protocol):
    """A subscriber, or what a notice carries of one: the token its links sign."""

    @property
    def pref_token(self) -> str: ...


# what itsdangerous' json.dumps(obj, separators=...) does, without a new encoder per call
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_json_str = json.encoder.encode_basestring  # a JSON string as that encoder writes it
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class BulkSigner:
    """Signs values exactly as ``Tokens(secret).dumps(purpose, value)`` does, faster.

    A digest carries two dozen signed links and building them through itsdangerous took
    longer than rendering the rest of the message (a fresh signer, key derivation, a zlib
    attempt and a new HMAC per link). Here the key comes from itsdangerous itself, once,
    and each link continues from a copy of the keyed HMAC. The token format is itsdangerous'
    ``URLSafeTimedSerializer`` (payload.timestamp.signature); tests check the output is
    byte-identical to it and that ``Tokens.loads`` accepts it.
    """

    def __init__(self, secret: str, purpose: str) -> None:
        self._reference = Tokens(secret)._serializer(purpose)
        signer = self._reference.make_signer()
        # the key hashed in once; each link continues from a copy (public hmac API)
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method().name)
        self._sep = want_bytes(signer.sep)
        self._second = -1
        self._stamp = b""

    def dumps(self, value: Any) -> str:
        return self._sign(_COMPACT.encode(value).encode("utf-8"), value)

    def dumps_feedback(self, pref_token: str, paper_id: str, direction: str) -> str:
        """``dumps({"s": pref_token, "p": paper_id, "d": direction})``, the JSON written
        from its three encoded strings (what the encoder would join), for two links per
        paper per reader."""
        s, p, d = _json_str(pref_token), _json_str(paper_id), _json_str(direction)
        raw = f'{{"s":{s},"p":{p},"d":{d}}}'
        return self._sign(raw.encode("utf-8"), {"s": pref_token, "p": paper_id, "d": direction})

    def feedback_pair(self, pref_token: str, paper_id: str) -> tuple[str, str]:
        """``dumps_feedback`` for "more" and for "less": a digest's two links per paper."""
        head = f'{{"s":{_json_str(pref_token)},"p":{_json_str(paper_id)},"d":'
        raw = head.encode("utf-8")
        if len(raw) + 7 > 200:  # itsdangerous would try zlib: let it
            return (
                self.dumps_feedback(pref_token, paper_id, "more"),
                self.dumps_feedback(pref_token, paper_id, "less"),
            )
        stamp = self._timestamp()
        return self._fast(raw + b'"more"}', stamp), self._fast(raw + b'"less"}', stamp)

    def _timestamp(self) -> bytes:
        now = int(clock.timestamp())
        if now != self._second:
            self._second, self._stamp = now, self._sep + base64_encode(int_to_bytes(now))
        return self._stamp

    def _fast(self, raw: bytes, stamp: bytes) -> str:
        # what URLSafeTimedSerializer writes: b64(payload) . b64(timestamp) . b64(hmac)
        signed = b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=") + stamp
        mac = self._mac.copy()
        mac.update(signed)
        sig = b2a_base64(mac.digest(), newline=False).translate(_URLSAFE).rstrip(b"=")
        return (signed + self._sep + sig).decode("ascii")

    def _sign(self, raw: bytes, value: Any) -> str:
        if len(raw) > 200:  # itsdangerous would try zlib on a long payload: let it
            return self._reference.dumps(value)
        return self._fast(raw, self._timestamp())


@lru_cache(maxsize=64)
def _signer(secret: str, purpose: str) -> BulkSigner:
    return BulkSigner(secret, purpose)


def signer(config: Config, purpose: str) -> BulkSigner:
    """The prepared signer for ``purpose``, for code that signs many links in a row."""
    return _signer(config["web.secret_key"], purpose)


def sign(config: Config, purpose: str, value: Any) -> str:
    return _signer(config["web.secret_key"], purpose).dumps(value)


def site(config: Config) -> str:
    return str(config["digest.site_url"]).rstrip("/")


def paper_url(paper: Paper) -> str:
    """The paper's Hugging Face page when its arXiv id is known, else a title search."""
    if paper.arxiv_id:
        return HF_PAPER + quote(paper.arxiv_id, safe="")
    return HF_SEARCH + quote_plus(" ".join((paper.title or "").split())[:200])


ARXIV = "https://arxiv.org/"


def arxiv_url(paper: Paper, kind: str) -> str:
    """The paper's arXiv abstract (``kind`` "abs") or PDF ("pdf") page; "" without an id."""
    return f"{ARXIV}{kind}/{quote(paper.arxiv_id, safe='')}" if paper.arxiv_id else ""


def code_url(paper: Paper) -> str:
    """The paper's code repository when it is a plain web link, else ""."""
    url = (paper.github_url or "").strip()
    ok = (
        url.startswith(("https://", "http://"))
        and url.isprintable()
        and not any(c in url for c in ' "<>')
    )
    return url if ok else ""


def digest_view_url(config: Config, subscriber: _SubscriberLike, period: str) -> str:
    """The signed link to a reader's digest for ``period`` on the web front."""
    token = sign(config, "digest", {"s": subscriber.pref_token, "p": period})
    return f"{site(config)}/digest/{token}"


def unsubscribe_url(config: Config, subscriber: _SubscriberLike) -> str:
    return f"{site(config)}/unsubscribe/{sign(config, 'unsubscribe', subscriber.pref_token)}"


def preferences_url(config: Config, subscriber: _SubscriberLike) -> str:
    return f"{site(config)}/preferences/{sign(config, 'preferences', subscriber.pref_token)}"


def feedback_url(config: Config, subscriber: _SubscriberLike, paper_id: str, direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'more' or 'less', not {direction!r}")
    token = sign(config, "feedback", {"s": subscriber.pref_token, "p": paper_id, "d": direction})
    return f"{site(config)}/feedback/{token}"


def feed_urls(config: Config, feed_token: str) -> dict[str, str]:
    """A reader's feeds (their ``feed_token``), or the public ones (``"new"``)."""
    base = f"{site(config)}/feeds/{feed_token}"
    return {"rss": base + ".rss", "atom": base + ".atom"}


def confirm_url(config: Config, token: str) -> str:
    return f"{site(config)}/confirm/{token}"
