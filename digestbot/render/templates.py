"""The Jinja2 environment for emails, with CSS inlined once when a template is loaded.

Mail clients (Gmail, Outlook) honour inline ``style`` attributes far better than
``<style>`` blocks, but inlining each message would cost more than rendering it. So the
loader inlines ``templates/email/_email.css`` into every ``*.html.j2`` template's *source*, before
Jinja compiles it: the work is done once per template per process. Jinja syntax is swapped
for inert placeholders while the HTML parser runs (statements become comments, which a
parser keeps in place even between table rows), then swapped back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import css_inline
import jinja2

from ..errors import RenderError
from ..resources import templates_dir

CSS_NAME = "_email.css"
_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.S)
# a comment inside <title> (raw text to an HTML parser) comes back escaped
_BODY = re.compile(r"<body>\n?|</body>")
_PLACEHOLDER = re.compile(r"<!--JJ(\d+)JJ-->|&lt;!--JJ(\d+)JJ--&gt;|@@JJ(\d+)JJ@@")


def inline_source(source: str, css: str) -> str:
    """Inline ``css`` into the HTML of a Jinja template source, keeping the Jinja intact."""
    saved: list[str] = []

    def protect(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        n = len(saved) - 1
        # statements may sit between table rows, where only comments survive parsing
        return f"<!--JJ{n}JJ-->" if match.group(0)[1] in "%#" else f"@@JJ{n}JJ@@"

    protected = _JINJA.sub(protect, source)
    # inline_style_tags=False: the <style> kept in the head holds the @media rules (dark
    # mode, narrow screens) that cannot be inlined.
    inliner = css_inline.CSSInliner(
        inline_style_tags=False, keep_style_tags=True, extra_css=css, load_remote_stylesheets=False
    )
    is_document = protected.lstrip()[:9].lower() in ("<!doctype", "<html>")
    try:
        html = inliner.inline(protected) if is_document else inliner.inline_fragment(protected, css)
    except css_inline.InlineError as exc:
        raise RenderError(f"cannot inline CSS: {exc}") from None

    def restore(match: re.Match[str]) -> str:
        return saved[int(match.group(1) or match.group(2) or match.group(3))]

    if is_document and "<body" not in protected:
        # the parser adds the optional <body> the template left out on purpose (Yahoo's
        # apps drop the element): out again
        html = _BODY.sub("", html)
    return _PLACEHOLDER.sub(restore, html)


@lru_cache(maxsize=1)
def _stylesheet() -> str:
    return (templates_dir() / "email" / CSS_NAME).read_text(encoding="utf-8")


class InliningLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that inlines the email stylesheet into HTML templates."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html.j2"):
            source = inline_source(source, _stylesheet())
        return source, filename, uptodate


@lru_cache(maxsize=8)
def styled_tag(tag: str, css_class: str) -> str:
    """The opening tag ``<tag class=...>`` with its inlined style, for markup built in code."""
    html = css_inline.inline_fragment(f'<{tag} class="{css_class}">x</{tag}>', _stylesheet())
    return html[: html.index(">") + 1]


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The shared email environment; the web front may render its own emails with it."""
    return jinja2.Environment(
        loader=InliningLoader(templates_dir() / "email"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def get_template(name: str) -> jinja2.Template:
    try:
        return environment().get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(
            f"template {exc.name} not found",
            file=str(templates_dir() / "email" / str(exc.name)),
            hint="Reinstall digestbot, or restore the file from the templates/ folder.",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(
            f"template syntax error: {exc.message}",
            file=exc.filename or name,
            line=exc.lineno,
            hint="Fix the template; see the Jinja2 documentation for the syntax.",
        ) from None
