"""arXiv: the export API's Atom feed of new submissions in ``fetch.arxiv_categories``.

Without a day, one query for the most recent submissions (newest first, at most
``fetch.arxiv_max_results``), saved as ``arxiv-cs.LG+cs.CL-<today>.atom``; with days
(``--date``, ``--since``), one query per day bounded by its submission date. The feed is
saved unchanged and read by ``digestbot ingest`` like any other dump.
"""

from __future__ import annotations

import re
from datetime import date

import httpx

from ..config import Config
from ..errors import ConfigError, FetchError
from ..xmlsafe import UnsafeXML, parse_xml
from .sources import Request, Source, register

ATOM = "{http://www.w3.org/2005/Atom}"
# archive, or archive.subject: cs.LG, math.ST, hep-th, q-bio.NC
_CATEGORY = re.compile(r"[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?")
_HINT = (
    "Nothing was written. The server sent something other than an arXiv API feed (an error "
    "page?): try again later, or check fetch.arxiv_url."
)


@register("arxiv")
class ArxivListing(Source):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.categories: list[str] = list(self.config["fetch.arxiv_categories"])
        bad = [c for c in self.categories if not _CATEGORY.fullmatch(c)]
        if bad or not self.categories:
            raise ConfigError(
                f"not an arXiv category: {bad[0]!r}" if bad else "no arXiv categories given",
                field="fetch.arxiv_categories",
                hint='List categories as arXiv names them, e.g. ["cs.LG", "cs.CL"].',
            )

    def requests(self, days: list[date] | None, today: date) -> list[Request]:
        cats = " OR ".join(f"cat:{c}" for c in self.categories)
        base = httpx.URL(self.config["fetch.arxiv_url"])
        name = "+".join(self.categories)
        params = {
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "start": 0,
            "max_results": self.config["fetch.arxiv_max_results"],
        }
        if days is None:
            query = {"search_query": cats, **params}
            url = str(base.copy_merge_params(query))
            return [Request(url, f"arxiv-{name}-{today.isoformat()}.atom", f"arxiv {today}")]
        out = []
        for day in days:
            stamp = day.strftime("%Y%m%d")
            query = {
                "search_query": f"({cats}) AND submittedDate:[{stamp}0000 TO {stamp}2359]",
                **params,
            }
            out.append(
                Request(
                    str(base.copy_merge_params(query)),
                    f"arxiv-{name}-{day.isoformat()}.atom",
                    f"arxiv {day.isoformat()}",
                )
            )
        return out

    def check(self, body: bytes) -> int:
        try:
            root = parse_xml(body)
        except UnsafeXML as exc:
            raise FetchError(f"the response is refused: {exc}", hint=_HINT) from None
        if root.tag != f"{ATOM}feed":
            raise FetchError(
                f"the response is XML but not an Atom feed (root <{root.tag}>)", hint=_HINT
            )
        entries = root.findall(f"{ATOM}entry")
        for entry in entries:
            # the API reports a bad query as a feed with one entry whose id is an error URL
            if "/api/errors" in (entry.findtext(f"{ATOM}id") or ""):
                message = " ".join((entry.findtext(f"{ATOM}summary") or "").split())
                raise FetchError(
                    f"the arXiv API refused the query: {message or 'no reason given'}",
                    hint="Check fetch.arxiv_categories and fetch.arxiv_max_results.",
                )
        return len(entries)
