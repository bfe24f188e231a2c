"""Launch links and generated notebooks (tools/dlmi_launch.py, tools/run_notebooks.py, binder/).

- Unit tests: a chapter becomes a notebook with the Colab setup cell first (which does nothing
  outside Colab), its own cells unchanged, deterministic ids; what Colab installs; settings
  errors; the Binder configuration agrees with the root pins.
- ``slow``: a throwaway book shows the Colab and Binder links and writes the notebook; the
  notebook runner reports a failing cell and stderr.
- ``built``: every notebook page of the built book links a notebook that exists, and Binder a
  source that exists; ``built`` + ``slow``: chapter 2's notebook runs top to bottom.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jupytext
import nbformat
import pytest
import yaml
from booksrc import toc_pages
from bs4 import BeautifulSoup
from conftest import MYST_NOTEBOOK_HEADER
from dlmi_launch import (
    SETUP_IDS,
    SETUP_TAG,
    LaunchConfig,
    LaunchError,
    Repository,
    assign_ids,
    book_settings,
    chapter_requirements,
    colab_requirements,
    imported_modules,
    is_notebook_source,
    launch_notebook,
    notebook_bytes,
    read_chapter,
    read_pins,
)
from packaging.utils import canonicalize_name
from run_notebooks import execute_notebook, notebook_pages

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
FAST_CHAPTER = "book/02_building_blocks"  # the chapter the slow built test runs

CHAPTER = MYST_NOTEBOOK_HEADER + """
# A chapter

Some text with a {term}`role`.

```{code-cell} ipython3
import numpy as np
import pydicom
x = np.arange(3)
```

More text.

```{code-cell} ipython3
:tags: [hide-input]

%matplotlib inline
print(x.sum())
```
"""


@pytest.fixture(scope="module")
def settings() -> tuple[LaunchConfig, Repository]:
    """The repository's own dlmi_launch and repository settings."""
    return book_settings(REPO)


def convert(path: Path, settings) -> nbformat.NotebookNode:
    config, repo = settings
    return launch_notebook(path, config=config, repo=repo, source_path=path.name)


def setup_code(nb: nbformat.NotebookNode) -> str:
    (cell,) = [c for c in nb.cells if c.get("id") == SETUP_IDS[1]]
    return cell.source


def run_setup(code: str, monkeypatch: pytest.MonkeyPatch, in_colab: bool) -> list[list[str]]:
    """Execute the setup cell with ``subprocess.run`` recorded; ``google.colab`` importable or not."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kwargs: calls.append((cmd, kwargs)))
    if in_colab:
        google = types.ModuleType("google")
        google.colab = types.ModuleType("google.colab")
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    else:
        monkeypatch.setitem(sys.modules, "google.colab", None)  # import raises ImportError
    exec(compile(code, "<setup cell>", "exec"), {"__name__": "__main__"})
    return calls


# --------------------------------------------------------------------------- conversion


def test_setup_cells_come_first_and_chapter_cells_are_preserved(tmp_path, settings):
    source = tmp_path / "chapter.md"
    source.write_text(CHAPTER)
    nb = convert(source, settings)
    note, setup, *rest = nb.cells
    assert (note.cell_type, setup.cell_type) == ("markdown", "code")
    assert note.metadata["tags"] == setup.metadata["tags"] == [SETUP_TAG]
    assert "Colab" in note.source and "does nothing" in note.source
    original = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in rest] == [(c.cell_type, c.source) for c in original.cells]
    assert rest[-1].metadata["tags"] == ["hide-input"]  # MyST cell options stay
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "jupytext" not in nb.metadata
    nbformat.validate(nb)


def test_setup_cell_does_nothing_outside_colab(tmp_path, settings, monkeypatch):
    source = tmp_path / "chapter.md"
    source.write_text(CHAPTER)
    code = setup_code(convert(source, settings))
    assert "google.colab" in code
    assert run_setup(code, monkeypatch, in_colab=False) == []


def test_setup_cell_installs_package_and_pins_in_colab(tmp_path, settings, monkeypatch):
    config, repo = settings
    source = tmp_path / "chapter.md"
    source.write_text(CHAPTER)
    code = setup_code(convert(source, settings))
    (cmd, kwargs), (cmd_in_place, kwargs_in_place) = run_setup(code, monkeypatch, in_colab=True)
    # pyradiomics (imported by dlmi.radiomics) is built from source in a second step, as the Makefile does
    assert cmd_in_place[:6] == [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation"]
    assert cmd_in_place[6:] == [read_pins(config.requirements)["pyradiomics"]] and kwargs_in_place == {"check": True}
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "--quiet"] and kwargs == {"check": True}
    packages = cmd[5:]
    assert packages[0] == f"dlmi @ git+{repo.url}@{repo.branch}"
    pins = read_pins(config.requirements)
    assert pins[canonicalize_name("pydicom")] in packages  # imported by the chapter, not in Colab
    for req in packages[1:]:
        name = canonicalize_name(req.split("==")[0])
        assert req == pins[name], "every package at the book's pinned version"
        assert name not in config.colab_preinstalled
    # Colab's torch/torchvision pair and scientific stack stay as Colab ships them
    assert not any(re.match(r"(torch|torchvision|numpy)==", req) for req in packages)


def test_ids_are_deterministic_and_follow_the_content(tmp_path, settings):
    source = tmp_path / "chapter.md"
    source.write_text(CHAPTER)
    first, second = notebook_bytes(convert(source, settings)), notebook_bytes(convert(source, settings))
    assert first == second
    ids = [c["id"] for c in json.loads(first)["cells"]]
    assert ids[:2] == list(SETUP_IDS)
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids)
    source.write_text(CHAPTER.replace("More text.", "Other text."))
    changed = [c["id"] for c in json.loads(notebook_bytes(convert(source, settings)))["cells"]]
    assert [a == b for a, b in zip(ids, changed)] == [True, True, True, True, False, True]


def test_repeated_cells_get_distinct_ids():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1") for _ in range(3)])
    assign_ids(nb)
    ids = [c["id"] for c in nb.cells]
    assert ids[1] == f"{ids[0]}-2" and ids[2] == f"{ids[0]}-3"


def test_ipynb_sources_lose_their_outputs(tmp_path, settings):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n")], execution_count=1)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    source = tmp_path / "page.ipynb"
    nbformat.write(nb, source)
    assert is_notebook_source(source)
    out = convert(source, settings)
    assert out.cells[-1].source == "print(1)" and out.cells[-1].outputs == []


def test_only_pages_with_a_kernelspec_are_notebooks(tmp_path):
    page = tmp_path / "plain.md"
    page.write_text("# Glossary\n\nNo code here.\n")
    assert not is_notebook_source(page)
    assert is_notebook_source(REPO / f"{FAST_CHAPTER}.md")
    assert not is_notebook_source(REPO / "book" / "glossary.md")


# --------------------------------------------------------------------------- what Colab installs


def test_imported_modules_reads_magics_and_nested_imports():
    code = "%matplotlib inline\n!ls\nimport os.path, numpy as np\nfrom PIL import Image\nfrom . import local\n\ndef f():\n    import monai\n"
    assert imported_modules(code) == {"os", "numpy", "PIL", "monai"}
    with pytest.raises(LaunchError, match=r"page\.md: cannot read the imports, line 1"):
        imported_modules("import (", "page.md")


def test_colab_requirements_pins_what_colab_lacks():
    pins = {"pydicom": "pydicom==3.0.2", "torch": "torch==2.13.0", "imagehash": "ImageHash==4.3.2"}
    assert colab_requirements({"torch", "pydicom", "ImageHash"}, pins, {"torch"}) == ["ImageHash==4.3.2", "pydicom==3.0.2"]
    with pytest.raises(LaunchError, match=r"imports monai .* pin it \(name==version\) in requirements\.txt"):
        colab_requirements({"monai"}, pins, set())


def test_read_pins_keeps_exact_pins_only(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n-r other.txt\nFoo_Bar==1.0  # why\nbaz>=2\nQux==3.1\n")
    assert read_pins([path]) == {"foo-bar": "Foo_Bar==1.0", "qux": "Qux==3.1"}


def test_every_chapter_converts_and_its_imports_are_pinned(settings):
    """Every notebook page of the book converts; everything it needs in Colab has a pin."""
    config, _ = settings
    pages = [p for p in toc_pages(REPO) if is_notebook_source(p)]
    assert len(pages) >= 4
    for page in pages:
        chapter = read_chapter(page)
        requirements = chapter_requirements(chapter, config, str(page))
        names = {canonicalize_name(req.split("==")[0]) for req in requirements}
        assert all("==" in req for req in requirements)
        assert names.isdisjoint(config.colab_preinstalled)
        if any("myst_nb" in c.source for c in chapter.cells if c.cell_type == "code"):
            assert "myst-nb" in names, f"{page} glues values: Colab needs myst-nb"


# --------------------------------------------------------------------------- settings


def test_repository_url_must_be_github():
    repo = Repository.from_url("https://github.com/someone/fork.git/", "dev")
    assert (repo.org, repo.name, repo.branch) == ("someone", "fork", "dev")
    assert repo.colab_url("notebooks", "book/a.ipynb") == (
        "https://colab.research.google.com/github/someone/fork/blob/notebooks/book/a.ipynb"
    )
    for url in ("https://gitlab.com/a/b", "git@github.com:a/b.git", "https://github.com/a", ""):
        with pytest.raises(LaunchError, match=r"not https://github.com/<org>/<repo>.*set repository:"):
            Repository.from_url(url, "main")
    with pytest.raises(LaunchError, match="branch is empty"):
        Repository.from_url("https://github.com/a/b", "")


def test_launch_config_errors_are_one_line(tmp_path):
    (tmp_path / "requirements.txt").write_text("")
    good = {"notebooks_branch": "nb", "package": "dlmi", "requirements": ["requirements.txt"]}
    assert LaunchConfig.from_config(good, tmp_path).package_source is None
    cases = [
        ([1], "not a mapping"),
        ({**good, "colab_url": "x"}, r"unknown keys \['colab_url'\]"),
        ({k: v for k, v in good.items() if k != "package"}, "needs package"),
        ({**good, "requirements": ["missing.txt"]}, r"missing\.txt does not exist"),
        ({**good, "colab_preinstalled": "torch"}, "must be a list"),
    ]
    for value, message in cases:
        with pytest.raises(LaunchError, match=message) as err:
            LaunchConfig.from_config(value, tmp_path)
        assert "\n" not in str(err.value)


def test_repository_is_named_once_and_binder_uses_the_theme():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert re.fullmatch(r"https://github\.com/[^/]+/[^/]+", config["repository"]["url"])
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["notebook_interface"] == "jupyterlab"
    # the theme's own Colab link would open the .md source, which Colab cannot read
    assert not config["launch_buttons"].get("colab_url")
    assert config["sphinx"]["local_extensions"]["dlmi_launch"] == "tools"
    owner = urlsplit(config["repository"]["url"]).path.strip("/")
    for path in [*(REPO / "tools").glob("*.py"), *(REPO / "binder").iterdir(), *(REPO / ".github" / "workflows").glob("*.yml")]:
        assert owner not in path.read_text(), f"{path} names the repository: read it from _config.yml"


# --------------------------------------------------------------------------- Binder


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_binder_installs_the_root_pins_and_opens_myst_as_notebooks():
    binder = REPO / "binder"
    assert requirement_lines(binder / "requirements.txt") == ["-r ../requirements.txt"]
    assert (binder / "requirements.txt").parent.joinpath("../requirements.txt").resolve() == REPO / "requirements.txt"
    python = (binder / "runtime.txt").read_text().strip()
    assert python == "python-3.11"
    assert "python3.11" in (REPO / "Makefile").read_text()
    root_pins = read_pins([REPO / "requirements.txt"])
    assert "jupytext" in root_pins  # opens the chapters' .md as notebooks
    post = binder / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    script = post.read_text()
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    # the rest of `make install`, in the Makefile's order and with its flags
    makefile = (REPO / "Makefile").read_text()
    assert "--no-build-isolation -r requirements-radiomics.txt" in makefile
    steps = ["--no-build-isolation -r requirements-radiomics.txt", "--no-deps -e .", "tools/check_env.py"]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions)
    assert re.search(r"jupytext-config set-default-viewer .*\bmarkdown\b.*\bmyst\b", script)
    # WeasyPrint (imported by tools/check_env.py) needs Pango from apt
    assert {"libpango-1.0-0", "libpangoft2-1.0-0"} <= set(requirement_lines(binder / "apt.txt"))


# --------------------------------------------------------------------------- notebook runner


@pytest.mark.slow
def test_runner_reports_a_failing_cell_and_stderr(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import sys\nprint('careful', file=sys.stderr)"),
            nbformat.v4.new_code_cell("raise ValueError('boom in the notebook')"),
            nbformat.v4.new_code_cell("print('never runs')"),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    executed, problems = execute_notebook(path, tmp_path, timeout=120)
    assert any("ValueError: boom in the notebook" in p for p in problems), problems
    assert any("wrote to stderr: careful" in p for p in problems), problems
    assert executed.cells[2].outputs == []


# --------------------------------------------------------------------------- a throwaway book


@pytest.mark.slow
def test_throwaway_book_links_colab_binder_and_the_notebook(tmp_path, settings):
    from test_build import build, cell, make_book

    _, repo = settings
    root = make_book(tmp_path / "book", cell("import pydicom\nprint('ready')"))
    stale = root / "_build" / "html" / "_notebooks" / "gone.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    result = build(root, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    html = root / "_build" / "html"
    notebook = html / "_notebooks" / "intro.ipynb"
    assert notebook.is_file() and not stale.exists()
    nb = nbformat.read(notebook, as_version=4)
    assert nb.cells[1].metadata["tags"] == [SETUP_TAG] and "pydicom==" in nb.cells[1].source
    links = page_links(html / "intro.html")
    assert links["colab"] == f"https://colab.research.google.com/github/{repo.org}/{repo.name}/blob/notebooks/intro.ipynb"
    assert links["binder"] == f"https://mybinder.org/v2/gh/{repo.org}/{repo.name}/{repo.branch}?urlpath=lab/tree/intro.md"
    assert links["download"] == "_notebooks/intro.ipynb"
    # a rebuild leaves the notebook's bytes (and file) alone
    before = (notebook.read_bytes(), notebook.stat().st_mtime_ns)
    again = build(root, tmp_path)
    assert again.returncode == 0, again.stdout[-4000:]
    assert (notebook.read_bytes(), notebook.stat().st_mtime_ns) == before


# --------------------------------------------------------------------------- the built book


def page_links(page: Path) -> dict[str, str | None]:
    """The Colab, Binder and runnable-notebook download links of a built page (None if absent)."""
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    launch = [a["href"] for a in soup.select(".dropdown-launch-buttons a[href]")]
    colab = [h for h in launch if urlsplit(h).netloc == "colab.research.google.com"]
    binder = [h for h in launch if urlsplit(h).netloc == "mybinder.org"]
    download = [a["href"] for a in soup.select("a.btn-download-runnable-notebook-button[href]")]
    for found in (colab, binder, download):
        assert len(found) <= 1, f"{page}: several links {found}"
    return {"colab": next(iter(colab), None), "binder": next(iter(binder), None), "download": next(iter(download), None)}


def built_pages() -> list[tuple[str, Path]]:
    if not (HTML / "index.html").is_file():
        pytest.skip(f"the book is not built ({HTML}): run tools/build_book.sh first")
    return [(p.relative_to(REPO).with_suffix("").as_posix(), p) for p in toc_pages(REPO)]


@pytest.mark.built
def test_every_chapter_links_colab_and_binder(settings):
    config, repo = settings
    pages = built_pages()
    notebooks = 0
    for docname, source in pages:
        page = HTML / f"{docname}.html"
        links = page_links(page)
        if not is_notebook_source(source):
            assert links["colab"] is None and links["download"] is None, f"{page}: launch links on a page without code"
            continue
        notebooks += 1
        # Colab: https://colab.research.google.com/github/<org>/<repo>/blob/<notebooks branch>/<docname>.ipynb
        colab = urlsplit(links["colab"] or "")
        assert colab.scheme == "https" and not colab.query and not colab.fragment, f"{page}: Colab link {links['colab']}"
        prefix = f"/github/{repo.org}/{repo.name}/blob/{config.notebooks_branch}/"
        assert colab.path.startswith(prefix), f"{page}: Colab link {links['colab']}"
        notebook = HTML / "_notebooks" / colab.path.removeprefix(prefix)
        assert notebook.suffix == ".ipynb" and notebook.is_file(), f"{page}: {notebook} was not generated"
        nb = nbformat.read(notebook, as_version=4)
        nbformat.validate(nb)
        assert nb.cells[1].metadata["tags"] == [SETUP_TAG]
        # ... and it is what the source gives today (not left over from an older build)
        fresh = launch_notebook(source, config=config, repo=repo, source_path=f"{docname}{source.suffix}")
        assert notebook.read_bytes() == notebook_bytes(fresh), f"{notebook} is out of date"
        # the download menu offers the same file
        assert (page.parent / (links["download"] or "missing")).resolve() == notebook.resolve()
        # Binder: https://mybinder.org/v2/gh/<org>/<repo>/<branch>?urlpath=lab/tree/<source path>
        binder = urlsplit(links["binder"] or "")
        assert binder.scheme == "https" and binder.path == f"/v2/gh/{repo.org}/{repo.name}/{repo.branch}", links["binder"]
        (urlpath,) = parse_qs(binder.query)["urlpath"]
        assert urlpath.startswith("lab/tree/"), urlpath
        assert (REPO / urlpath.removeprefix("lab/tree/")).resolve() == source.resolve()
    assert notebooks == len(notebook_pages(REPO)) >= 4


@pytest.mark.built
@pytest.mark.slow
def test_a_generated_notebook_runs_top_to_bottom(shared_data, monkeypatch):
    """Chapter 2's notebook, as a Colab reader gets it, runs here (quick profile, local data) without errors."""
    (page,) = [p for p in notebook_pages(REPO) if p.docname == FAST_CHAPTER]
    if not page.notebook.is_file():
        pytest.skip(f"{page.notebook} is not built: run tools/build_book.sh first")
    monkeypatch.setenv("DLMI_PROFILE", "quick")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    executed, problems = execute_notebook(page.notebook, page.source.parent, timeout=900)
    assert problems == []
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code[0].outputs == []  # the setup cell did nothing here
    assert all(c.execution_count for c in code)
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
