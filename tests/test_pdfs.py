"""The printable checklist and glossary PDFs (tools/dlmi_pdfs.py, sources read by tools/booksrc.py).

The fast tests typeset the book's real sources, as configured in ``_config.yml``, into
``tmp_path`` and read the PDFs back with pypdf; ``-m built`` checks the PDFs of the real
build and the pages that link them.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import pytest
import yaml
from pypdf import PdfReader

import booksrc
import dlmi_pdfs
from booksrc import SourceError

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
BOOK_TITLE = CONFIG["title"]
PDFS = {entry["kind"]: entry for entry in CONFIG["sphinx"]["config"]["dlmi_pdfs"]}
HTML = REPO / "_build" / "html"


def normalised(text: str) -> str:
    return " ".join(text.split())


def pdf_text(path: Path) -> str:
    """All the text of a PDF, whitespace-normalised."""
    return normalised(" ".join(page.extract_text() for page in PdfReader(path).pages))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Both PDFs typeset from the real sources: kind -> (spec, page count); WeasyPrint has nothing to say."""
    out = tmp_path_factory.mktemp("pdfs")
    result = {}
    for kind, entry in PDFS.items():
        spec, pages, problems = dlmi_pdfs.make_pdf({**entry, "output": str(out / Path(entry["output"]).name)}, REPO, BOOK_TITLE)
        assert not problems, f"WeasyPrint warnings while making the {kind} PDF: {problems}"
        result[kind] = spec, pages
    return result


def test_config_lists_both_pdfs():
    """_config.yml loads the extension from tools/ and names the two PDFs that the pages link."""
    assert CONFIG["sphinx"]["local_extensions"]["dlmi_pdfs"] == "tools"
    assert PDFS["checklist"]["source"] == "book/_checklist.md"
    assert PDFS["checklist"]["output"] == "_build/pdf/dlmi-eda-checklist.pdf"
    assert PDFS["glossary"]["source"] == "book/glossary.md"
    assert PDFS["glossary"]["output"] == "_build/pdf/dlmi-glossary.pdf"


def test_checklist_pdf(made):
    """1-2 A4 pages with the title, every section heading and every item exactly as in the source."""
    spec, pages = made["checklist"]
    reader = PdfReader(spec.output)
    assert 1 <= pages == len(reader.pages) <= 2
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    text = pdf_text(spec.output)
    sections = booksrc.load_checklist(REPO / PDFS["checklist"]["source"])
    assert normalised(spec.title) in text
    missing = [s.title for s in sections if normalised(s.title) not in text]
    missing += [
        item for s in sections for item in s.items if normalised(booksrc.render_inline(item, html_output=False)) not in text
    ]
    assert not missing, f"not in the checklist PDF: {missing}"
    assert BOOK_TITLE in text  # footer
    assert reader.metadata.title == spec.title


def test_checklist_footer_names_its_chapter(made):
    """The footer names the chapter that {include}s the checklist (chapter 3 does)."""
    source = REPO / PDFS["checklist"]["source"]
    including = [page for page in booksrc.toc_pages(REPO) if source.resolve() in booksrc.includes_of(page, REPO)]
    assert including, "no page of _toc.yml includes the checklist: chapter 3 should {include} it"
    assert booksrc.doc_label(including[0]) in pdf_text(made["checklist"][0].output)


def test_checklist_has_a_tick_box_per_item(made):
    """One empty square per item, drawn with CSS borders (no font needs a ballot-box glyph)."""
    spec, _ = made["checklist"]
    sections = booksrc.load_checklist(REPO / PDFS["checklist"]["source"])
    n_items = sum(len(s.items) for s in sections)
    markup = dlmi_pdfs.checklist_html(sections, title="t", book_title="b")
    assert markup.count('<span class="box"></span>') == n_items
    # WeasyPrint fills each box's border outline in the border colour
    rgb = " ".join(f"{int(dlmi_pdfs.BOX_COLOUR[i : i + 2], 16) / 255:.6f}" for i in (1, 3, 5))
    content = b"".join(page.get_contents().get_data() for page in PdfReader(spec.output).pages)
    assert content.count(f"{rgb} rg".encode()) == n_items


def test_glossary_pdf(made):
    """Every term, in bold, alphabetically; roles written out as words; a sensible number of pages."""
    spec, pages = made["glossary"]
    entries = booksrc.load_glossary(REPO / PDFS["glossary"]["source"])
    assert 3 <= pages == len(PdfReader(spec.output).pages) <= 20
    text = pdf_text(spec.output)
    assert normalised(spec.title) in text
    missing = [term for e in entries for term in e.terms if normalised(term) not in text]
    assert not missing, f"glossary terms not in the PDF: {missing}"
    # alphabetical: each term is found after the one before it
    position = 0
    for entry in sorted(entries, key=lambda e: e.name.casefold()):
        found = text.find(normalised(entry.name), position)
        assert found >= 0, f"{entry.name!r} is out of alphabetical order in the glossary PDF"
        position = found
    # MyST markup is rendered, not shown
    for raw in ("{term}", "{doc}", "`", "$"):
        assert raw not in text, f"{raw!r} left in the glossary PDF"
    assert "Chapter 2: Building blocks" in text  # {doc}`02_building_blocks`


def test_glossary_terms_are_bold(made):
    """The terms are set in the bold font (their text sits right after a switch to it)."""
    spec, _ = made["glossary"]
    reader = PdfReader(spec.output)
    fonts = {str(font.get_object()["/BaseFont"]) for page in reader.pages for font in page["/Resources"]["/Font"].values()}
    assert any("Bold" in name for name in fonts), fonts


def test_pdfs_are_deterministic(tmp_path):
    """The same source gives the same bytes (no dates), so an unchanged PDF is not rewritten."""
    entry = {**PDFS["checklist"], "output": str(tmp_path / "a.pdf")}
    dlmi_pdfs.make_pdf(entry, REPO, BOOK_TITLE)
    first = (tmp_path / "a.pdf").read_bytes()
    mtime = (tmp_path / "a.pdf").stat().st_mtime_ns
    dlmi_pdfs.make_pdf(entry, REPO, BOOK_TITLE)
    assert (tmp_path / "a.pdf").read_bytes() == first
    assert (tmp_path / "a.pdf").stat().st_mtime_ns == mtime
    assert b"CreationDate" not in first


def test_math_is_written_with_symbols():
    """Simple LaTeX becomes Unicode text; anything else stays as its source in a monospace span."""
    html = booksrc.render_inline(r"ReLU ($\max(0, x)$), $1/K$, $1 - \text{Dice}$, $\sigma^2$ and $\mathcal{L}$")
    assert '<span class="upright">max</span>(0, <i>x</i>)' in html
    assert "1 − <span" in html and "Dice" in html
    assert "σ<sup>2</sup>" in html
    assert r'<code class="math">\mathcal{L}</code>' in html
    assert booksrc.render_inline("see $x^2$", html_output=False) == "see x^2"


def test_roles_are_written_as_words():
    text = booksrc.render_inline(
        "A {term}`representations <Representation>` and {term}`batch`, *em* **bold** `code`, see {doc}`05_training`.",
        html_output=False,
        doc_name=lambda target: f"<{target}>",
    )
    assert text == "A representations and batch, em bold code, see <05_training>."
    assert booksrc.doc_label(REPO / "book" / "05_training.md").startswith("Chapter 5: ")
    assert booksrc.doc_reference_label("05_training", REPO / "book" / "glossary.md", REPO).startswith("Chapter 5: ")
    assert booksrc.doc_reference_label("99_not_written_yet", REPO / "book" / "glossary.md", REPO) == "Chapter 99"


# --------------------------------------------------------------------------- error paths


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def make(tmp_path: Path, kind: str, source: Path):
    return dlmi_pdfs.make_pdf({"kind": kind, "source": str(source), "output": str(tmp_path / "out.pdf")}, tmp_path, "A book")


@pytest.mark.parametrize("kind", ["checklist", "glossary"])
def test_missing_source(tmp_path, kind):
    with pytest.raises(SourceError, match=r"no-such\.md does not exist: create it or fix 'source'"):
        make(tmp_path, kind, tmp_path / "no-such.md")
    assert not (tmp_path / "out.pdf").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- only a comment -->\n", r"the checklist has no items"),
        ("### 1. Headings only\n\n### 2. And another\n", r"the checklist has no items"),
        ("### 1. A\n\n- [ ] fine\n\n### 2. Empty\n", r":5: section '2. Empty' has no items"),
        ("### 1. A\n\n- [ ] fine\n- a plain bullet\n", r":4: '- a plain bullet' is not a checklist item: .* as '- \[ \] text'"),
        ("### 1. A\n\n- [x] ticked\n", r":3: .* is not a checklist item"),
        ("- [ ] orphan\n\n### 1. A\n\n- [ ] fine\n", r":1: checklist item before the first section heading"),
    ],
    ids=["empty", "no-items", "empty-section", "plain-bullet", "ticked", "before-heading"],
)
def test_bad_checklist(tmp_path, text, message):
    source = write(tmp_path / "check.md", text)
    with pytest.raises(SourceError, match=message):
        make(tmp_path, "checklist", source)


def glossary(body: str) -> str:
    return f"# Glossary\n\n```{{glossary}}\n{body}```\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# Glossary\n\nNo directive here.\n", r"no \{glossary\} directive"),
        (glossary(""), r"the glossary has no entries"),
        (glossary("Alpha\n  First letter.\n\nBeta\n\nGamma\n  Third.\n"), r":7: glossary entry 'Beta' has an empty definition"),
        ("```{glossary}\nAlpha\n  First letter.\n", r":1: the \{glossary\} directive is never closed"),
        (glossary("  stray definition\nAlpha\n  First.\n"), r":4: indented text before the first glossary term"),
    ],
    ids=["no-directive", "no-entries", "empty-entry", "unclosed", "stray-definition"],
)
def test_bad_glossary(tmp_path, text, message):
    source = write(tmp_path / "glossary.md", text)
    with pytest.raises(SourceError, match=message):
        make(tmp_path, "glossary", source)


def test_glossary_syntax(tmp_path):
    """Sphinx's glossary syntax: options, synonyms on consecutive lines, classifiers, multi-paragraph definitions."""
    source = write(
        tmp_path / "glossary.md",
        "::::{glossary}\n:sorted:\n\nCT\nComputed tomography : modality\n  X-ray slices.\n\n  Second paragraph.\n\n"
        "Beta\n\n  Definition after a blank line.\n::::\n",
    )
    entries = booksrc.load_glossary(source)
    assert [e.terms for e in entries] == [("CT", "Computed tomography"), ("Beta",)]
    assert entries[0].definition == "X-ray slices.\n\nSecond paragraph."
    assert entries[0].line == 4 and entries[1].line == 10
    assert entries[1].definition == "Definition after a blank line."


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "poster", "source": "a.md", "output": "a.pdf"},
        {"kind": "glossary", "source": "a.md"},
        {"kind": "glossary", "source": "a", "output": "b", "colour": "red"},
        "glossary",
    ],
    ids=["kind", "no-output", "unknown-key", "not-a-mapping"],
)
def test_bad_config_entry(tmp_path, entry):
    with pytest.raises(SourceError, match=r"dlmi_pdfs entry .*kind \(checklist\|glossary\), source and output"):
        dlmi_pdfs.make_pdf(entry, tmp_path, "A book")


def test_extension_reports_a_one_line_error(tmp_path):
    """In a build, a bad source stops Sphinx with an ExtensionError saying what to fix; no PDFs, no work."""
    from sphinx.errors import ExtensionError

    def app(entries):
        config = SimpleNamespace(dlmi_pdfs=entries, html_title="A book", project="")
        return SimpleNamespace(config=config, srcdir=str(tmp_path))

    source = write(tmp_path / "check.md", "### 1. A\n\nnot an item\n")
    with pytest.raises(ExtensionError) as caught:
        dlmi_pdfs._build_pdfs(app([{"kind": "checklist", "source": "check.md", "output": "out/c.pdf"}]))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("dlmi_pdfs: ") and str(source) in message
    assert "is not a checklist item" in message
    dlmi_pdfs._build_pdfs(app([]))  # nothing configured: nothing to do
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the real build


class Links(HTMLParser):
    """The href of every <a> element, with its classes."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, set[str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs["href"], set((attrs.get("class") or "").split())))


def links_to(page: Path, name: str) -> tuple[list[Path], list[Path]]:
    """(files that the page's {download} links named ``name`` point to, same for its menu links)."""
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    body, menu = [], []
    for href, classes in parser.links:
        url = urlparse(href)
        if url.scheme or Path(unquote(url.path)).name != name:
            continue
        target = (page.parent / unquote(url.path)).resolve()
        if {"reference", "download"} <= classes:
            body.append(target)
        elif "dropdown-item" in classes:
            menu.append(target)
    return body, menu


@pytest.mark.built
@pytest.mark.parametrize("kind", ["checklist", "glossary"])
def test_built_pdfs(kind):
    """After the build: the PDF is under _build/pdf and, identical, under _build/html/_downloads."""
    if not HTML.is_dir():
        pytest.fail(f"{HTML} does not exist: run `make book` first (these tests check the built book)")
    pdf = REPO / PDFS[kind]["output"]
    assert pdf.is_file(), f"{pdf} was not made by the build"
    copies = list((HTML / "_downloads").glob(f"**/{pdf.name}"))
    assert copies, f"{pdf.name} was not copied under {HTML / '_downloads'}: does a page link it with {{download}}?"
    assert all(copy.read_bytes() == pdf.read_bytes() for copy in copies)


@pytest.mark.built
@pytest.mark.parametrize(("page", "kind"), [("book/glossary", "glossary"), ("book/03_eda_checklist", "checklist")])
def test_pages_link_the_pdfs(page, kind):
    """The glossary and chapter 3 offer their PDF with a {download} link, and every page's download menu lists it."""
    path = HTML / f"{page}.html"
    assert path.is_file(), f"{path} is missing: is {page} still in _toc.yml?"
    assert path.is_file(), f"{path} is missing: run `make book` first"
    name = Path(PDFS[kind]["output"]).name
    body, menu = links_to(path, name)
    assert body, f"{page} has no {{download}} link to {name} (write {{download}}`... </{PDFS[kind]['output']}>`)"
    assert menu, f"the download menu of {page} does not list {name}"
    for target in body + menu:
        assert target.is_file() and target.is_relative_to(HTML.resolve()), target


def test_write_if_changed_keeps_unchanged_files(tmp_path):
    """Same bytes: nothing written, modification time kept; new bytes: written (folders created)."""
    import os

    from booksrc import write_if_changed

    target = tmp_path / "sub" / "out.pdf"
    assert write_if_changed(target, b"%PDF-1") is True and target.read_bytes() == b"%PDF-1"
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    assert write_if_changed(target, b"%PDF-1") is False
    assert target.stat().st_mtime_ns == 1_000_000_000
    assert write_if_changed(target, b"%PDF-2") is True and target.read_bytes() == b"%PDF-2"
