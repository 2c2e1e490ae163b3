"""The Hugging Face Daily Papers page saved as text.

A header (``new``, ``Get trending papers in your email inbox!``, ``Subscribe``, maybe a
search query, ``Daily / Weekly / Monthly``, ``Daily Papers``, ``byAK and the research
community``), the listing date (``Dec 29``), then per paper: maybe an upvote line
(``[-] 19``), the title, the abstract (perhaps hard-wrapped), and maybe a metadata block
(``• 5 authors`` or an organisation, ``·``, the publication date, maybe the comment count),
with URLs on lines of their own anywhere in the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..errors import IngestError
from .checks import MAX_TITLE, READS
from .dates import DATE_LINE, LISTING_LINE, latest_on_or_before, month_number, valid_month_day
from .hf_json import cut_title
from .lines import LineFeed
from .model import ParsedPaper, clean_text
from .page import UPVOTE_LINE, URL_LINE, LineTooLong, read_page

MARKERS = (
    "get trending papers in your email inbox",
    "daily papers",
    "byak and the research community",
)
KNOWN_HEADER = {
    "new",
    "subscribe",
    "daily papers",
    "byak and the research community",
    "get trending papers in your email inbox!",
    "get trending papers in your email inbox once a day!",
    "daily / weekly / monthly",
    "daily",
    "weekly",
    "monthly",
}
MAX_ORG = 200

HF_PAPER = re.compile(
    r"https?://(?:www\.)?huggingface\.co/papers/(\d{4}\.\d{4,5})(?:v\d+)?/?(#\S*)?", re.I
)
ARXIV = re.compile(r"https?://(?:www\.)?arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.I)
GITHUB = re.compile(r"https?://(?:www\.)?github\.com/[^/\s]+/[^/\s#?]+", re.I)
AUTHORS = re.compile(r"•?\s*\[?(\d[\d,]*)\s+authors?\]?(?:\([^)]*\))?", re.I)
NUMBER = re.compile(r"\d[\d,]*")


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def parse_text(
    path: Path, text: str, listing_date: date | None, limit: date
) -> tuple[date, list[ParsedPaper], str, list[str]]:
    """A papers page in any text rendering (see :mod:`.page`): its listing date, papers,
    shape and warnings."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        page = read_page(text)
    except LineTooLong as exc:
        raise IngestError(
            f"not a papers listing: {exc}, far longer than any line of a papers page",
            file=path,
            line=exc.line,
            hint=READS,
        ) from None
    del text
    if not page.looks_like_listing:
        raise IngestError(
            f"not a papers listing: the file is {_what(page.text)}",
            file=path,
            line=1,
            hint=READS,
        )
    parser = TextParser(
        path,
        page.text,
        listing_date,
        page.reference or limit,  # the page's own dates say more than the file's time
        plain=None,
        source=page.source,
    )
    page.text = ""
    try:
        papers = parser.parse()
    except IngestError as exc:
        if page.source is not None:  # say what the page looked like, and what is read
            exc.hint = f"{exc.hint + ' ' if exc.hint else ''}The file looks like a " + (
                f"{page.shape_name}. {READS}"
            )
        raise
    parser.feed.close()
    assert parser.listed_on is not None
    return parser.listed_on, papers, page.shape_name, parser.warnings


def _what(text: str) -> str:
    """What a text that is no papers page looks like, for the error."""
    head = text[:4096].lstrip()
    first = head.split("\n", 1)[0]
    if head[:1] in "<":
        return "markup (XML or HTML) with no paper list"
    if first.count(",") >= 1 and len(head.split("\n")) > 1:
        second = head.split("\n")[1]
        if second.count(",") == first.count(","):
            return "a table (CSV), not a papers page"
    if "](" in head or head.startswith("#"):
        return "Markdown with no paper entries (no paper links, upvotes or 'Daily Papers')"
    return "text with no paper entries (no paper links, upvotes or 'Daily Papers' header)"


@dataclass(slots=True)
class _Entry:
    line: int
    title: str | None = None
    abstract: str | None = None
    abstract_line: int = 0
    upvotes: int | None = None
    comments: int | None = None
    arxiv_id: str | None = None
    links: list[str] = field(default_factory=list)
    github_url: str | None = None
    author_count: int | None = None
    organization: str | None = None
    published_on: date | None = None
    meta: bool = False  # a metadata block has started
    long_title: int = 0  # the title's length, when over MAX_TITLE


class TextParser:
    def __init__(
        self,
        path: Path,
        text: str,
        listing_date: date | None,
        mtime_date: date,
        *,
        plain: bool | None = False,
        source: list[int] | None = None,
    ):
        self.path = path
        # the file's line of each line of ``text``, when that is a rendering taken back to
        # the plain shape (see :mod:`.page`)
        self.source = source
        # True: the text is known to hold no control characters; False: not known; None:
        # look, a segment at a time
        self._plain = plain
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.feed = LineFeed(text, check_controls=plain is None)
        self.given_date = listing_date
        self.mtime_date = mtime_date
        self.listed_on: date | None = None
        self.papers: list[ParsedPaper] = []
        self.warnings: list[str] = []
        self.cur: _Entry | None = None
        self.para: list[str] = []
        self.para_line = 0
        self._dates: dict[str, tuple[date, int | None] | None] = {}

    @property
    def plain(self) -> bool:
        """Whether the lines read so far are known to hold no control characters."""
        return self.feed.plain if self._plain is None else self._plain

    def error(self, message: str, line: int | None, hint: str | None = None) -> IngestError:
        return IngestError(message, file=self.path, line=self.in_file(line), hint=hint)

    def in_file(self, line: int | None) -> int | None:
        """The file's line number for a line number of the text parsed."""
        if line is None or self.source is None or not 0 < line <= len(self.source):
            return line
        return self.source[line - 1]

    # --- header --------------------------------------------------------------------------

    def _header(self) -> int:
        """Index of the first line after the header; sets the listing date."""
        seen = 0
        last_known = -1
        feed = self.feed
        i = -1
        while True:
            i += 1
            if i == len(feed.lines) and not feed.append():
                break  # the header may run past the first segment: read on
            s = feed.lines[i].strip()
            if not s:
                continue
            m = LISTING_LINE.fullmatch(s)
            month = month_number(m["month"]) if m else None
            if m and month and valid_month_day(month, int(m["day"])):
                self.listed_on = self._listing_date(month, int(m["day"]), m["year"], i + 1)
                return i + 1
            if s.lower() in KNOWN_HEADER or any(s.lower().startswith(k) for k in MARKERS):
                last_known = i
            seen += 1
            if seen >= 20:
                break
        if self.given_date is None:
            raise self.error(
                "no listing date (a line such as 'Dec 29') after the header",
                None,
                hint="Pass the listing date with --date YYYY-MM-DD.",
            )
        self.listed_on = self.given_date
        return last_known + 1

    def _listing_date(self, month: int, day: int, year: str | None, line: int) -> date:
        given = self.given_date
        if given is not None:
            if (given.month, given.day) != (month, day) or (year and int(year) != given.year):
                raise self.error(
                    f"the listing date in the file ({self.feed.lines[line - 1].strip()}) does not "
                    f"match --date {given.isoformat()}",
                    line,
                    hint="Drop --date, or give the date this page was listed on.",
                )
            return given
        if year:
            return date(int(year), month, day)
        return latest_on_or_before(month, day, self.mtime_date)

    # --- entries -------------------------------------------------------------------------

    def parse(self) -> list[ParsedPaper]:
        start = self._header()
        para = self.para  # the same list throughout: _close_para empties it in place
        for i, line in self.feed.numbered(start):
            s = line.strip()
            if not s:
                if para:
                    self._close_para()
                continue
            lineno = i + 1
            cur = self.cur
            if cur is not None and cur.meta and self._meta_line(cur, s, lineno):
                continue
            first = s[0]
            if first == "[" and (m := UPVOTE_LINE.fullmatch(s)):
                self._close_para()
                self._finish()
                self.cur = _Entry(lineno)
                self.cur.upvotes = 0 if m[1] in "-–" else _int(m[1])
                continue
            if first in "<h" and URL_LINE.fullmatch(s):
                self._url(s.strip("<>"), lineno)
                continue
            if first == "•" or (first == "[" or first.isdigit()) and AUTHORS.fullmatch(s):
                self._start_meta(s, lineno)
                continue
            if not para and cur is not None and cur.abstract is not None:
                nxt = self._next_nonblank(i)
                if nxt is not None and nxt.startswith("·"):
                    self._start_meta(s, lineno)
                    continue
                if nxt is not None and "#community" in nxt and NUMBER.fullmatch(s):
                    cur.comments = _int(s)
                    continue
            if not para:
                self.para_line = lineno
            para.append(s)
        self._close_para()
        self._finish(at_end=True)
        if not self.papers:
            raise self.error(
                "no papers after the header",
                None,
                hint="The page was saved before the list loaded, or is not a Daily Papers page.",
            )
        return self.papers

    def _next_nonblank(self, i: int) -> str | None:
        feed = self.feed
        k = i + 1 - feed.base
        while len(feed.lines) < k + 3 and feed.append():
            pass
        for raw in feed.lines[k : k + 3]:
            if raw.strip():
                return raw.strip()
        return None

    def _meta_line(self, cur: _Entry, s: str, lineno: int) -> bool:
        """A line that continues the open metadata block; False if it is something else."""
        if s[0] == "·":
            s = s[1:].strip()
            if not s:
                return True
        if cur.published_on is None:
            # a dump's dates repeat: each distinct line is read once
            if s in self._dates:
                found = self._dates[s]
            else:
                found = self._dates[s] = self._date_line(s, lineno)
            if found is not None:
                cur.published_on, count = found
                if count is not None:
                    cur.comments = count
                return True
        if cur.published_on is not None and cur.comments is None and NUMBER.fullmatch(s):
            cur.comments = _int(s)
            return True
        return False

    def _date_line(self, s: str, lineno: int) -> tuple[date, int | None] | None:
        """A publication date line's date and comment count; None if it is no date."""
        m = DATE_LINE.fullmatch(s)
        if m is None:
            return None
        month = month_number(m["month"])
        day = int(m["day"])
        if not (month and valid_month_day(month, day)):
            return None
        if m["year"]:
            try:
                published_on = date(int(m["year"]), month, day)
            except ValueError:
                raise self.error(f"no such date: {s!r}", lineno) from None
        else:
            assert self.listed_on is not None
            published_on = latest_on_or_before(month, day, self.listed_on)
        return published_on, _int(m["count"]) if m["count"] else None

    def _start_meta(self, s: str, lineno: int) -> None:
        self._close_para()
        cur = self.cur
        if cur is None or cur.title is None:
            raise self.error(
                f"author or organisation line {s!r} with no paper before it",
                lineno,
                hint="Each metadata block follows a title and an abstract.",
            )
        if cur.abstract is None:
            raise self._no_abstract(cur)
        if cur.meta:
            # a second block for the same entry cannot be told apart from a damaged file
            raise self.error(
                "a second author/organisation line for one paper",
                lineno,
                hint="A paper needs its own title and abstract before its metadata.",
            )
        cur.meta = True
        if m := AUTHORS.fullmatch(s):
            cur.author_count = _int(m[1])
        else:
            org = clean_text(s.lstrip("•").strip(), self.plain)
            cur.organization = org[:MAX_ORG] or None

    def _url(self, url: str, lineno: int) -> None:
        hf = HF_PAPER.fullmatch(url)
        arxiv = None if hf else ARXIV.match(url)
        if self.para and not hf and not arxiv:
            # a wrapped abstract can put a URL on a line of its own: it is still text
            self.para.append(url)
            return
        self._close_para()
        found = hf[1] if hf else arxiv[1] if arxiv else None
        cur = self.cur
        if cur is None or (found and cur.arxiv_id and cur.arxiv_id != found):
            self._finish()
            cur = self.cur = _Entry(lineno)
        if found:
            cur.arxiv_id = found
        link = url.split("#", 1)[0] if hf else url
        if link not in cur.links:
            cur.links.append(link)
        if cur.github_url is None and (g := GITHUB.match(url)):
            cur.github_url = g[0][:500]

    def _close_para(self) -> None:
        para = self.para
        if not para:
            return
        text = para[0] if len(para) == 1 else _join(para)
        text = clean_text(text, self.plain)
        line = self.para_line
        para.clear()
        cur = self.cur
        if cur is None or cur.abstract is not None or cur.meta:
            self._finish()
            cur = self.cur = _Entry(line)
        if cur.title is None:
            # an over-long title may be an abstract whose paper lost its own (see _finish)
            cur.long_title = len(text) if len(text) > MAX_TITLE else 0
            cur.title = text
            cur.line = line
        else:
            cur.abstract = text
            cur.abstract_line = line

    def _finish(self, at_end: bool = False) -> None:
        cur = self.cur
        self.cur = None
        if cur is None:
            return
        if cur.title is None:
            if at_end:
                raise self.error(
                    "the dump ends after an upvote line or link with no paper",
                    cur.line,
                    hint="The file looks cut off; download or copy it again.",
                )
            raise self.error("an upvote line or link with no paper title after it", cur.line)
        if cur.long_title and (cur.abstract is None or len(cur.abstract) < cur.long_title):
            # prose where a title belongs, and a shorter paragraph after it: the entries
            # slipped (a paper before it has no abstract)
            raise self._slipped(cur.line, cur.long_title)
        if cur.abstract is None:
            raise self._no_abstract(cur, at_end)
        if cur.long_title:
            self.warnings.append(
                f"{self.path}:{self.in_file(cur.line)}: a title of {cur.long_title} "
                f"characters; cut to {MAX_TITLE}"
            )
            cur.title = cut_title(cur.title)
        if at_end and cur.meta and cur.published_on is None:
            raise self.error(
                f"the dump ends inside the metadata of {cur.title!r}",
                cur.line,
                hint="The file looks cut off; download or copy it again.",
            )
        if at_end and cur.abstract[-1].isalnum() and not cur.meta:
            self.warnings.append(
                f"{self.path}:{self.in_file(cur.abstract_line)}: the last abstract ends "
                "mid-sentence; "
                "the dump may be cut off (a complete copy will repair it later)."
            )
        paper = ParsedPaper(
            title=cur.title,
            abstract=cur.abstract,
            line=self.in_file(cur.line) or 0,
            arxiv_id=cur.arxiv_id,
            author_count=cur.author_count,
            organization=cur.organization,
            published_on=cur.published_on,
            upvotes=cur.upvotes,
            comments=cur.comments,
            links=cur.links,
            github_url=cur.github_url,
        )
        self.papers.append(paper)

    def _no_abstract(self, cur: _Entry, at_end: bool = False) -> IngestError:
        if at_end:
            return self.error(
                f"the dump ends after the title {cur.title!r} with no abstract",
                cur.line,
                hint="The file looks cut off; download or copy it again.",
            )
        return self.error(
            f"the paper {cur.title!r} has no abstract",
            cur.line,
            hint="Every paper needs a title line, a blank line, then its abstract.",
        )

    def _slipped(self, line: int, length: int) -> IngestError:
        before = self.papers[-1] if self.papers else None
        hint = "Titles are one short paragraph, followed by a blank line and the abstract."
        if before is not None:
            hint = (
                f"The paper before it ({before.title[:60]!r}, line {before.line}) may have "
                "no abstract, or an abstract is split by a blank line. " + hint
            )
        return self.error(f"expected a paper title, found {length} characters of text", line, hint)


def _join(lines: list[str]) -> str:
    """Undo hard wrapping: a line ending in '-' joins the next without a space."""
    out = [lines[0]]
    for line in lines[1:]:
        if out[-1].endswith("-"):
            out[-1] += line
        else:
            out.append(line)
    return " ".join(out)
