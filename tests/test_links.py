"""Every internal link of the built book leads somewhere: the file exists and so does the #anchor.

Cross-references in the sources ({ref}, {doc}, {term}, {numref}, ...) are already checked by
the build: ``tools/build_book.sh`` runs Sphinx with ``-n -W``, so an unresolved reference is a
warning and fails the build (``tests/test_build.py`` shows it on a throwaway book). This test
checks what comes out: it parses every HTML page of ``_build/html`` and follows each relative
``href``/``src`` (links, stylesheets, scripts, images, the root page's redirect), including the
theme's own links and raw HTML that Sphinx does not check.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"

pytestmark = [
    pytest.mark.built,
    pytest.mark.skipif(not HTML.is_dir(), reason=f"{HTML} does not exist: build the book first (`make book`)"),
]

# (tag, attribute) pairs that point at another file
LINK_ATTRIBUTES = {("a", "href"), ("link", "href"), ("img", "src"), ("script", "src"), ("source", "src"), ("iframe", "src")}


class LinkParser(HTMLParser):
    """Collects a page's element ids (and ``<a name>``) and its links (tag, attribute, value)."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (where, value), where = "<a href>" etc.

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id",) + (("name",) if tag == "a" else ()):
            if attrs.get(key):
                self.ids.add(attrs[key])
        for attribute in ("href", "src"):
            if (tag, attribute) in LINK_ATTRIBUTES and attrs.get(attribute) is not None:
                self.links.append((f"<{tag} {attribute}>", attrs[attribute]))
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            _, _, url = (attrs.get("content") or "").partition("url=")
            if url:
                self.links.append(("<meta refresh>", url.strip()))

    handle_startendtag = handle_starttag


@lru_cache(maxsize=None)
def parse_page(path: Path) -> LinkParser:
    parser = LinkParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def html_pages() -> list[Path]:
    """The built pages: every .html file outside ``_static`` (the theme's assets) and hidden folders."""
    parts = lambda p: p.relative_to(HTML).parts  # noqa: E731
    return sorted(p for p in HTML.rglob("*.html") if not any(x == "_static" or x.startswith(".") for x in parts(p)))


def broken_link(page: Path, value: str) -> str | None:
    """Why the link ``value`` on ``page`` is broken, or None if it works (or is not internal)."""
    url = urlparse(value)
    if url.scheme or value.startswith("//") or not value.strip():
        return None  # another site, mailto:, data:, javascript:
    if url.path:
        target = (page.parent / unquote(url.path)).resolve()
        if not target.is_relative_to(HTML.resolve()):
            return f"points outside the site: {target}"
        if url.path.endswith("/") or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return f"no file {target.relative_to(HTML.resolve())}"
    else:
        target = page
    fragment = unquote(url.fragment)
    if fragment and target.suffix == ".html" and fragment not in parse_page(target).ids:
        return f"no id {fragment!r} in {target.relative_to(HTML.resolve())}"
    return None


def test_internal_links_resolve():
    """Every relative link of every page points to an existing file and, with #anchor, an existing id in it."""
    pages = html_pages()
    assert any(p.name == "glossary.html" for p in pages), f"no glossary page among {len(pages)} pages"
    problems, checked, anchors = [], 0, 0
    for page in pages:
        for where, value in parse_page(page).links:
            problem = broken_link(page, value)
            internal = not (urlparse(value).scheme or value.startswith("//"))
            checked += internal
            anchors += internal and "#" in value
            if problem:
                problems.append(f"{page.relative_to(HTML)}: {where} {value!r}: {problem}")
    assert not problems, f"{len(problems)} broken internal links:\n" + "\n".join(problems[:40])
    # not vacuous: chapters link each other, the glossary and the bibliography by anchor
    assert checked > 100 and anchors > 20, (checked, anchors)


def test_broken_links_are_found(tmp_path, monkeypatch):
    """The checker itself reports a missing file and a missing anchor, and accepts good links."""
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "book" / "a.html").write_text('<h1 id="top">A</h1><a name="old"></a><a href="b.html#sec">b</a>')
    (site / "book" / "b.html").write_text('<section id="sec"></section><img src="../_images/x.png"/>')
    monkeypatch.setattr(sys.modules[__name__], "HTML", site)
    page_a, page_b = site / "book" / "a.html", site / "book" / "b.html"
    assert broken_link(page_a, "b.html#sec") is None
    assert broken_link(page_a, "#top") is None and broken_link(page_a, "#old") is None
    assert broken_link(page_a, "https://example.org/x.html#nothing") is None
    assert "no id 'missing'" in broken_link(page_a, "b.html#missing")
    assert "no id 'gone'" in broken_link(page_a, "#gone")
    assert "no file _images/x.png" in broken_link(page_b, "../_images/x.png")
    assert "outside the site" in broken_link(page_b, "../../../etc/passwd")
