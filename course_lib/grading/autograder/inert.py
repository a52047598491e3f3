"""Make a graded notebook inert before anyone opens it as HTML (issue 14, point 6).

The autograded notebook is what nbgrader's formgrader shows the instructor and what the feedback
page shows the student; both render Markdown with nbconvert's ``markdown2html`` (mistune, raw HTML
passed through, links of any scheme allowed) and code outputs' ``text/html``, ``image/svg+xml``
and ``application/javascript`` as they are. A ``<script>``, ``<img onerror=...>`` or
``[x](javascript:...)`` in a written answer or an output would run in the instructor's browser.

The policy, applied to every cell a student can change (all but nbgrader's locked cells, which
nbgrader restores from the source):

- A Markdown cell is parsed by nbconvert's own parser and renderer; every raw HTML fragment it would
  pass through must come out of ``bleach.clean`` (a maintained sanitiser, with a short list of
  formatting tags) unchanged, and every link or image must use a harmless scheme. Otherwise the
  whole cell is shown as plain text in a code block with a one-line note: the instructor still
  reads every word, nothing runs.
- An output's ``application/javascript`` and ``image/svg+xml`` (an SVG may hold scripts) are
  dropped; ``text/html`` and ``text/markdown`` are kept only when they pass the same test, else
  replaced by their text (outputs of every cell: a locked test cell may display a student's object).
"""
from __future__ import annotations

import html
import re

import bleach
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

#: Formatting a written answer may use in raw HTML (no attributes, so no event handlers or styles).
SAFE_TAGS = frozenset({"b", "i", "em", "strong", "u", "s", "sub", "sup", "br", "code", "kbd", "mark", "small",
                       "p", "ul", "ol", "li", "blockquote", "pre", "hr", "span", "div",
                       "table", "thead", "tbody", "tr", "th", "td", "caption"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "attachment"})
SAFE_DATA_URL = re.compile(r"data:image/(png|jpe?g|gif|webp);base64,", re.IGNORECASE)
#: Browsers ignore these characters inside a URL's scheme ("java\tscript:").
IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f]+")
SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
LONE_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)\s*/?>")
ACTIVE_OUTPUTS = ("text/html", "text/markdown", "image/svg+xml")
NOTE = ("*[grader] This cell contained HTML or a link that could run code in a browser ({what}); "
        "it is shown as plain text.*")


def harmless_html(fragment: str) -> bool:
    """``fragment`` is made only of :data:`SAFE_TAGS` without attributes: bleach changes nothing, or
    it is one such tag alone (Markdown hands inline HTML over a tag at a time; bleach would close it)."""
    lone_tag = LONE_TAG.fullmatch(fragment.strip())
    return bleach.clean(fragment, tags=SAFE_TAGS, attributes={}, strip=False) == fragment or bool(
        lone_tag and lone_tag[1].lower() in SAFE_TAGS)


def harmless_url(url: str) -> bool:
    """A relative URL, or one whose scheme (as a browser reads it) is in :data:`SAFE_SCHEMES`."""
    plain = IGNORED_IN_SCHEME.sub("", html.unescape(url))
    scheme = SCHEME.match(plain)
    return scheme is None or scheme[1].lower() in SAFE_SCHEMES or bool(SAFE_DATA_URL.match(plain))


class _Inspector(IPythonRenderer):
    """nbconvert's Markdown renderer, noting every raw HTML fragment and URL it would emit."""

    def __init__(self):
        super().__init__(escape=False)
        self.unsafe: list[str] = []

    def _html(self, fragment: str) -> None:
        if not harmless_html(fragment):
            self.unsafe.append(fragment.strip())

    def _url(self, url: str) -> None:
        if not harmless_url(url):
            self.unsafe.append(url.strip())

    def block_html(self, fragment: str) -> str:
        self._html(fragment)
        return super().block_html(fragment)

    def inline_html(self, fragment: str) -> str:
        self._html(fragment)
        return super().inline_html(fragment)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        self._url(url)
        return super().link(text, url, title)

    def image(self, text: str, url: str, title: str | None = None) -> str:
        self._url(url)
        return super().image(text, url, title)


def unsafe_markdown(source: str) -> list[str]:
    """The raw HTML fragments and URLs of ``source`` that would be live in nbconvert's HTML."""
    inspector = _Inspector()
    MarkdownWithMath(renderer=inspector).render(source)
    return inspector.unsafe


def as_plain_text(source: str, found: list[str]) -> str:
    """``source`` in a fenced code block (longer than any run of backticks in it), after a note."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", source)), default=0))
    what = ", ".join(sorted({re.sub(r"\W+", " ", f)[:20].strip() or "markup" for f in found}))[:80]
    return f"{NOTE.format(what=what)}\n\n{fence}text\n{source}\n{fence}"


def inert_markdown_cell(cell) -> bool:
    """Show the cell as plain text when it holds live HTML or links; ``True`` when it did."""
    found = unsafe_markdown(cell.source)
    if found:
        cell.source = as_plain_text(cell.source, found)
        cell.pop("attachments", None)
    return bool(found)


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def inert_output(output) -> None:
    """Drop JavaScript and SVG; keep HTML and Markdown only when harmless, else their text."""
    data = output.get("data")
    if not data:
        return
    data.pop("application/javascript", None)
    for mime in ACTIVE_OUTPUTS:
        if mime not in data:
            continue
        content = _text(data[mime])
        live = unsafe_markdown(content) if mime == "text/markdown" else [] if harmless_html(content) else [content]
        if mime == "image/svg+xml" or live:
            del data[mime]
            data.setdefault("text/plain", content)


def inert_notebook(nb) -> int:
    """Apply the module's policy: Markdown of every cell but nbgrader's locked ones (restored from
    the source), outputs of every cell. Returns the number of Markdown cells shown as text."""
    changed = 0
    for cell in nb.cells:
        locked = cell.get("metadata", {}).get("nbgrader", {}).get("locked", False)
        if cell.cell_type == "markdown" and not locked:
            changed += inert_markdown_cell(cell)
        for output in cell.get("outputs", []):  # a locked test cell may still show a student's object
            inert_output(output)
    return changed
