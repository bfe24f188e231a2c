"""Read the book's Markdown sources: the EDA checklist, the glossary, {term} references.

The one parser of these sources, used by the Sphinx extension ``tools/dlmi_pdfs.py`` (which
typesets the checklist and glossary as PDFs) and by the tests (``tests/test_pdfs.py``,
``tests/test_glossary.py``). Build tooling only: nothing here is part of the ``dlmi`` package.

- :func:`load_checklist` / :func:`parse_checklist`: ``book/_checklist.md``, sections
  ``### N. Title`` holding task items ``- [ ] text``, one per line.
- :func:`load_glossary` / :func:`parse_glossary`: the ``{glossary}`` directive of
  ``book/glossary.md``: a term line, then an indented definition.
- :func:`term_references`: every ``{term}`` role of a page (following ``{include}``),
  found with markdown-it the way MyST reads the page, so roles inside code are not counted.
- :func:`render_inline`: a line of MyST inline markup as HTML or plain text, with roles
  written out as words (``{doc}`05_training``` -> "Chapter 5: Training").

Errors in a source raise :class:`SourceError` (a ``ValueError``) whose one-line message says
where (``file:line``), what is wrong and how to fix it.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.colon_fence import colon_fence_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.front_matter import front_matter_plugin
from mdit_py_plugins.myst_blocks import myst_block_plugin
from mdit_py_plugins.myst_role import myst_role_plugin

__all__ = [
    "ChecklistSection",
    "GlossaryEntry",
    "SourceError",
    "TermRef",
    "checklist_problems",
    "doc_label",
    "doc_reference_label",
    "doc_title",
    "glossary_problems",
    "includes_of",
    "load_checklist",
    "load_glossary",
    "parse_checklist",
    "parse_glossary",
    "render_inline",
    "resolve_doc",
    "role_target",
    "term_references",
    "toc_pages",
    "write_if_changed",
]


class SourceError(ValueError):
    """A book source (checklist, glossary, chapter) that cannot be used as it is."""


# --------------------------------------------------------------------------- markdown-it


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    """A markdown-it parser configured like the book's MyST (roles, $math$, ::: fences, front matter)."""
    return (
        MarkdownIt("commonmark")
        .use(front_matter_plugin)
        .use(myst_block_plugin)
        .use(myst_role_plugin)
        .use(dollarmath_plugin)
        .use(colon_fence_plugin)
    )


_FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
_ROLE_TARGET = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


def role_target(content: str) -> tuple[str, str]:
    """Split a role's content into (shown text, target): ``"text <Target>"`` or ``"Target"``."""
    match = _ROLE_TARGET.match(content.strip())
    if match and match["text"]:
        return match["text"].strip(), match["target"].strip()
    content = content.strip()
    return content, content


# --------------------------------------------------------------------------- checklist


@dataclass(frozen=True)
class ChecklistSection:
    """One section of the checklist: its heading text (``"1. Record what you have"``) and items."""

    title: str
    items: tuple[str, ...]
    line: int  # 1-based line of the heading


_HEADING = re.compile(r"^(?P<level>#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_TASK = re.compile(r"^- \[ \] (?P<text>\S.*?)\s*$")


def _strip_html_comments(text: str) -> list[str]:
    """The source's lines, with ``<!-- ... -->`` comments blanked out (line numbers kept)."""
    blanked = re.sub(r"<!--.*?-->", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)
    return blanked.splitlines()


def parse_checklist(path: str | Path) -> list[ChecklistSection]:
    """Sections and task items of a checklist source (no check that any exist: see :func:`load_checklist`).

    Raises:
        SourceError: the file is missing, or a line is neither blank, a heading, nor a
            ``- [ ] text`` item under a heading.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"checklist source {path} does not exist: create it or fix 'source' in dlmi_pdfs (_config.yml)")
    sections: list[ChecklistSection] = []
    title, items, start = None, [], 0
    for number, line in enumerate(_strip_html_comments(path.read_text(encoding="utf-8")), start=1):
        if not line.strip():
            continue
        heading = _HEADING.match(line)
        if heading:
            if title is not None:
                sections.append(ChecklistSection(title, tuple(items), start))
            title, items, start = heading["text"], [], number
            continue
        task = _TASK.match(line)
        if task and title is not None:
            items.append(task["text"])
            continue
        where = f"{path}:{number}"
        if task:
            raise SourceError(f"{where}: checklist item before the first section heading: add a '### N. Title' line above it")
        raise SourceError(
            f"{where}: {line.strip()[:60]!r} is not a checklist item: "
            "write each item on one line as '- [ ] text' under a '### N. Title' heading"
        )
    if title is not None:
        sections.append(ChecklistSection(title, tuple(items), start))
    return sections


def checklist_problems(sections: list[ChecklistSection], path: str | Path) -> list[str]:
    """One-line messages for a checklist that parses but cannot be printed (no items, an empty section)."""
    if not any(section.items for section in sections):
        return [f"{path}: the checklist has no items: add lines '- [ ] text' under '### N. Title' headings"]
    return [
        f"{path}:{section.line}: section {section.title!r} has no items: add '- [ ] text' lines under it or remove it"
        for section in sections
        if not section.items
    ]


def load_checklist(path: str | Path) -> list[ChecklistSection]:
    """:func:`parse_checklist`, raising :class:`SourceError` for the first of :func:`checklist_problems`."""
    return _checked(parse_checklist(path), checklist_problems, path)


def _checked(parsed: list, problems_of, path: str | Path) -> list:
    """``parsed`` unchanged, or :class:`SourceError` for the first problem ``problems_of(parsed, path)`` finds."""
    problems = problems_of(parsed, path)
    if problems:
        raise SourceError(problems[0])
    return parsed


# --------------------------------------------------------------------------- glossary


@dataclass(frozen=True)
class GlossaryEntry:
    """One glossary entry: its term(s) (several term lines make synonyms) and definition (MyST markup)."""

    terms: tuple[str, ...]
    definition: str
    line: int  # 1-based line of the (first) term in the glossary file

    @property
    def name(self) -> str:
        return self.terms[0]

    @property
    def keys(self) -> set[str]:
        """The terms as a {term} reference matches them: case-insensitively."""
        return {term.casefold() for term in self.terms}


def _glossary_block(path: Path, lines: list[str]) -> tuple[int, list[str]]:
    """(index of the first content line, content lines) of the ``{glossary}`` directive."""
    for index, line in enumerate(lines):
        match = _FENCE_OPEN.match(line)
        if not match or not re.match(r"\{glossary\}(\s|$)", match["info"]):
            continue
        fence = match["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        for end in range(index + 1, len(lines)):
            if closing.match(lines[end]):
                return index + 1, lines[index + 1 : end]
        raise SourceError(f"{path}:{index + 1}: the {{glossary}} directive is never closed: end it with {fence}")
    raise SourceError(f"{path}: no {{glossary}} directive: put the entries inside ```{{glossary}} ... ```")


def parse_glossary(path: str | Path) -> list[GlossaryEntry]:
    """The entries of the ``{glossary}`` directive in ``path``, in source order, empty definitions included.

    The syntax is Sphinx's: an unindented term line (consecutive term lines are synonyms, a
    ``term : classifier`` suffix is dropped), then the indented definition, entries separated
    by blank lines. See :func:`load_glossary` for the checks.

    Raises:
        SourceError: the file is missing, has no (closed) glossary directive, or has
            definition text before the first term.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"glossary source {path} does not exist: create it or fix 'source' in dlmi_pdfs (_config.yml)")
    first, lines = _glossary_block(path, path.read_text(encoding="utf-8").splitlines())
    # directive options (":sorted:") or a YAML option block come first
    skip = 0
    if lines and lines[0].strip() == "---":
        skip = next((i + 1 for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
    while skip < len(lines) and re.match(r"^:[\w-]+:", lines[skip]):
        skip += 1
    entries: list[tuple[list[str], list[str], int]] = []
    in_definition = False
    for index in range(skip, len(lines)):
        line, number = lines[index], first + index + 1
        if not line.strip():
            if in_definition:
                entries[-1][1].append("")
            continue
        if line[0] not in " \t":  # a term line
            term = re.split(r"\s+:\s+", line.strip(), maxsplit=1)[0]
            previous_blank = index == skip or not lines[index - 1].strip()
            if entries and not in_definition and not previous_blank:
                entries[-1][0].append(term)  # synonym of the term just above
            else:
                entries.append(([term], [], number))
            in_definition = False
            continue
        if not entries:
            raise SourceError(
                f"{path}:{number}: indented text before the first glossary term: start each entry with an unindented term line"
            )
        entries[-1][1].append(line.strip())
        in_definition = True
    result = []
    for terms, definition, number in entries:
        paragraphs = "\n".join(definition).strip().split("\n\n")
        text = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
        result.append(GlossaryEntry(tuple(terms), text, number))
    return result


def glossary_problems(entries: list[GlossaryEntry], path: str | Path) -> list[str]:
    """One-line messages for a glossary that parses but is unusable: no entries, empty definitions."""
    if not entries:
        return [f"{path}: the glossary has no entries: add 'Term' lines each followed by an indented definition"]
    return [
        f"{path}:{entry.line}: glossary entry {entry.name!r} has an empty definition: add an indented definition under it"
        for entry in entries
        if not entry.definition.strip()
    ]


def load_glossary(path: str | Path) -> list[GlossaryEntry]:
    """:func:`parse_glossary`, raising :class:`SourceError` for the first of :func:`glossary_problems`."""
    return _checked(parse_glossary(path), glossary_problems, path)


# --------------------------------------------------------------------------- pages and references


def toc_pages(root: str | Path, toc: str | Path | None = None) -> list[Path]:
    """The source files of the pages listed in ``_toc.yml`` (root, chapters, sections), in order.

    Each entry resolves to ``<file>.md``, ``<file>.ipynb`` or the file as written; an entry with
    no such file is left out (Sphinx reports it).
    """
    root = Path(root)
    toc = Path(toc) if toc else root / "_toc.yml"
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    names.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    pages = []
    for name in dict.fromkeys(names):
        for candidate in (root / f"{name}.md", root / f"{name}.ipynb", root / name):
            if candidate.is_file():
                pages.append(candidate)
                break
    return pages


@dataclass(frozen=True)
class TermRef:
    """A ``{term}`` role: the entry it points to (as written), the file and line it is written on."""

    target: str
    path: Path
    line: int


# directives whose body is not MyST Markdown (code, math, raw markup, lists of files)
_NOT_MARKDOWN = {
    "code-cell", "code", "code-block", "sourcecode", "literalinclude", "math", "raw", "eval-rst",
    "toctree", "tableofcontents", "bibliography", "mermaid", "graphviz", "glue:math", "prf:algorithm",
}  # fmt: skip


def _page_markdown(path: Path) -> str:
    """The Markdown of a page: the file itself, or the Markdown cells of a notebook."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text).get("cells", [])
        sources = [c["source"] for c in cells if c.get("cell_type") == "markdown"]
        return "\n\n".join("".join(src) if isinstance(src, list) else src for src in sources)
    return text


def _directive_body(content: str) -> str:
    """A directive's content without its leading ``:option:`` lines or YAML option block."""
    lines = content.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":
        start = next((i + 1 for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
    while start < len(lines) and re.match(r"^\s*:[\w-]+:", lines[start]):
        start += 1
    return "\n" * start + "\n".join(lines[start:])


def _walk(text: str, path: Path, root: Path, offset: int, seen: frozenset[Path]) -> Iterator[tuple]:
    """Events of MyST ``text``, recursing into directive bodies and ``{include}``d files.

    Yields ``("role", name, content, file, line)`` for every role and ``("include", file)``
    for every included file that exists.
    """
    for token in _markdown().parse(text):
        line = offset + (token.map[0] + 1 if token.map else 1)
        if token.type == "inline":
            for child in token.children or []:
                if child.type in ("softbreak", "hardbreak"):
                    line += 1
                elif child.type == "myst_role":
                    yield "role", child.meta["name"], child.content, path, line
        elif token.type in ("fence", "colon_fence"):
            match = re.match(r"^\{(?P<name>[^}\s]+)\}\s*(?P<argument>.*)$", token.info.strip())
            if not match or match["name"] in _NOT_MARKDOWN:
                continue
            if match["name"] != "include":
                yield from _walk(_directive_body(token.content), path, root, line, seen)
                continue
            target = match["argument"].strip()
            included = ((root / target.lstrip("/")) if target.startswith("/") else (path.parent / target)).resolve()
            if included.is_file() and included not in seen:
                yield "include", included
                yield from _walk(_page_markdown(included), included, root, 0, seen | {included})


def term_references(path: str | Path, root: str | Path | None = None) -> list[TermRef]:
    """Every ``{term}`` reference on a page (``.md`` or ``.ipynb``), including files it ``{include}``s.

    Roles in code cells, code blocks and math are not references (MyST does not read them).

    Args:
        path: The page's source file.
        root: The book root, for ``{include}`` paths that start with ``/`` (default: the page's folder).
    """
    path = Path(path).resolve()
    root = Path(root).resolve() if root else path.parent
    return [
        TermRef(role_target(event[2])[1], event[3], event[4])
        for event in _walk(_page_markdown(path), path, root, 0, frozenset({path}))
        if event[0] == "role" and event[1] == "term"
    ]


def includes_of(page: str | Path, root: str | Path | None = None) -> set[Path]:
    """The files (resolved) that a page pulls in with ``{include}``, directly or through other includes."""
    page = Path(page).resolve()
    root = Path(root).resolve() if root else page.parent
    return {event[1] for event in _walk(_page_markdown(page), page, root, 0, frozenset({page})) if event[0] == "include"}


# --------------------------------------------------------------------------- document titles


def doc_title(path: str | Path) -> str:
    """The text of a page's first ``# `` heading (inline markup as plain text)."""
    path = Path(path)
    for token_index, token in enumerate(tokens := _markdown().parse(_page_markdown(path))):
        if token.type == "heading_open" and token.tag == "h1":
            return render_inline(tokens[token_index + 1].content, html_output=False)
    raise SourceError(f"{path}: no '# Title' heading: give the page a level-1 heading")


def doc_label(path: str | Path) -> str:
    """How the PDFs name a page: ``"Chapter 5: Training"`` for ``05_training.md``, else its title."""
    path = Path(path)
    number = re.match(r"^(\d+)[_-]", path.name)
    title = doc_title(path)
    return f"Chapter {int(number[1])}: {title}" if number else title


def resolve_doc(target: str, page: Path, root: Path) -> Path:
    """The source file a ``{doc}`` target names (relative to ``page``, or to ``root`` with a leading ``/``)."""
    base = root / target.lstrip("/") if target.startswith("/") else page.parent / target
    for candidate in (base.with_name(base.name + ".md"), base.with_name(base.name + ".ipynb"), base):
        if candidate.is_file():
            return candidate
    raise SourceError(f"{page}: {{doc}}`{target}` names no page ({base}.md does not exist): fix the reference")


def doc_reference_label(target: str, page: Path, root: Path) -> str:
    """The words the PDFs print for ``{doc}`target``` written in ``page``: :func:`doc_label` of that page.

    A page that does not exist (yet) gives ``"Chapter N"`` from the target's numeric prefix,
    else the target as written: the strict book build reports the broken reference itself.
    """
    try:
        return doc_label(resolve_doc(target, page, root))
    except SourceError:
        number = re.match(r"^(\d+)[_-]", Path(target).name)
        return f"Chapter {int(number[1])}" if number else target


# --------------------------------------------------------------------------- inline rendering

_GREEK = {
    name: chr(code)
    for name, code in zip(
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi "
        "omega".split(),
        [*range(0x3B1, 0x3C2), *range(0x3C3, 0x3CA)],
    )
}
_GREEK.update({name.capitalize(): chr(ord(ch) - 32) for name, ch in _GREEK.items()})
_GREEK.update(varepsilon="ε", varphi="φ", vartheta="ϑ")
_SYMBOLS = {
    "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "infty": "∞", "sum": "∑", "prod": "∏", "in": "∈",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "mid": "∣", "partial": "∂", "nabla": "∇",
    "ldots": "…", "dots": "…", "cdots": "⋯", "lvert": "|", "rvert": "|", "vert": "|", "|": "‖",
    "{": "{", "}": "}", ",": "\u2009", ";": " ", "quad": "\u2003", " ": " ", "%": "%",
}  # fmt: skip
_FUNCTIONS = {"max", "min", "log", "exp", "sin", "cos", "tan", "arg", "argmax", "argmin", "det", "lim", "sup", "inf"}


def _math_to_html(latex: str) -> str | None:
    """Simple inline LaTeX as HTML with Unicode symbols, or None when it uses anything else."""
    out: list[str] = []
    i = 0

    def group(start: int) -> tuple[str, int] | None:
        """A ``{...}`` group or a single character starting at ``start``: (its LaTeX, next index)."""
        if start >= len(latex):
            return None
        if latex[start] != "{":
            if latex[start] == "\\":
                match = re.match(r"\\([A-Za-z]+|.)", latex[start:])
                return match[0], start + len(match[0])
            return latex[start], start + 1
        depth = 0
        for j in range(start, len(latex)):
            depth += {"{": 1, "}": -1}.get(latex[j], 0)
            if depth == 0:
                return latex[start + 1 : j], j + 1
        return None

    while i < len(latex):
        ch = latex[i]
        if ch == "\\":
            match = re.match(r"\\([A-Za-z]+|.)", latex[i:])
            name = match[1]
            i += len(match[0])
            if name in ("text", "mathrm", "operatorname", "textrm", "mathbf", "textbf", "mathit"):
                body = group(i)
                if body is None:
                    return None
                inner = html.escape(body[0]) if name.startswith("text") else _math_to_html(body[0])
                if inner is None:
                    return None
                tag = {"mathbf": "b", "textbf": "b", "mathit": "i"}.get(name, "span")
                out.append(f'<{tag} class="upright">{inner}</{tag}>')
                i = body[1]
            elif name == "frac":
                num, den = group(i), None
                if num:
                    den = group(num[1])
                if not num or not den:
                    return None
                a, b = _math_to_html(num[0]), _math_to_html(den[0])
                if a is None or b is None:
                    return None
                wrap = lambda s, raw: s if re.fullmatch(r"[\w.]+", raw) else f"({s})"  # noqa: E731
                out.append(f"{wrap(a, num[0])}/{wrap(b, den[0])}")
                i = den[1]
            elif name == "sqrt":
                body = group(i)
                inner = _math_to_html(body[0]) if body else None
                if inner is None:
                    return None
                out.append(f"√{inner}" if re.fullmatch(r"[\w.]+", body[0]) else f"√({inner})")
                i = body[1]
            elif name in ("left", "right", "big", "Big", "bigl", "bigr"):
                continue
            elif name in _FUNCTIONS:
                out.append(f'<span class="upright">{name}</span>')
            elif name in _GREEK:
                out.append(_GREEK[name])
            elif name in _SYMBOLS:
                out.append(html.escape(_SYMBOLS[name]))
            else:
                return None
        elif ch in "^_":
            body = group(i + 1)
            if body is None:
                return None
            inner = _math_to_html(body[0])
            if inner is None:
                return None
            tag = "sup" if ch == "^" else "sub"
            out.append(f"<{tag}>{inner}</{tag}>")
            i = body[1]
        elif ch in "{}":
            i += 1
        elif ch.isalpha():  # a run of letters: italic, as TeX sets variables
            run = re.match(r"[^\W\d_]+", latex[i:])[0]
            out.append(f"<i>{html.escape(run)}</i>")
            i += len(run)
        else:
            out.append(html.escape({"-": "−", "*": "∗", "'": "′"}.get(ch, ch)))
            i += 1
    return "".join(out)


def render_inline(
    markup: str,
    *,
    html_output: bool = True,
    doc_name: Callable[[str], str] | None = None,
) -> str:
    """One paragraph of MyST inline markup as HTML (``html_output``) or as plain text.

    Roles become words: ``{term}`text <X>``` -> text, ``{doc}`05_training``` -> ``doc_name("05_training")``
    (default: the target as written), any other role -> its shown text. ``$math$`` becomes HTML
    with Unicode symbols when simple, else its LaTeX source in a monospace span; emphasis, bold
    and code are kept (as tags in HTML). Links show their text.
    """
    esc = html.escape if html_output else (lambda s, quote=True: s)
    out: list[str] = []
    tags = {"em_open": "<em>", "em_close": "</em>", "strong_open": "<strong>", "strong_close": "</strong>"}
    tokens = _markdown().parseInline(markup)
    children = (tokens[0].children or []) if tokens else []
    for token in children:
        kind = token.type
        if kind == "text":
            out.append(esc(token.content))
        elif kind in ("softbreak", "hardbreak"):
            out.append(" ")
        elif kind in tags:
            out.append(tags[kind] if html_output else "")
        elif kind == "code_inline":
            out.append(f"<code>{esc(token.content)}</code>" if html_output else token.content)
        elif kind in ("math_inline", "math_inline_double"):
            pretty = _math_to_html(token.content) if html_output else None
            if pretty is not None:
                out.append(f'<span class="math">{pretty}</span>')
            else:
                out.append(f'<code class="math">{esc(token.content)}</code>' if html_output else token.content)
        elif kind == "myst_role":
            text, target = role_target(token.content)
            name = token.meta.get("name", "")
            if name == "doc" and text == target and doc_name is not None:
                text = doc_name(target)
            elif name == "math":
                pretty = _math_to_html(token.content) if html_output else None
                out.append(f'<span class="math">{pretty}</span>' if pretty is not None else esc(token.content))
                continue
            out.append(f'<span class="role role-{esc(name)}">{esc(text)}</span>' if html_output else text)
        elif kind in ("html_inline", "image"):
            out.append(esc(token.content))
        # link_open/link_close: the link's text children are rendered, the address dropped
    return "".join(out)


def write_if_changed(path: str | Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (creating folders) unless the file already holds exactly these bytes.

    Keeps modification times of unchanged outputs, so Sphinx does not re-read pages that link them.

    Returns:
        Whether the file was written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True
