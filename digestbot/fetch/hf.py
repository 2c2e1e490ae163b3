"""Hugging Face Daily Papers: ``GET {fetch.hf_url}?date=YYYY-MM-DD``, one request per day.

The answer is the ``daily_papers`` JSON list that ``digestbot ingest`` reads
(``[{paper: {id, title, summary, upvotes, ...}, numComments, ...}]``), saved unchanged as
``hf-YYYY-MM-DD.json``.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx

from ..errors import FetchError
from .sources import Request, Source, register

# the API pages its answer (50 a page by default); 100 covers a whole day's listing
PAGE_SIZE = 100
_HINT = (
    "Nothing was written. The server sent something other than the daily_papers list (an "
    "error or login page?): try again later, or check fetch.hf_url."
)


@register("hf")
class HuggingFaceDaily(Source):
    def requests(self, days: list[date] | None, today: date) -> list[Request]:
        base = httpx.URL(self.config["fetch.hf_url"])
        return [
            Request(
                url=str(base.copy_merge_params({"date": day.isoformat(), "limit": PAGE_SIZE})),
                file_name=f"hf-{day.isoformat()}.json",
                label=f"hf {day.isoformat()}",
            )
            for day in (days if days is not None else [today])
        ]

    def check(self, body: bytes) -> int:
        try:
            data: Any = json.loads(body)
        except UnicodeDecodeError:
            raise FetchError("the response is not UTF-8 text", hint=_HINT) from None
        except json.JSONDecodeError as exc:
            raise FetchError(
                f"the response is not valid JSON: {exc.msg} (line {exc.lineno}, "
                f"column {exc.colno})",
                hint=_HINT,
            ) from None
        if isinstance(data, dict) and "error" in data:
            raise FetchError(f"the API answered with an error: {data['error']!r:.200}", hint=_HINT)
        if not isinstance(data, list):
            raise FetchError(
                f"the response is a JSON {type(data).__name__}, not a list of papers", hint=_HINT
            )
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("paper", item), dict):
                raise FetchError(f"item [{i}] is not a daily_papers entry", hint=_HINT)
            if "title" not in item.get("paper", item) and "title" not in item:
                raise FetchError(f"item [{i}] has no title: not a daily_papers entry", hint=_HINT)
        return len(data)
