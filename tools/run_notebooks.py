"""Execute the chapter notebooks that the build generated, top to bottom, as a reader would.

The book build executes the MyST sources; this runs the generated ``.ipynb`` files that the
Colab links open (``tools/dlmi_launch.py`` writes them to ``<html>/_notebooks``) with nbclient,
in each chapter's folder and with the caller's environment (``DLMI_*`` settings), so that a
chapter that works in the book also works as a notebook. The setup cell does nothing here
(it installs only in Colab). The book workflow runs it after ``make book``::

    .venv/bin/python tools/run_notebooks.py            # every notebook page of _toc.yml
    .venv/bin/python tools/run_notebooks.py book/02_building_blocks

A notebook fails on a cell error or on anything a cell writes to stderr (as the book build
does). Exit status 1 if any fails, with one line per failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbclient
import nbformat
from booksrc import toc_pages
from dlmi_launch import NOTEBOOKS_DIR, is_notebook_source

__all__ = ["NotebookPage", "execute_notebook", "main", "notebook_pages"]


@dataclass(frozen=True)
class NotebookPage:
    """A page of the book that is a notebook: its source and the notebook generated from it."""

    docname: str  # "book/02_building_blocks"
    source: Path
    notebook: Path


def notebook_pages(root: str | Path, html: str | Path | None = None) -> list[NotebookPage]:
    """The pages of ``root/_toc.yml`` that are notebooks, in book order, with their generated notebook's path."""
    root = Path(root).resolve()
    outdir = Path(html).resolve() if html else root / "_build" / "html"
    pages = []
    for source in toc_pages(root):
        if is_notebook_source(source):
            docname = source.relative_to(root).with_suffix("").as_posix()
            pages.append(NotebookPage(docname, source, outdir / NOTEBOOKS_DIR / f"{docname}.ipynb"))
    return pages


def execute_notebook(path: Path, cwd: Path, timeout: int = 1800) -> tuple[nbformat.NotebookNode, list[str]]:
    """Run the notebook ``path`` in the folder ``cwd``; returns (executed notebook, one-line problems).

    A problem is a cell that raised (execution stops there) or a stream written to stderr.
    """
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    problems = []
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        problems.append(f"{path.name}: a cell raised {err.ename}: {err.evalue}")
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and not problems:
                problems.append(f"{path.name}: cell {index} raised {output.get('ename')}: {output.get('evalue')}")
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                first = output.get("text", "").strip().splitlines()[:1]
                problems.append(f"{path.name}: cell {index} wrote to stderr: {first[0] if first else ''}")
    return nb, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docnames", nargs="*", help="pages to run, e.g. book/02_building_blocks (default: all)")
    parser.add_argument("--root", default=".", help="the book's root folder (with _toc.yml)")
    parser.add_argument("--html", default=None, help="the HTML output folder (default: <root>/_build/html)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    pages = notebook_pages(args.root, args.html)
    known = {page.docname for page in pages}
    unknown = [name for name in args.docnames if name.removesuffix(".md") not in known]
    if unknown:
        print(f"not a notebook page of _toc.yml: {', '.join(unknown)} (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    wanted = {name.removesuffix(".md") for name in args.docnames}
    failed = []
    for page in pages:
        if wanted and page.docname not in wanted:
            continue
        if not page.notebook.is_file():
            failed.append(f"{page.notebook} does not exist: build the book first (make book)")
            continue
        start = time.perf_counter()
        _, problems = execute_notebook(page.notebook, page.source.parent, args.timeout)
        print(f"{'FAILED' if problems else 'ok':6} {page.docname}.ipynb ({time.perf_counter() - start:.0f} s)", flush=True)
        failed.extend(problems)
    for problem in failed:
        print(problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
