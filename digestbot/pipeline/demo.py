"""`digestbot demo`: the whole pipeline on the seed listings, in a folder of its own.

The demo folder gets a fresh SQLite store, an inbox holding a copy of the seeds, a few
example readers and the pipeline's output: a Maildir, the feeds, and each email digest's
HTML part as a file to open in a browser. Running it again starts over in the same folder.
"""

from __future__ import annotations

import email
import email.policy
import secrets
import shutil
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from ..config import default_config
from ..errors import ConfigError
from ..periods import aware_utc, describe, zone
from ..store import Digest, DigestItem, Paper, Store, Subscriber, open_store
from .report import RunReport
from .run import run_once

MARKER = ".digestbot-demo"
# what the demo creates, and so all it removes when run again
OWNED = ("digestbot.db", "digestbot.db-wal", "digestbot.db-shm", "digestbot.db.run.lock")
OWNED_DIRS = ("inbox", "maildir", "feeds", "html")

# Readers with different interests, time zones, frequencies and formats. Their send hour
# is set to the current hour in their own zone (and weekly readers' weekday to today), so
# every one of them is due right now, wherever and whenever the demo runs.
READERS: tuple[dict[str, object], ...] = (
    {
        "email": "ada@example.org",
        "name": "Ada",
        "keywords": ["vision transformer", "segmentation", "object detection", "3D"],
        "frequency": "daily",
        "timezone": "Europe/Berlin",
        "formats": "email",
    },
    {
        "email": "kenji@example.org",
        "name": "Kenji",
        "keywords": ["large language model", "reasoning", "reinforcement learning"],
        "frequency": "weekly",
        "timezone": "Asia/Tokyo",
        "formats": "both",
    },
    {
        "email": "maria@example.org",
        "name": "María",
        "keywords": ["speech", "audio", "multilingual", "text-to-speech"],
        "frequency": "daily",
        "timezone": "America/Sao_Paulo",
        "formats": "email",
    },
    {
        "email": "sam@example.org",
        "name": "Sam",
        "keywords": ["diffusion", "image generation", "video generation"],
        "frequency": "daily",
        "timezone": "America/New_York",
        "formats": "rss",
    },
)


@dataclass
class ReaderResult:
    name: str
    email: str
    schedule: str
    formats: str
    state: str | None
    papers: list[tuple[str, float, str]] = field(default_factory=list)  # title, score, why
    html: Path | None = None
    feed: Path | None = None  # their Atom feed, for readers who take one


@dataclass
class DemoResult:
    folder: Path
    report: RunReport
    readers: list[ReaderResult]
    maildir: Path

    @property
    def html(self) -> list[Path]:
        return [r.html for r in self.readers if r.html is not None]

    @property
    def store(self) -> Path:
        return self.folder / "digestbot.db"


def reset_folder(folder: Path) -> None:
    """Empty what a previous demo left; refuse a folder the demo did not make."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{folder} exists and is not a folder", hint="Pass --dir with another path."
        )
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise ConfigError(
            f"{folder} is not empty and was not made by `digestbot demo`",
            hint="Pass --dir with a new or empty folder; nothing was changed.",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).write_text("made by `digestbot demo`; safe to delete\n")
        for name in OWNED:
            (folder / name).unlink(missing_ok=True)
        for name in OWNED_DIRS:
            shutil.rmtree(folder / name, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot prepare the demo folder {folder}: {exc.strerror}",
            hint="Pass --dir with a folder you can write.",
        ) from None


def run_demo(folder: Path, seeds: Path, *, now: datetime | None = None) -> DemoResult:
    """Set up the demo folder, ingest the seeds, add readers, run the pipeline once."""
    from ..store.subscribers import add_subscriber

    now = aware_utc(now)
    folder = folder.expanduser().resolve()
    seed_files = sorted(p for p in seeds.iterdir() if p.is_file() and not p.name.startswith("."))
    if not seed_files:
        raise ConfigError(f"no seed files in {seeds}", hint="Put a few dumps in ./seeds.")
    reset_folder(folder)
    # defaults, with every path inside the demo folder; the user's files are not read
    config = default_config(
        store__db=str(folder / "digestbot.db"),
        ingest__inbox=str(folder / "inbox"),
        digest__feeds_dir=str(folder / "feeds"),
        delivery__transport="maildir",
        delivery__maildir=str(folder / "maildir"),
        # links in the demo's emails are signed with a throwaway key
        web__secret_key=secrets.token_urlsafe(32),
    )
    inbox = config.writable_dir("ingest.inbox")
    for path in seed_files:
        shutil.copy2(path, inbox / path.name)

    store = open_store(config["store.db"])
    try:
        with store.session() as session:
            for reader in READERS:
                local = now.astimezone(zone(str(reader["timezone"])))
                sub = add_subscriber(
                    session,
                    **reader,  # type: ignore[arg-type]
                    send_hour=local.hour,
                    weekday=local.weekday(),
                )
                # readers who joined a week ago: a reader who joins after this hour's send
                # point waits for the next one, and the demo shows digests now
                sub.created_at = sub.confirmed_at = now - timedelta(days=7)
        report = run_once(store, config, now=now)
        readers = _results(
            store,
            folder / "html",
            config.path("digest.feeds_dir"),
            _delivered(config.path("delivery.maildir")),
        )
    finally:
        store.dispose()
    return DemoResult(folder, report, readers, config.path("delivery.maildir"))


def _delivered(maildir: Path) -> dict[str, EmailMessage]:
    """The messages in the demo's Maildir by Message-ID: the store keeps no message once
    it is sent."""
    if not (maildir / "new").is_dir():
        return {}
    messages = (
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((maildir / "new").iterdir())
    )
    return {str(message["Message-ID"] or ""): message for message in messages}


def _results(
    store: Store, html_dir: Path, feeds_dir: Path, delivered: dict[str, EmailMessage]
) -> list[ReaderResult]:
    out: list[ReaderResult] = []
    with store.session() as session:
        for sub in session.scalars(select(Subscriber).order_by(Subscriber.id)):
            result = ReaderResult(
                sub.name,
                sub.email,
                describe(sub.frequency, sub.weekday, sub.send_hour, sub.timezone),
                sub.formats,
                None,
            )
            if sub.formats != "email" and (feeds_dir / f"{sub.feed_token}.atom").is_file():
                result.feed = feeds_dir / f"{sub.feed_token}.atom"
            digest = session.scalars(
                select(Digest).where(Digest.subscriber_id == sub.id).order_by(Digest.id.desc())
            ).first()
            if digest is not None:
                result.state = digest.state
                rows = session.execute(
                    select(Paper.title, DigestItem.score, DigestItem.why)
                    .join(Paper, Paper.id == DigestItem.paper_id)
                    .where(DigestItem.digest_id == digest.id)
                    .order_by(DigestItem.rank)
                )
                for title, score, why in rows:
                    result.papers.append((title, score, explain(why or {})))
                message = delivered.get(digest.message_id)
                if message is not None and sub.formats != "rss":
                    result.html = _write_html(message, html_dir, sub.id, sub.name)
            out.append(result)
    return out


def explain(why: dict[str, object]) -> str:
    """Why a paper was picked, in a few words: the interests it matched, or a liked paper."""
    parts = []
    matched = why.get("matched") or []
    if isinstance(matched, list) and matched:
        parts.append("matches " + ", ".join(map(str, matched)))
    if why.get("similar_title"):
        parts.append(f"like {why['similar_title']}")
    return "; ".join(parts) or "close to your interests overall"


def _write_html(message: EmailMessage, html_dir: Path, sub_id: int, name: str) -> Path | None:
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    html_dir.mkdir(parents=True, exist_ok=True)
    # "María" -> "maria": accents dropped, not the letters that carry them
    plain = unicodedata.normalize("NFKD", name.lower())
    slug = "".join(c for c in plain if c.isascii() and c.isalnum()) or "reader"
    path = html_dir / f"{sub_id:02d}-{slug}.html"
    path.write_text(part.get_content(), encoding="utf-8")
    return path
