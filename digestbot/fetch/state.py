"""What each URL's last answer was, so the next request can ask "changed since?".

A small JSON file in the inbox (hidden, so ingest never reads it), replaced atomically:
``{url: {"etag", "last_modified", "sha256", "fetched_at"}}``. A lost or broken file costs
one full download per URL, nothing more.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .http import Validators

log = logging.getLogger(__name__)

STATE_NAME = ".fetch-state.json"


class FetchState:
    def __init__(self, inbox: Path) -> None:
        self.path = inbox / STATE_NAME
        self.urls: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); every source is fetched in full", self.path, exc)
            return
        if isinstance(data, dict):
            self.urls = {k: v for k, v in data.items() if isinstance(v, dict)}

    def validators(self, url: str) -> Validators:
        entry = self.urls.get(url, {})
        return Validators(entry.get("etag"), entry.get("last_modified"))

    def sha256(self, url: str) -> str | None:
        value = self.urls.get(url, {}).get("sha256")
        return value if isinstance(value, str) else None

    def remember(self, url: str, validators: Validators, sha256: str | None, now: datetime) -> None:
        """Record an answer and save the file at once: a later failure keeps it. The same
        answer again changes nothing, so the file is not rewritten on every run."""
        entry = {
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "sha256": sha256 or self.sha256(url),
        }
        old = self.urls.get(url, {})
        if all(old.get(k) == v for k, v in entry.items()):
            return
        entry["fetched_at"] = now.isoformat(timespec="seconds")
        self.urls[url] = {k: v for k, v in entry.items() if v is not None}
        write_atomic(self.path, json.dumps(self.urls, indent=1, sort_keys=True) + "\n")
