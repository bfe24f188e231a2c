"""Sphinx extension: typeset the EDA checklist and the glossary as printable PDFs.

Registered in ``_config.yml`` (``sphinx: local_extensions: {dlmi_pdfs: tools}``) and driven
by the ``dlmi_pdfs`` setting there, a list of PDFs to make::

    dlmi_pdfs:
      - {kind: checklist, source: book/_checklist.md, output: _build/pdf/dlmi-eda-checklist.pdf,
         title: ..., menu: ...}
      - {kind: glossary, source: book/glossary.md, output: _build/pdf/dlmi-glossary.pdf, title: ...}

(paths relative to the book root; ``title`` and ``menu``, the text of the entry in the page's
download menu, are optional). On ``builder-inited``, before any page is read, every PDF is
regenerated from its source (parsed by ``tools/booksrc.py``) as purpose-built HTML rendered
by WeasyPrint, so that the pages' ``{download}`` links to ``/_build/pdf/...`` find the files.
A file is rewritten only when its bytes change (the output is deterministic: no dates), so an
unchanged source does not make Sphinx re-read the pages that link it. With ``dlmi_pdfs``
empty the extension does nothing.

HTML builds also list the PDFs in the download menu of the page's top bar
(sphinx-book-theme's ``header_buttons``).

Usable without Sphinx: :func:`make_pdf`, :func:`checklist_pdf`, :func:`glossary_pdf`.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from booksrc import (
    ChecklistSection,
    GlossaryEntry,
    SourceError,
    doc_label,
    doc_reference_label,
    includes_of,
    load_checklist,
    load_glossary,
    render_inline,
    toc_pages,
    write_if_changed,
)

__all__ = ["PdfSpec", "checklist_html", "checklist_pdf", "glossary_html", "glossary_pdf", "make_pdf", "setup"]

KINDS = ("checklist", "glossary")
DEFAULT_TITLES = {"checklist": "Medical image data: EDA checklist", "glossary": "Glossary"}
HOW_TO_USE = (
    "Work through the sections in order for every new dataset; tick a box once the check is done "
    "and its result is written down next to the data."
)
BOX_COLOUR = "#222222"  # the tick boxes' border (tests look for it in the PDF)
FONTS = '"DejaVu Sans", "Liberation Sans", "Noto Sans", Arial, Helvetica, sans-serif'


@dataclass(frozen=True)
class PdfSpec:
    """One entry of ``dlmi_pdfs``, with its paths resolved against the book root."""

    kind: str
    source: Path
    output: Path
    title: str
    menu: str

    @classmethod
    def from_config(cls, entry: object, root: Path) -> PdfSpec:
        """Check one ``dlmi_pdfs`` entry (a mapping) and resolve its paths."""
        fix = "each dlmi_pdfs entry (_config.yml, sphinx: config:) needs kind (checklist|glossary), source and output"
        if not isinstance(entry, dict):
            raise SourceError(f"dlmi_pdfs entry {entry!r} is not a mapping: {fix}")
        unknown = set(entry) - {"kind", "source", "output", "title", "menu"}
        if unknown:
            raise SourceError(f"dlmi_pdfs entry {entry!r} has unknown keys {sorted(unknown)}: {fix}, optionally title and menu")
        if entry.get("kind") not in KINDS or not entry.get("source") or not entry.get("output"):
            raise SourceError(f"dlmi_pdfs entry {entry!r}: {fix}")
        kind = entry["kind"]
        title = str(entry.get("title") or DEFAULT_TITLES[kind])
        return cls(kind, root / entry["source"], root / entry["output"], title, str(entry.get("menu") or f"{title} (PDF)"))


# --------------------------------------------------------------------------- HTML


def _css_string(text: str) -> str:
    """``text`` as a CSS string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _page_css(footer: str) -> str:
    return f"""
@page {{
  size: A4;
  margin: 15mm 17mm 17mm 17mm;
  @bottom-left {{ content: {_css_string(footer)}; font: 7.5pt {FONTS}; color: #555; }}
  @bottom-right {{ content: "Page " counter(page) " of " counter(pages); font: 7.5pt {FONTS}; color: #555; }}
}}
html {{
  font-family: {FONTS};
  color: #111;
  hyphens: none;
  font-variant-ligatures: none;
  text-align: left;
}}
body {{ margin: 0; }}
h1 {{ font-size: 17pt; margin: 0 0 1.5mm; color: #123d6b; }}
.subtitle {{ margin: 0 0 5mm; color: #444; }}
.math {{ font-family: "DejaVu Serif", "Liberation Serif", "Noto Serif", serif; overflow-wrap: anywhere; }}
.math i {{ font-style: italic; }}
.math .upright {{ font-style: normal; }}
code {{ font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 0.92em; }}
code.math {{ font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; }}
"""


def _document(title: str, author: str, css: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<meta name="author" content="{html.escape(author)}">'
        f"<style>{css}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def checklist_html(sections: list[ChecklistSection], *, title: str, book_title: str, chapter: str | None = None) -> str:
    """The checklist as a standalone HTML page (A4, CSS-drawn tick boxes, footer with book and chapter)."""
    footer = f"{book_title} · {chapter}" if chapter else book_title
    css = _page_css(footer) + f".box {{ border: 0.9pt solid {BOX_COLOUR}; }}" + """
html { font-size: 10.5pt; line-height: 1.38; }
section { break-inside: avoid; margin: 0 0 3.2mm; }
h2 { font-size: 11.5pt; margin: 0 0 1.6mm; padding-bottom: 0.7mm; border-bottom: 0.6pt solid #9aa8b8; color: #123d6b; }
ul { list-style: none; margin: 0; padding: 0; }
li { padding-left: 7.5mm; text-indent: -7.5mm; margin: 0 0 1.5mm; break-inside: avoid; }
/* an inline box hanging in the indent: not positioned, so the text stays in reading order */
.box { display: inline-block; box-sizing: border-box; width: 3.4mm; height: 3.4mm; margin: 0 4.1mm 0 0;
       vertical-align: -0.55mm; text-indent: 0; border-radius: 0.5mm; }
"""
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="subtitle">{html.escape(HOW_TO_USE)}</p>']
    for section in sections:
        items = "".join(
            f'<li><span class="box"></span><span class="item">{render_inline(item)}</span></li>' for item in section.items
        )
        parts.append(f"<section><h2>{render_inline(section.title)}</h2><ul>{items}</ul></section>")
    return _document(title, book_title, css, "\n".join(parts))


def _initial(entry: GlossaryEntry) -> str:
    first = next((ch for ch in entry.name if ch.isalnum()), "#")
    return first.upper() if first.isalpha() else "0–9"


def glossary_html(entries: list[GlossaryEntry], *, title: str, book_title: str, doc_name=None) -> str:
    """The glossary as a standalone HTML page: alphabetical, grouped by initial, two columns.

    Args:
        entries: The glossary entries (any order).
        doc_name: Maps a ``{doc}`` target to the words shown for it (see :func:`booksrc.render_inline`).
    """
    css = _page_css(f"{book_title} · {title}") + """
html { font-size: 8.8pt; line-height: 1.36; }
.entries { columns: 2; column-gap: 8mm; }
h2 { font-size: 12pt; margin: 2.5mm 0 1.2mm; padding-bottom: 0.4mm; border-bottom: 0.6pt solid #9aa8b8;
     color: #123d6b; break-after: avoid; }
.entries > h2:first-child { margin-top: 0; }
.entry { margin: 0 0 2mm; break-inside: avoid; }
.term { font-weight: bold; margin: 0; break-after: avoid; }
.definition { margin: 0.3mm 0 0; }
.definition + .definition { margin-top: 1mm; }
"""
    ordered = sorted(entries, key=lambda e: (e.name.casefold(), e.name))
    subtitle = f"{len(ordered)} terms from <em>{html.escape(book_title)}</em>, in alphabetical order."
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="subtitle">{subtitle}</p>', '<div class="entries">']
    letter = None
    for entry in ordered:
        if _initial(entry) != letter:
            letter = _initial(entry)
            body.append(f"<h2>{html.escape(letter)}</h2>")
        terms = ", ".join(html.escape(term) for term in entry.terms)
        paragraphs = "".join(
            f'<p class="definition">{render_inline(p, doc_name=doc_name)}</p>' for p in entry.definition.split("\n\n")
        )
        body.append(f'<div class="entry"><p class="term">{terms}</p>{paragraphs}</div>')
    body.append("</div>")
    return _document(title, book_title, css, "\n".join(body))


# --------------------------------------------------------------------------- PDF


class _Collect(logging.Handler):
    """Keeps WeasyPrint's warnings (bad CSS, missing resources) so that the build can report them."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if "HarfBuzz-Subset" not in message:  # a note about the machine's libraries, not about the PDF
            self.messages.append(message)


def render_pdf(page: str, base: Path) -> tuple[bytes, int, list[str]]:
    """(PDF bytes, number of pages, WeasyPrint's warnings) of a standalone HTML page.

    The bytes are reproducible: no creation date, and the embedded font subsets carry the
    fixed timestamp ``SOURCE_DATE_EPOCH`` (0 unless the caller set one).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HarfBuzz-Subset", category=DeprecationWarning)
        import weasyprint  # imported here: a book without dlmi_pdfs never loads it

    collect = _Collect()
    weasy_logger = logging.getLogger("weasyprint")
    weasy_logger.addHandler(collect)
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = saved or "0"  # fontTools stamps subset fonts with it
    try:
        document = weasyprint.HTML(string=page, base_url=str(base)).render()
        data = document.write_pdf()
    finally:
        weasy_logger.removeHandler(collect)
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
    return data, len(document.pages), collect.messages


def _including_chapter(source: Path, root: Path) -> str | None:
    """``"Chapter 3: ..."`` for the page of ``_toc.yml`` that ``{include}``s ``source``, if there is one."""
    if not (root / "_toc.yml").is_file():
        return None
    source = source.resolve()
    for page in toc_pages(root):
        if source in includes_of(page, root):
            return doc_label(page)
    return None


def checklist_pdf(source: Path, output: Path, *, root: Path, book_title: str, title: str | None = None) -> tuple[int, list[str]]:
    """Typeset the checklist ``source`` into ``output``; returns (number of pages, WeasyPrint's warnings).

    The footer names the chapter that ``{include}``s the source (found through ``root/_toc.yml``).

    Raises:
        booksrc.SourceError: the source is missing, has no items or a line that is not an item.
    """
    sections = load_checklist(source)
    page = checklist_html(
        sections, title=title or DEFAULT_TITLES["checklist"], book_title=book_title, chapter=_including_chapter(source, root)
    )
    data, pages, problems = render_pdf(page, root)
    write_if_changed(output, data)
    return pages, problems


def glossary_pdf(source: Path, output: Path, *, root: Path, book_title: str, title: str | None = None) -> tuple[int, list[str]]:
    """Typeset the glossary ``source`` into ``output``; returns (number of pages, WeasyPrint's warnings).

    Raises:
        booksrc.SourceError: the source is missing, has no entries, or an entry has an
            empty definition.
    """
    entries = load_glossary(source)

    def doc_name(target: str) -> str:
        return doc_reference_label(target, source, root)

    page = glossary_html(entries, title=title or DEFAULT_TITLES["glossary"], book_title=book_title, doc_name=doc_name)
    data, pages, problems = render_pdf(page, root)
    write_if_changed(output, data)
    return pages, problems


def make_pdf(entry: dict, root: str | Path, book_title: str) -> tuple[PdfSpec, int, list[str]]:
    """Make the PDF described by one ``dlmi_pdfs`` entry.

    Returns:
        (its resolved spec, number of pages, WeasyPrint's warnings while rendering it).
    """
    root = Path(root)
    spec = PdfSpec.from_config(entry, root)
    make = checklist_pdf if spec.kind == "checklist" else glossary_pdf
    return (spec, *make(spec.source, spec.output, root=root, book_title=book_title, title=spec.title))


# --------------------------------------------------------------------------- Sphinx


def _book_title(app) -> str:
    return str(app.config.html_title or app.config.project or "")


def _specs(app) -> list[PdfSpec]:
    root = Path(app.srcdir)
    return [PdfSpec.from_config(entry, root) for entry in app.config.dlmi_pdfs or []]


def _build_pdfs(app) -> None:
    from sphinx.errors import ExtensionError
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger(__name__)
    root = Path(app.srcdir)
    for entry in app.config.dlmi_pdfs or []:
        try:
            spec, pages, problems = make_pdf(entry, root, _book_title(app))
        except SourceError as err:
            raise ExtensionError(f"dlmi_pdfs: {err}") from None
        shown = spec.output.relative_to(root) if spec.output.is_relative_to(root) else spec.output
        for problem in problems:
            logger.warning(f"dlmi_pdfs: WeasyPrint, while making {shown}: {problem}", type="dlmi_pdfs")
        logger.info(f"dlmi_pdfs: {shown} ({pages} pages)")


def _download_name(app, spec: PdfSpec) -> str:
    """Where the PDF lies under ``_downloads/``: Sphinx's own copy when a page links it, else ``dlmi/<name>``."""
    root = Path(app.srcdir)
    if spec.output.is_relative_to(root):
        found = app.env.dlfiles.get(spec.output.relative_to(root).as_posix())
        if found:
            return found[1]
    return f"dlmi/{spec.output.name}"


def _add_menu_entries(app, pagename, templatename, context, doctree) -> None:
    """Append the PDFs to sphinx-book-theme's download menu (the top bar's download button)."""
    group = next((b for b in context.get("header_buttons") or [] if b.get("label") == "download-buttons"), None)
    if group is None:
        return
    for spec in _specs(app):
        group["buttons"].append(
            {
                "type": "link",
                "url": context["pathto"](f"_downloads/{_download_name(app, spec)}", 1),
                "text": spec.menu,
                "tooltip": f"Download the printable {spec.kind} (PDF)",
                "icon": "fas fa-file-pdf",
                "label": f"download-dlmi-{spec.kind}-button",
            }
        )


def _copy_unlinked(app, exception) -> None:
    """Copy into ``_downloads/dlmi/`` the PDFs that no page links with ``{download}`` (the menu still offers them)."""
    if exception is not None or app.builder.format != "html":
        return
    for spec in _specs(app):
        name = _download_name(app, spec)
        if name.startswith("dlmi/") and spec.output.is_file():
            target = Path(app.outdir) / "_downloads" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec.output, target)


def setup(app):
    app.add_config_value("dlmi_pdfs", [], "html", types=[list])
    app.connect("builder-inited", _build_pdfs)
    app.connect("html-page-context", _add_menu_entries, priority=600)  # after the theme's buttons (501)
    app.connect("build-finished", _copy_unlinked)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
