"""A rendered papers page, taken back to the plain page shape that :mod:`.hf_text` reads.

People save a Hugging Face papers page in many ways: copied as text (URLs on lines of their
own, the site's navigation around the list), converted to Markdown by a scraper (Firecrawl:
``[101](login-url)`` upvotes, ``### [Title](url)``, the abstract as one link, hard-wrapped
with ``\\`` breaks), by a reader tool or lynx (reference links ``[Title][32]`` whose targets
are missing), wrapped by the capturing tool (YAML front matter, a header block, code fences,
rules). This module undoes the rendering line by line, remembering each output line's line
in the file, so errors still point into the file:

- wrappers, images, anchors and image placeholders go; links become their text, and the
  paper links their URL on a line of its own; a link split over lines is joined first;
- upvote buttons become ``[-] N``; author and organisation links ``• N authors`` and
  ``• Name``; a comment link after a date its count;
- the site's navigation before the listing date (or the first paper) and its furniture
  after the last paper go.

The seeds' plain shape comes through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from urllib.parse import unquote

from .checks import NAVIGATION
from .dates import DATE_LINE, LISTING_LINE, month_number, valid_month_day

_FENCE = re.compile(r"\s*(```|~~~)")
_RULE = re.compile(r"\s*([-*_=])(\s*\1){2,}\s*")
_KEY_VALUE = re.compile(r"([A-Za-z][\w .-]{0,40}):(?:\s+(.*))?")
_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_HEADING = re.compile(r"#{1,6}\s+")
_BULLET = re.compile(r"(?:[-*+]\s+)+")
_IMAGE = re.compile(r"!\[[^\]\n]*\](?:\([^)\s]*\)|\[[^\]\n]*\])?")
_PLACEHOLDER = re.compile(r"\[(?:image|img|picture|photo|figure|icon)\b[^\[\]\n]{0,80}\]", re.I)
_ANCHOR = re.compile(r"\[(?:¶|#|§)?\]\(#[^)]*\)|<a\s[^>]*>\s*</a>|\{#[\w-]+\}")
# [text](url) or [text][ref] / [text][], text holding no brackets (images are gone by then)
_LINK = re.compile(r"\[([^\[\]]*)\](?:\((<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\)|\[([^\[\]]*)\])")
# the plain page shape (what hf_text reads) puts URLs and upvote counts on lines of their own
URL_LINE = re.compile(r"<?(https?://\S+?)>?")
UPVOTE_LINE = re.compile(r"\[\s*[-–]?\s*\]\s*(\d[\d,]*|[-–])")
_HF_PAPER = re.compile(
    r"https?://(?:www\.)?huggingface\.co/papers/(\d{4}\.\d{4,5})(?:v\d+)?/?(#[\w-]*)?$", re.I
)
_LOGIN = re.compile(r"https?://(?:www\.)?huggingface\.co/login\?next=([^\s#]*)", re.I)
_HF_OTHER = re.compile(r"https?://(?:www\.)?huggingface\.co(?:/[^\s]*)?$", re.I)
_HF_PROFILE = re.compile(r"https?://(?:www\.)?huggingface\.co/([\w.-]+)/?$", re.I)
_DATE_LINK = re.compile(r"huggingface\.co/papers/date/(\d{4}-\d{2}-\d{2})")
_ARXIV_IN = re.compile(r"(\d{4}\.\d{4,5})")
_COUNT = re.compile(r"\d[\d,]*|[-–]")
_UPVOTE_WORD = re.compile(r"(?:upvote|upvotes|▲)\s*(\d[\d,]*|[-–])", re.I)
_PUBLISHED = re.compile(r"^(·\s*)?(?:published|submitted)(?: on)?\s+", re.I)
_AUTHORS = re.compile(r"(?:[-•*·]\s*)*(\d[\d,]*)\s+authors?", re.I)
# the site's profile pages are not organisations
_SITE_PAGES = frozenset(
    "models datasets spaces docs enterprise pricing login join papers posts collections "
    "settings storage blog learn organizations new akhaliq huggingface".split()
)
_MARKERS = (
    "get trending papers in your email inbox",
    "daily papers",
    "byak and the research community",
    "by ak and the research community",
    "trending papers",
)
_FOOTER = frozenset(
    {"previous", "next", "load more", "show more", "see more", "system theme", "company"}
)
MAX_JOIN = 120  # lines a split link may span
MAX_LINE = 1 << 20  # characters: a page's longest line is an abstract of a few thousand
# Markdown's escaped brackets ("a token \\[RET\\]") stand aside while links are matched
_ESCAPED = {"\\[": "\ue000", "\\]": "\ue001"}
_UNESCAPE = str.maketrans({"\ue000": "[", "\ue001": "]"})
SHAPES = {
    "plain": "Hugging Face papers page saved as text",
    "urls": "papers page copied as text with URLs on lines of their own",
    "markdown": "papers page converted to Markdown",
    "references": "papers page with numbered reference links (lynx or reader style)",
    "single": "single paper's page",
}


class LineTooLong(Exception):
    """A line no papers page has: taking it apart would only cost time."""

    def __init__(self, line: int, length: int) -> None:
        super().__init__(f"line {line} is {length:,} characters long")
        self.line, self.length = line, length


@dataclass
class Page:
    text: str
    source: list[int] | None  # the file's line (1-based) of each line; None: the same
    shape: str  # a key of SHAPES
    looks_like_listing: bool
    dates: list[date] = field(default_factory=list)  # the listing is not long after these

    @property
    def shape_name(self) -> str:
        return SHAPES[self.shape]

    @property
    def reference(self) -> date | None:
        """A day the listing is not after, to give its yearless date a year."""
        return max(self.dates) if self.dates else None


def _is_plain(text: str) -> bool:
    """The seeds' shape: no Markdown link, no wrapper, no navigation with URLs. Told by the
    head: every other rendering shows its links and wrapper from its first entries on."""
    text = text[:65536]
    if "](" in text or "][" in text or "```" in text:
        return False
    head = text[:2000].lstrip()
    return (
        not head.startswith("---")
        and "huggingface.co/" not in head
        and "\n#" not in head
        and "\nAbstract\n" not in text[:20000]  # a single paper's page
    )


def read_page(text: str) -> Page:
    if _is_plain(text):
        return Page(text, None, "plain", _has_markers(text[:65536].split("\n", 400)))
    return _Reader(text.split("\n")).read()


def _has_markers(lines: list[str]) -> bool:
    for line in lines[:400]:
        low = line.strip().lower()
        if any(low.startswith(m) for m in _MARKERS):
            return True
    return False


class _Reader:
    def __init__(self, lines: list[str]) -> None:
        self.raw = lines
        self.out: list[str] = []
        self.source: list[int] = []
        self.dates: list[date] = []
        self.captured: list[date] = []  # the capture tool's own dates (front matter)
        self.links = 0  # Markdown links seen
        self.references = 0  # reference links [text][n] seen
        self.url_lines = 0
        self.papers_seen = 0  # paper links and upvote buttons
        self.h1: str | None = None  # the first top-level heading: a single paper's title
        self.paper_text: set[int] = set()  # lines that are a paper link's text

    # --- output ----------------------------------------------------------------------

    def emit(self, text: str, line: int, alone: bool = False) -> None:
        """A line of output; ``alone`` puts it in a paragraph of its own."""
        text = text.translate(_UNESCAPE)
        if alone and self.out and self.out[-1] != "":
            self.out.append("")
            self.source.append(line)
        self.out.append(text)
        self.source.append(line)
        if alone:
            self.out.append("")
            self.source.append(line)

    def blank(self, line: int) -> None:
        if self.out and self.out[-1] != "":
            self.out.append("")
            self.source.append(line)

    # --- reading ---------------------------------------------------------------------

    def read(self) -> Page:
        raw = self.raw
        i = self._wrapper()
        n = len(raw)
        while i < n:
            line = raw[i]
            lineno = i + 1
            if len(line) > MAX_LINE:
                raise LineTooLong(lineno, len(line))
            s = line.strip()
            i += 1
            if not s:
                self.blank(lineno)
                continue
            if _FENCE.match(s) or _RULE.fullmatch(s):
                continue  # a capture tool's code fences and rules, wherever they are
            if "\\" in s:
                s = _hide_escapes(s)
            depth = _depth(s)
            if depth > 0:
                s, i = self._join(s, i, depth)
            self._line(s, lineno)
        return self._page()

    def _wrapper(self) -> int:
        """Index of the first line after YAML front matter or a header block of
        ``Key: value`` lines; their dates are kept as hints."""
        raw = self.raw
        i = 0
        while i < len(raw) and not raw[i].strip():
            i += 1
        if i < len(raw) and raw[i].strip() == "---":
            for j in range(i + 1, min(len(raw), i + 200)):
                if raw[j].strip() in ("---", "..."):
                    for k in range(i + 1, j):
                        self._hint(raw[k], captured=True)
                    return j + 1
        start = i
        while i < len(raw) and (m := _KEY_VALUE.fullmatch(raw[i].strip())):
            if m[1].lower().startswith("http"):
                break
            self._hint(raw[i], captured=True)
            i += 1
            while i < len(raw) and not raw[i].strip():
                i += 1
        return i if i - start >= 2 else start

    def _hint(self, line: str, captured: bool = False) -> None:
        if m := _ISO_DAY.search(line):
            try:
                day = date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                return
            self.dates.append(day)
            if captured:
                self.captured.append(day)

    def _join(self, s: str, i: int, depth: int) -> tuple[str, int]:
        """A link opened on this line and closed on a later one, as one line."""
        raw = self.raw
        parts = [s]
        j = i
        while j < len(raw) and j - i < MAX_JOIN:
            nxt = raw[j].strip()
            j += 1
            if not nxt:
                continue
            if "\\" in nxt:
                nxt = _hide_escapes(nxt)
            parts.append(nxt)
            depth += _depth(nxt)
            if depth <= 0:
                return _join_wrapped(parts), j
        return s, i  # never closed: the line stays as it is

    def _line(self, s: str, lineno: int) -> None:
        for m in _DATE_LINK.finditer(s):
            # "Previous"/"Next" day links: the listing is within days of them
            try:
                self.dates.append(date.fromisoformat(m[1]) + timedelta(days=7))
            except ValueError:
                pass
        heading = _HEADING.match(s)
        if heading:
            if heading.group().startswith("# ") and self.h1 is None:
                self.h1 = s[heading.end() :].strip()
            s = s[heading.end() :]
        s = _ANCHOR.sub("", _PLACEHOLDER.sub("", s))
        s = _IMAGE.sub("", s).strip()
        if not s:
            return
        if s.startswith(("[", "- [", "* [")) and (link := _LINK.fullmatch(_BULLET.sub("", s, 1))):
            self._link(link[1], link[2], link[3], lineno)
            return
        if url := URL_LINE.fullmatch(s):
            self._url(url[1], lineno)
            return
        s = _BULLET.sub("", s, 1) if _BULLET.match(s) and "[" in s else s
        if "[" in s:
            s = _LINK.sub(self._inline, s)
        s = _PUBLISHED.sub(r"\1", s.replace("\\ ", " ")).strip()
        if not s:
            return
        if s.startswith("· ") and DATE_LINE.fullmatch(s[2:]):
            self.emit("·", lineno, alone=True)
            s = s[2:]
        if upvote := _UPVOTE_WORD.fullmatch(s):
            self.papers_seen += 1
            self.emit(f"[-] {upvote[1]}", lineno, alone=True)
        elif UPVOTE_LINE.fullmatch(s):
            self.papers_seen += 1
            self.emit(s, lineno, alone=True)
        elif authors := _AUTHORS.fullmatch(s):
            self.emit(f"• {authors[1]} authors", lineno, alone=True)
        elif s == "·" or s.startswith("· "):
            self.emit(s, lineno, alone=True)
        else:
            self.emit(s, lineno, alone=heading is not None)

    def _inline(self, m: re.Match[str]) -> str:
        """A link inside a line: its text (a comment link after a date: its count)."""
        text, url = m[1].strip(), m[2] or ""
        if m[3] is not None:
            self.references += 1
        else:
            self.links += 1
        if _COUNT.fullmatch(text) and ("#community" in url or m[3] is not None):
            return " " + text  # a comment count after a date: "Oct 7[12](...#community)"
        return text

    def _link(self, text: str, url: str | None, ref: str | None, lineno: int) -> None:
        """A line that is one link."""
        text = _join_wrapped([text]).replace("\\ ", " ").strip()
        text = _BULLET.sub("", text, 1).strip() if text.startswith(("-", "*", "+")) else text
        if ref is not None:
            self.references += 1
            url = ""
        else:
            self.links += 1
            url = (url or "").strip("<>")
        if _LOGIN.match(url) or (not url and _COUNT.fullmatch(text)):
            # the upvote button: its count, and the paper it is for
            if _COUNT.fullmatch(text):
                self.papers_seen += 1
                self.emit(f"[-] {text}", lineno, alone=True)
            return
        if m := _AUTHORS.fullmatch(text):
            self.emit(f"• {m[1]} authors", lineno, alone=True)
            return
        paper = _HF_PAPER.match(url)
        if paper and paper[2] == "#community":
            if _COUNT.fullmatch(text):
                self.emit(text, lineno, alone=True)
            self.emit(url, lineno, alone=True)
            return
        if paper:
            self.papers_seen += 1
            if text:
                self.emit(text, lineno, alone=True)
                self.paper_text.add(len(self.out) - 2)  # a title or abstract, whatever it says
            self.emit(url.split("#", 1)[0], lineno, alone=True)
            return
        profile = _HF_PROFILE.match(url)
        if profile and profile[1].lower() not in _SITE_PAGES and text:
            self.emit(f"• {text}", lineno, alone=True)  # an organisation's page
            return
        if text:
            self.emit(text, lineno, alone=True)

    def _url(self, url: str, lineno: int) -> None:
        """A URL on a line of its own."""
        self.url_lines += 1
        if login := _LOGIN.match(url):
            if _ARXIV_IN.search(unquote(login[1])):
                self.papers_seen += 1
            return  # the upvote button's target: the count came on the line before
        if _HF_PAPER.match(url):
            self.papers_seen += 1
            self.emit(url, lineno, alone=True)
        elif _HF_OTHER.match(url):
            return  # the site's navigation, profile and organisation pages
        else:
            self.emit(url, lineno)  # a URL in an abstract, wrapped onto its own line

    # --- header and footer -------------------------------------------------------------

    def _page(self) -> Page:
        single = self._single_paper()
        if single is not None:
            return single
        out, source = self.out, self.source
        first = _first_entry(out)
        date_at = None
        for k in range(first if first is not None else min(len(out), 400)):
            m = LISTING_LINE.fullmatch(out[k].strip())
            if m and (month := month_number(m["month"])) and valid_month_day(month, int(m[2])):
                date_at = k
        looks = first is not None or _has_markers(out)
        if first is None:
            first = 0
        start = date_at if date_at is not None else first
        header = ["Daily Papers", ""]
        if date_at is None and self.captured:
            # a page showing no date (trending, search): listed when it was captured
            day = min(self.captured)
            header += [f"{day:%b} {day.day}, {day.year}", ""]
        body = out[start:]
        body_source = source[start:]
        end = len(body)
        for k, line in enumerate(body):
            if k and line.strip().lower() in _FOOTER:
                end = k
                break
        # the site's navigation between the papers goes; a paper link's text stays, to be
        # refused if it is no title (see checks)
        lines = header + [
            "" if line.strip().lower() in NAVIGATION and start + k not in self.paper_text else line
            for k, line in enumerate(body[:end])
        ]
        line_map = [body_source[0] if body_source else 1] * len(header) + body_source[:end]
        if self.references > self.links:
            shape = "references"
        elif self.links:
            shape = "markdown"
        else:
            shape = "urls" if self.url_lines else "plain"
        return Page("\n".join(lines), line_map, shape, looks, self.dates)

    def _single_paper(self) -> Page | None:
        """A single paper's page (title, authors, "Abstract", the abstract, upvotes), as a
        listing of that one paper; None for any other page."""
        out = [line.strip() for line in self.out]
        low = [line.lower() for line in out]
        if "abstract" not in low or sum(bool(UPVOTE_LINE.fullmatch(x)) for x in out) > 1:
            return None
        at = low.index("abstract")
        arxiv = next((m[1] for x in out if (m := _ARXIV_LINE.fullmatch(x))), None)
        title = self.h1
        if title is None and arxiv is not None:
            k = next(i for i, x in enumerate(out) if _ARXIV_LINE.fullmatch(x)) + 1
            title = next((x for x in out[k:at] if x and x.lower() not in NAVIGATION), None)
        if not title:
            return None
        paragraph: list[str] = []
        k = at + 1
        while k < len(out) and not out[k]:
            k += 1
        while k < len(out) and out[k] and not _STOP.match(out[k]):
            paragraph.append(out[k])
            k += 1
        if not paragraph:
            return None
        head = out[:at]
        urls = [m[1] for x in out if (m := _HF_PAPER.match(x))]
        arxiv = arxiv or (urls[0] if urls else None)
        published = next((x for x in head if DATE_LINE.fullmatch(x)), None)
        upvotes = next((x for x in out if UPVOTE_LINE.fullmatch(x)), None)
        names = next((x for x in head if x.lower().startswith("authors:")), None)
        day = min(self.captured) if self.captured else None
        listing = f"{day:%b} {day.day}, {day.year}" if day else published
        lines = ["Daily Papers", ""] + ([listing, ""] if listing else [])
        lines += [upvotes or "", "", title, ""]
        lines += [f"https://huggingface.co/papers/{arxiv}", ""] if arxiv else []
        lines += [*paragraph, ""]
        if names is not None:
            count = len([n for n in names.split(":", 1)[1].split(",") if n.strip()])
            lines += [f"• {count} authors", "·", published or ""]
        line = self.source[at] if self.source else 1
        return Page("\n".join(lines), [line] * len(lines), "single", True, self.dates)


_ARXIV_LINE = re.compile(r"arxiv:\s*(\d{4}\.\d{4,5})", re.I)
# where a single paper's abstract ends: its page's buttons and sections
_STOP = re.compile(
    r"(?:\[-\]|upvote|view arxiv|view pdf|add to collection|community|models citing|"
    r"datasets citing|spaces citing|collections including|https?://)",
    re.I,
)


def _first_entry(out: list[str]) -> int | None:
    """Index of the first paper's first line: an upvote line, or the paragraph before the
    first paper link."""
    for k, line in enumerate(out):
        s = line.strip()
        if UPVOTE_LINE.fullmatch(s):
            return k
        if _HF_PAPER.match(s):
            j = k - 1
            while j >= 0 and not out[j].strip():
                j -= 1
            while j > 0 and out[j - 1].strip():
                j -= 1
            return max(j, 0)
    return None


def _hide_escapes(s: str) -> str:
    for escaped, mark in _ESCAPED.items():
        s = s.replace(escaped, mark)
    return s


def _depth(s: str) -> int:
    return s.count("[") - s.count("]")


def _join_wrapped(parts: list[str]) -> str:
    """Lines hard-wrapped inside a link, as one: a Markdown line break (a trailing
    backslash) and the line end are one space; a trailing hyphen joins without one."""
    out = ""
    for part in parts:
        part = part.strip()
        while part.endswith("\\"):
            part = part[:-1].rstrip()
        if not out:
            out = part
        elif out.endswith("-") and not out.endswith(" -") or out.endswith("["):
            out += part
        else:
            out += " " + part
    return out
