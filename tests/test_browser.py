"""The built book as a reader sees it: Chromium (Debian's, driven by Playwright) on the served site.

``_build/html`` is served on a free localhost port. Every request to another host is aborted
and fails the test: the pages must work offline (MathJax comes from ``_static/mathjax``, see
``tools/dlmi_html.py``). Checked for every page of ``_toc.yml``: no console errors, page errors
or failed requests; every image of the article loads; MathJax typeset every equation. Also:
the search page finds a glossary term, the launch (Colab, Binder) and download menus point where
they should, the printable PDFs download, and the colour-mode switch changes the theme.
Screenshots land in ``_build/screenshots/``.

Needs Chromium: ``make install`` installs Debian's ``chromium``; ``DLMI_CHROMIUM`` names another
executable. Playwright's own browser download is never used.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml
from booksrc import load_glossary, toc_pages
from dlmi_launch import is_notebook_source

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
SHOTS = REPO / "_build" / "screenshots"
CHROMIUM = os.environ.get("DLMI_CHROMIUM", "").strip() or "/usr/bin/chromium"
SEARCH_QUERY = "Dice"  # a glossary term (checked below), searched for on search.html
SCREENSHOT_CHAPTER = "book/02_building_blocks"  # a chapter with equations and figures
TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.built,
    pytest.mark.skipif(not HTML.is_dir(), reason=f"{HTML} does not exist: build the book first (`make book`)"),
]

SOURCES = {path.relative_to(REPO).with_suffix("").as_posix(): path for path in toc_pages(REPO)}  # docname -> source
PAGES = list(SOURCES)
NOTEBOOKS = [name for name, path in SOURCES.items() if is_notebook_source(path)]  # pages with launch buttons


# --------------------------------------------------------------------------- fixtures


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def site() -> str:
    """The built book served over HTTP on a free localhost port: its base URL (ends with '/')."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright (headless), failing with a one-line fix if it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is not installed: run `make install`", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run `make install` (or `sudo apt-get install chromium`), "
            "or set DLMI_CHROMIUM to a Chromium executable",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


class Visit:
    """One browser tab on the served site that records everything that went wrong while it was open."""

    def __init__(self, browser, site: str, color_scheme: str = "light"):
        self.site = site
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=color_scheme)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.external: list[str] = []  # requests to other hosts (aborted)
        self.problems: list[str] = []  # console errors, page errors, failed requests, HTTP errors
        self.page.on("console", lambda msg: msg.type == "error" and self.problems.append(f"console error: {msg.text}"))
        self.page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.external.append(route.request.url)
            route.abort()

    def _failed(self, request) -> None:
        if request.url not in self.external:
            self.problems.append(f"request failed ({request.failure}): {request.url}")

    def open(self, path: str) -> None:
        """Load ``path`` (relative to the site root) and wait until MathJax, if any, has typeset the page."""
        self.page.goto(self.site + path, wait_until="load")
        self.page.evaluate(
            "async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise; }"
        )

    def assert_clean(self, what: str) -> None:
        """No request left localhost, and nothing went wrong."""
        assert not self.external, f"{what}: requests to other hosts (the book must work offline): {self.external}"
        assert not self.problems, f"{what}: " + "; ".join(self.problems)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, site):
    """A :class:`Visit` factory; the tabs close after the test."""
    opened: list[Visit] = []

    def make(color_scheme: str = "light") -> Visit:
        opened.append(Visit(browser, site, color_scheme))
        return opened[-1]

    yield make
    for tab in opened:
        tab.close()


def screenshot(tab: Visit, name: str, **options) -> Path:
    """Save what the tab shows as ``_build/screenshots/<name>.png`` (for a human to look at)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    tab.page.screenshot(path=str(path), **options)
    return path


# --------------------------------------------------------------------------- every page

IMAGES_JS = """async () => {
  const images = [...document.querySelectorAll('article img')];
  const broken = [];
  for (const img of images) {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) {}
    if (!(img.complete && img.naturalWidth > 0)) broken.push((img.getAttribute('src') || '').slice(0, 120));
  }
  return {count: images.length, broken};
}"""

MATH_JS = """() => {
  const article = document.querySelector('article') || document.body;
  const math = [...article.querySelectorAll('.math')];
  const raw = math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.trim().slice(0, 80));
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container').forEach(el => el.remove());
  const text = copy.textContent;
  const leftover = ['$$', '\\\\(', '\\\\[', '\\\\begin{'].filter(s => text.includes(s));
  return {math: math.length, rendered: article.querySelectorAll('mjx-container').length, raw, leftover};
}"""


@pytest.mark.parametrize("docname", PAGES)
def test_page_loads_cleanly(visit, docname):
    """The page loads with no console error, page error, failed or external request; images and math render."""
    tab = visit()
    tab.open(f"{docname}.html")
    assert tab.page.locator("article h1").count() >= 1, f"{docname}: no <h1> in the article"
    images = tab.page.evaluate(IMAGES_JS)
    assert not images["broken"], f"{docname}: images that did not load: {images['broken']}"
    math = tab.page.evaluate(MATH_JS)
    assert not math["raw"], f"{docname}: equations MathJax did not typeset: {math['raw'][:5]}"
    assert not math["leftover"], f"{docname}: raw TeX delimiters left in the text: {math['leftover']}"
    if math["math"]:
        assert math["rendered"] >= math["math"]
    tab.assert_clean(docname)


def test_every_page_is_checked():
    """The list above is the book's table of contents: the root page and every chapter."""
    assert "book/intro" in PAGES and "book/glossary" in PAGES and len(PAGES) >= 5


def test_math_uses_local_mathjax_and_fonts(visit):
    """A chapter with equations typesets them with MathJax from _static, web fonts included."""
    tab = visit()
    fonts: list[str] = []
    tab.page.on("response", lambda r: r.url.endswith(".woff") and r.status == 200 and fonts.append(r.url))
    tab.open(f"{SCREENSHOT_CHAPTER}.html")
    src = tab.page.evaluate("() => [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s))")
    assert src and all(s.startswith(tab.site + "_static/mathjax/") for s in src), src
    assert tab.page.locator("article mjx-container").count() >= 10
    tab.page.evaluate("() => document.fonts.ready")
    assert fonts and all("/_static/mathjax/" in url for url in fonts), f"MathJax fonts loaded: {fonts}"
    tab.assert_clean("local MathJax")


# --------------------------------------------------------------------------- search


def test_search_finds_a_glossary_term(visit):
    """search.html?q=<term> lists the glossary page among its results."""
    terms = {entry.name.split()[0].casefold() for entry in load_glossary(REPO / "book" / "glossary.md")}
    assert SEARCH_QUERY.casefold() in terms, f"{SEARCH_QUERY!r} is no longer a glossary term: pick another"
    tab = visit()
    tab.open(f"search.html?q={SEARCH_QUERY}")
    results = tab.page.locator("#search-results ul.search li a")
    results.first.wait_for()
    tab.page.wait_for_function("() => !document.querySelector('#search-results .search-summary') || "
                               "document.querySelector('#search-results .search-summary').textContent.trim() !== ''")
    hrefs = results.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert any(urlparse(h).path.endswith("book/glossary.html") for h in hrefs), f"search for {SEARCH_QUERY}: {hrefs}"
    screenshot(tab, "search-results")
    tab.assert_clean("search page")


# --------------------------------------------------------------------------- top-bar menus


def _config() -> dict:
    return yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))


def _menu_links(tab: Visit, group: str) -> dict[str, str]:
    """The entries (text -> href) of a top-bar dropdown menu, e.g. ``launch`` or ``download``."""
    links = tab.page.locator(f".dropdown-{group}-buttons .dropdown-menu a")
    return {a.text_content().strip(): a.get_attribute("href") for a in links.all()}


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_launch_buttons(visit, docname):
    """Notebook pages offer Colab (the chapter's notebook on the notebooks branch) and Binder (its source)."""
    config = _config()
    repo = config.get("repository") or {}
    org_repo = urlparse(repo.get("url", "")).path.strip("/").removesuffix(".git")
    notebooks_branch = (config["sphinx"]["config"].get("dlmi_launch") or {}).get("notebooks_branch")
    assert org_repo and repo.get("branch") and notebooks_branch, "_config.yml: repository url/branch or dlmi_launch missing"
    tab = visit()
    tab.open(f"{docname}.html")
    menu = _menu_links(tab, "launch")
    colab = f"https://colab.research.google.com/github/{org_repo}/blob/{notebooks_branch}/{docname}.ipynb"
    assert menu.get("Colab") == colab, menu
    source = SOURCES[docname].relative_to(REPO).as_posix()
    binder = menu.get("Binder", "")
    assert binder.startswith(f"https://mybinder.org/v2/gh/{org_repo}/{repo['branch']}?urlpath=") and binder.endswith(source), menu
    # the notebook Colab opens is the one the book workflow publishes from _build/html/_notebooks
    response = tab.page.request.get(urljoin(tab.site, f"_notebooks/{docname}.ipynb"))
    assert response.status == 200 and json.loads(response.body())["cells"], f"_notebooks/{docname}.ipynb"
    tab.assert_clean(docname)


def test_download_menu_and_pdfs(visit):
    """A notebook chapter's download menu offers .md, .ipynb, print-to-.pdf and both printable PDFs, which download."""
    docname = next(name for name in NOTEBOOKS if name != "book/intro")
    tab = visit()
    tab.open(f"{docname}.html")
    entries = tab.page.locator(".dropdown-download-buttons .dropdown-menu").first
    texts = [t.strip() for t in entries.locator(".btn__text-container").all_text_contents()]
    assert ".md" in texts and ".pdf" in texts, f"{docname}: download menu {texts} lacks .md or .pdf (print)"
    menu = _menu_links(tab, "download")
    notebooks = [text for text in menu if text.startswith(".ipynb")]
    assert notebooks, f"{docname}: download menu {texts} lacks .ipynb"
    base = tab.page.url
    for text in [".md", *notebooks]:
        response = tab.page.request.get(urljoin(base, menu[text]))
        assert response.status == 200, f"{docname}: {text} download {menu[text]}: HTTP {response.status}"
        if text == ".md":
            assert response.body().lstrip().startswith(b"---"), f"{docname}: {menu[text]} is not the MyST source"
        else:
            assert json.loads(response.body())["cells"], f"{docname}: {menu[text]} is not a notebook"
    pdfs = {cls: tab.page.locator(f".btn-download-dlmi-{cls}-button").get_attribute("href") for cls in ("checklist", "glossary")}
    for kind, href in pdfs.items():
        assert href, f"{docname}: no {kind} PDF in the download menu"
        response = tab.page.request.get(urljoin(base, href))
        assert response.status == 200, f"{kind} PDF {href}: HTTP {response.status}"
        assert response.body()[:5] == b"%PDF-", f"{kind} PDF {href} is not a PDF"
    tab.assert_clean(docname)


# --------------------------------------------------------------------------- colour mode and screenshots


def test_dark_mode_toggles(visit):
    """The colour-mode button switches the page between light and dark; screenshots of both."""
    tab = visit()
    tab.open(f"{SCREENSHOT_CHAPTER}.html")
    html = tab.page.locator("html")
    assert html.get_attribute("data-theme") == "light"
    screenshot(tab, "chapter-light")
    equation = tab.page.locator("article div.math mjx-container").first
    equation.evaluate("el => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 300)")
    screenshot(tab, "chapter-math-light")
    button = tab.page.locator("button.theme-switch-button").first
    for _ in range(3):  # the button cycles through auto, light and dark
        button.click()
        if html.get_attribute("data-theme") == "dark":
            break
    assert html.get_attribute("data-theme") == "dark"
    background = tab.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", "dark mode left the page white"
    screenshot(tab, "chapter-math-dark")
    tab.page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(tab, "chapter-dark")
    tab.assert_clean("colour mode")


def test_glossary_screenshot(visit):
    """The glossary renders its terms as a definition list (screenshot for a human look)."""
    tab = visit()
    tab.open("book/glossary.html")
    assert tab.page.locator("article dl.glossary dt").count() >= 10
    screenshot(tab, "glossary")
    tab.assert_clean("glossary")
