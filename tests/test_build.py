"""The book build script must fail on a cell error or a Sphinx warning, and pass on a clean book.

Each test builds a throwaway one-page book in ``tmp_path`` with the repository's own
``_config.yml`` (same execution settings) through ``tools/build_book.sh``, the script
that ``make book`` uses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MYST_NOTEBOOK_HEADER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "build_book.sh"
BIN = Path(sys.executable).parent  # the virtual environment's bin/, with jupyter-book

pytestmark = pytest.mark.slow

HEADER = MYST_NOTEBOOK_HEADER + """
# A tiny book

Some text.
"""


def cell(source: str) -> str:
    """A MyST-NB code cell."""
    return f"\n```{{code-cell}} ipython3\n{source}\n```\n"


def make_book(root: Path, body: str) -> Path:
    """Write a one-page book: the repository's _config.yml (empty bibliography, no PDFs), a _toc.yml, intro.md."""
    root.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["bibtex_bibfiles"] = ["references.bib"]
    # local Sphinx extensions (tools/) load from the repository; the book's PDFs are not made here
    sphinx = config.get("sphinx", {})
    for name, path in (sphinx.get("local_extensions") or {}).items():
        sphinx["local_extensions"][name] = str((REPO / path).resolve())
    sphinx.get("config", {}).pop("dlmi_pdfs", None)
    launch = sphinx.get("config", {}).get("dlmi_launch")
    if launch:  # the Colab notebooks' pins and the package's imports are the repository's
        launch["requirements"] = [str(REPO / path) for path in launch["requirements"]]
        launch["package_source"] = str(REPO / launch["package_source"])
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "references.bib").write_text("")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (root / "intro.md").write_text(HEADER + body)
    return root


def build(root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run tools/build_book.sh on ``root``; stdout and stderr together in ``.stdout``."""
    env = dict(os.environ)
    env.update(
        DLMI_BIN=str(BIN),
        DLMI_CACHE_DIR=str(tmp_path / "cache"),
        MPLBACKEND="Agg",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return subprocess.run(
        ["bash", str(SCRIPT), str(root)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


@pytest.fixture(autouse=True)
def needs_jupyter_book():
    if not (BIN / "jupyter-book").exists():
        pytest.skip(f"jupyter-book is not installed in {BIN}")


def test_config_is_strict():
    """The repository's config refuses cell errors (the script adds -W -n for warnings)."""
    config = (REPO / "_config.yml").read_text()
    assert re.search(r"allow_errors:\s*false", config)
    assert re.search(r"nb_output_stderr:\s*warn", config)
    script = SCRIPT.read_text()
    assert " -W " in script and " -n " in script


def test_clean_book_builds(tmp_path):
    """A book whose cells run cleanly builds, and the page shows the executed output."""
    root = make_book(tmp_path / "book", cell("import dlmi\nprint(f'answer={6 * 7}', dlmi.__version__)"))
    result = build(root, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    page = root / "_build" / "html" / "intro.html"
    assert page.is_file()
    html = page.read_text()
    assert "cell_output" in html
    assert "answer=42 0.1.0" in html


def test_cell_error_fails_the_build(tmp_path):
    """A cell that raises makes the build fail, and the error can be found from the log."""
    body = cell("x = 1") + cell("raise ValueError('boom from the test book')")
    root = make_book(tmp_path / "book", body)
    result = build(root, tmp_path)
    out = result.stdout
    assert result.returncode != 0, out[-4000:]
    assert "CellExecutionError" in out or "ValueError" in out
    # the traceback is either in the log, or in the report file that the log names
    reports = sorted((root / "_build" / "html" / "reports").glob("*.log"))
    shown = out + "".join(r.read_text() for r in reports if str(r) in out)
    assert "ValueError" in shown and "boom from the test book" in shown, out[-4000:]


def test_broken_reference_fails_the_build(tmp_path):
    """A reference to a label that does not exist is a Sphinx warning, hence a failed build."""
    root = make_book(tmp_path / "book", cell("print('fine')") + "\nSee {ref}`no-such-label` for more.\n")
    result = build(root, tmp_path)
    assert result.returncode != 0, result.stdout[-4000:]
    assert "no-such-label" in result.stdout
    assert "WARNING" in result.stdout


def test_broken_doc_and_term_references_fail_the_build(tmp_path):
    """{doc} to a missing page and {term} to a missing glossary entry fail the build too (-n -W)."""
    body = cell("print('fine')") + "\nRead {doc}`no_such_chapter` and the {term}`no such term`.\n"
    result = build(make_book(tmp_path / "book", body), tmp_path)
    assert result.returncode != 0, result.stdout[-4000:]
    assert "no_such_chapter" in result.stdout and "no such term" in result.stdout, result.stdout[-4000:]


def test_mathjax_from_a_cdn_fails_the_build(tmp_path):
    """The pages load MathJax from _static (tools/dlmi_html.py): a CDN mathjax_path stops the build, saying why."""
    root = make_book(tmp_path / "book", cell("print('fine')") + "\nInline $a^2 + b^2 = c^2$.\n")
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["sphinx"]["config"]["mathjax_path"] = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = build(root, tmp_path)
    assert result.returncode != 0, result.stdout[-4000:]
    assert "dlmi_html: mathjax_path 'https://cdn.jsdelivr.net" in result.stdout, result.stdout[-4000:]
