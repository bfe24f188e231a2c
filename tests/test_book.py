"""Checks of the built book in _build/html (run after `make book`: ``pytest -m built``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"

pytestmark = pytest.mark.built

# chapter -> minimum number of figures on its page
CHAPTERS = {"book/01_what_is_deep_learning": 4, "book/02_building_blocks": 2, "book/03_eda_checklist": 15, "book/05_training": 10,
            "book/06_three_ways": 12, "book/07_evaluation": 9, "book/08_interpretability": 7, "book/09_unet_segmentation": 5, "book/10_generative_models": 10, "book/11_foundation_models": 1,
            "book/12_exercises": 5}


class PageParser(HTMLParser):
    """Collects <img> sources and the text inside cell outputs (elements with class cell_output)."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.outputs: list[str] = []
        self.output_classes: list[str] = []
        self._stack: list[bool] = []  # per open element: does it start a cell output?
        self._depth = 0  # number of open cell_output elements

    VOID = {"img", "br", "hr", "meta", "link", "input", "source", "area", "base", "col", "embed", "wbr"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag in self.VOID:
            return
        classes = (attrs.get("class") or "").split()
        starts = "cell_output" in classes
        if starts:
            self._depth += 1
            self.outputs.append("")
        if self._depth:
            self.output_classes.extend(classes)
        self._stack.append(starts)

    def handle_endtag(self, tag):
        if tag in self.VOID or not self._stack:
            return
        if self._stack.pop():
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.outputs[-1] += data


def page(name: str) -> Path:
    """The built HTML file of a source document, failing (not skipping) if the book was not built."""
    if not HTML.is_dir():
        pytest.fail(f"{HTML} does not exist: run `make book` first (these tests check the built book)")
    path = HTML / f"{name}.html"
    assert path.is_file(), f"{path} is missing: is {name} in _toc.yml, and did the build succeed?"
    return path


def parse(path: Path) -> tuple[str, PageParser]:
    html = path.read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(html)
    return html, parser


def local_file(page_path: Path, src: str) -> Path | None:
    """The file an <img src> points to, or None for data: URIs and external images."""
    url = urlparse(src)
    if url.scheme or src.startswith("//"):
        return None
    return (page_path.parent / unquote(url.path)).resolve()


def test_intro_page_exists():
    """The book's root page was built."""
    assert page("book/intro").stat().st_size > 0
    assert (HTML / "index.html").is_file()


@pytest.mark.parametrize(("name", "min_figures"), CHAPTERS.items(), ids=list(CHAPTERS))
def test_chapter_figures(name, min_figures):
    """Each chapter shows at least its number of figures, and every image file exists."""
    path = page(name)
    _, parser = parse(path)
    figures = [src for src in parser.images if "_images/" in src or src.startswith("data:image")]
    assert len(figures) >= min_figures, f"{name}: {len(figures)} figures, expected >= {min_figures}"
    for src in parser.images:
        target = local_file(path, src)
        if target is not None:
            assert target.is_file(), f"{name}: <img src={src!r}> points to a missing file {target}"
            assert target.is_relative_to(HTML.resolve())
            assert target.stat().st_size > 0


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_chapter_was_executed_cleanly(name):
    """Cells ran: outputs are present, none of them a traceback, an error or stderr."""
    html, parser = parse(page(name))
    assert parser.outputs, f"{name}: no executed cell outputs (class cell_output)"
    assert "traceback" not in parser.output_classes and "stderr" not in parser.output_classes
    for text in parser.outputs:
        assert "Traceback" not in text, text[:500]
        assert not re.search(r"^\s*\w*(Error|Exception): ", text, re.M), text[:500]
    assert "Traceback (most recent call last)" not in html


@pytest.mark.parametrize("name", ["book/intro", *CHAPTERS])
def test_glue_references_resolved(name):
    """Every {glue:...} role was replaced by its value."""
    html, _ = parse(page(name))
    assert "{glue:" not in html and "{glue}" not in html
