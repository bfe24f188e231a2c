"""The glossary is complete and used: every {term} has an entry, every entry is used somewhere.

Reads ``book/glossary.md`` and every page listed in ``_toc.yml`` (with the files they
``{include}``) through ``tools/booksrc.py``, the parser that also typesets the glossary PDF.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import booksrc

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "book" / "glossary.md"
MIN_ENTRIES = 80


@pytest.fixture(scope="module")
def entries() -> list[booksrc.GlossaryEntry]:
    return booksrc.parse_glossary(GLOSSARY)


@pytest.fixture(scope="module")
def references() -> list[booksrc.TermRef]:
    """Every {term} reference of the book's pages, the glossary's own included."""
    pages = booksrc.toc_pages(REPO)
    assert GLOSSARY in pages, "book/glossary.md is not listed in _toc.yml"
    return [ref for page in pages for ref in booksrc.term_references(page, REPO)]


def where(ref: booksrc.TermRef) -> str:
    return f"{ref.path.relative_to(REPO)}:{ref.line}"


def test_every_reference_has_an_entry(entries, references):
    """A {term} (matched case-insensitively, `text <Target>` by its target) must name a glossary entry."""
    known = set().union(*(entry.keys for entry in entries))
    missing = [f"{where(ref)} {{term}}`{ref.target}`" for ref in references if ref.target.casefold() not in known]
    assert not missing, "{term} references with no glossary entry: " + "; ".join(missing)


def test_no_empty_definitions(entries):
    empty = [entry.name for entry in entries if not entry.definition.strip()]
    assert not empty, f"glossary entries with an empty definition: {empty}"


def test_enough_entries(entries):
    assert len(entries) >= MIN_ENTRIES, f"the glossary has {len(entries)} entries, expected at least {MIN_ENTRIES}"


def test_no_duplicate_terms(entries):
    counts = Counter(term.casefold() for entry in entries for term in entry.terms)
    duplicates = sorted(term for term, n in counts.items() if n > 1)
    assert not duplicates, f"terms defined more than once in the glossary: {duplicates}"


def test_every_entry_is_used_outside_the_glossary(entries, references):
    """Each entry is linked from at least one chapter (links between glossary entries do not count)."""
    used = {ref.target.casefold() for ref in references if ref.path != GLOSSARY}
    unused = sorted(entry.name for entry in entries if not entry.keys & used)
    assert not unused, f"{len(unused)} glossary entries no chapter links with {{term}}: {', '.join(unused)}"


# --------------------------------------------------------------------------- the reference parser


def test_term_references_follow_myst(tmp_path):
    """Roles in prose, admonitions and included files count; roles in code, math and comments do not."""
    (tmp_path / "part.md").write_text("- [ ] uses {term}`Included term`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "---\ntitle: {term}`not in front matter`\n---\n"
        "# Page\n\n"
        "Prose with {term}`alpha` and {term}`Several words <Beta>`,\n"
        "a second line with {term}`gamma`.\n\n"
        "```{note}\n:class: tip\nInside a note: {term}`delta`.\n```\n\n"
        ":::{dropdown} Title\nColon fence: {term}`epsilon`\n:::\n\n"
        "```{code-cell} ipython3\nprint('{term}`not code`')\n```\n\n"
        "Inline `{term}`not inline code`` and $x + {term}`not math`$.\n\n"
        "% {term}`not a comment`\n\n"
        "```{include} part.md\n```\n",
        encoding="utf-8",
    )
    refs = booksrc.term_references(page)
    assert [ref.target for ref in refs] == ["alpha", "Beta", "gamma", "delta", "epsilon", "Included term"]
    assert [ref.line for ref in refs[:5]] == [6, 6, 7, 11, 15]
    assert refs[-1].path == (tmp_path / "part.md").resolve()
    assert booksrc.includes_of(page) == {(tmp_path / "part.md").resolve()}
