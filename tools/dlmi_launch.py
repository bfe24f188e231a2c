"""Sphinx extension: every chapter as a notebook that opens in Google Colab, and launch links.

Registered in ``_config.yml`` (``sphinx: local_extensions: {dlmi_launch: tools}``) and driven
by the ``dlmi_launch`` setting there::

    dlmi_launch:
      notebooks_branch: notebooks      # the branch the book workflow publishes _build/html/_notebooks to
      package: dlmi                    # installed in Colab from the repository (``repository:`` in _config.yml)
      package_source: src/dlmi         # its imports count, with the chapter's, as what the chapter needs
      requirements: [requirements.txt] # the versions Colab installs (exact ``==`` pins)
      colab_preinstalled: [torch, ...] # distributions Colab ships and that must stay as they are

The repository is read from ``repository: {url, branch}`` of ``_config.yml`` (jupyter-book
passes it to the theme as ``repository_url`` / ``repository_branch``): nothing else names it.

What it does in an HTML build:

- ``build-finished``: writes ``<outdir>/_notebooks/<docname>.ipynb`` for every page that is a
  notebook (a MyST page with a ``kernelspec`` front matter, or an ``.ipynb``), converted with
  jupytext, *without outputs*: the bytes depend on the source and the configuration only, so a
  rebuild rewrites nothing and the published ``notebooks`` branch changes only when a chapter
  does. (The theme already offers the executed notebook, outputs included, as ``.ipynb`` in
  the download menu.) The first two cells, tagged ``colab-setup``, are a note and a code cell
  that - only where ``google.colab`` imports - pip-installs the package from the repository
  and, at the book's pinned versions, every distribution the chapter and the package import
  that is not in ``colab_preinstalled`` (Colab's own torch/torchvision pair is kept). Cell ids
  are derived from the cells' contents. Notebooks of pages that no longer exist are removed.
- ``html-page-context`` (after the theme's buttons): adds a *Colab* entry to the theme's launch
  menu (whose *Binder* entry comes from ``launch_buttons`` in ``_config.yml``), pointing at
  ``https://colab.research.google.com/github/<org>/<repo>/blob/<notebooks_branch>/<docname>.ipynb``,
  and the generated notebook to the page's download menu.

Usable without Sphinx (``tools/run_notebooks.py``, the tests): :func:`book_settings` reads the
settings from ``_config.yml``, :func:`launch_notebook` converts one chapter (its parts:
:func:`chapter_requirements`, :func:`setup_cells`, :func:`chapter_notebook`), and
:func:`is_notebook_source` tells which pages are notebooks.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.metadata
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit

import jupytext
import nbformat
from booksrc import write_if_changed
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "LaunchConfig",
    "LaunchError",
    "Repository",
    "assign_ids",
    "book_settings",
    "chapter_notebook",
    "chapter_requirements",
    "colab_requirements",
    "distributions_of",
    "imported_modules",
    "is_notebook_source",
    "launch_notebook",
    "notebook_bytes",
    "package_modules",
    "read_chapter",
    "read_pins",
    "setup",
    "setup_cells",
]

NOTEBOOKS_DIR = "_notebooks"  # under the HTML output folder
SETUP_TAG = "colab-setup"
COLAB_URL = "https://colab.research.google.com"
SETUP_IDS = ("dlmi-colab-note", "dlmi-colab-setup")


class LaunchError(ValueError):
    """A ``dlmi_launch`` or ``repository`` setting, or a chapter, that the launch links cannot use."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Repository:
    """The book's GitHub repository and the branch it is built from."""

    org: str
    name: str
    branch: str

    @classmethod
    def from_url(cls, url: str, branch: str) -> Repository:
        """Parse ``https://github.com/<org>/<repo>``.

        Raises:
            LaunchError: not a GitHub repository URL (Colab opens notebooks from GitHub only),
                or no branch.
        """
        fix = "set repository: {url: https://github.com/<org>/<repo>, branch: <branch>} in _config.yml"
        parts = urlsplit(str(url or "").strip())
        path = [p for p in parts.path.split("/") if p]
        if parts.scheme != "https" or parts.netloc.lower() != "github.com" or len(path) != 2:
            raise LaunchError(f"repository url {url!r} is not https://github.com/<org>/<repo> (Colab opens GitHub only): {fix}")
        if not str(branch or "").strip():
            raise LaunchError(f"repository branch is empty: {fix}")
        org, name = path[0], path[1].removesuffix(".git")
        return cls(org, name, str(branch).strip())

    @property
    def url(self) -> str:
        """``https://github.com/<org>/<repo>``."""
        return f"https://github.com/{self.org}/{self.name}"

    def pip_requirement(self, package: str) -> str:
        """``"<package> @ git+https://github.com/<org>/<repo>@<branch>"``: the package as pip installs it from here."""
        return f"{package} @ git+{self.url}@{self.branch}"

    def colab_url(self, branch: str, path: str) -> str:
        """Colab's address of the notebook ``path`` on ``branch`` of this repository."""
        return f"{COLAB_URL}/github/{self.org}/{self.name}/blob/{quote(branch)}/{quote(path)}"

    def blob_url(self, path: str) -> str:
        """GitHub's page of the file ``path`` on the book's branch."""
        return f"{self.url}/blob/{quote(self.branch)}/{quote(path)}"


@dataclass(frozen=True)
class LaunchConfig:
    """The ``dlmi_launch`` setting, checked, with its paths resolved against the book root."""

    notebooks_branch: str
    package: str
    package_source: Path | None
    requirements: tuple[Path, ...]
    colab_preinstalled: frozenset[str]  # canonical distribution names
    no_build_isolation: frozenset[str] = frozenset()  # built from source against the installed numpy

    KEYS = ("notebooks_branch", "package", "package_source", "requirements", "colab_preinstalled", "no_build_isolation")

    @classmethod
    def from_config(cls, value: object, root: Path) -> LaunchConfig:
        """Check a ``dlmi_launch`` mapping (see the module docstring).

        Raises:
            LaunchError: not a mapping, unknown or missing keys, a file that does not exist.
        """
        fix = f"dlmi_launch (_config.yml, sphinx: config:) takes {', '.join(cls.KEYS)}"
        if not isinstance(value, dict):
            raise LaunchError(f"dlmi_launch is {type(value).__name__}, not a mapping: {fix}")
        unknown = sorted(set(value) - set(cls.KEYS))
        if unknown:
            raise LaunchError(f"dlmi_launch has unknown keys {unknown}: {fix}")
        for key in ("notebooks_branch", "package", "requirements"):
            if not value.get(key):
                raise LaunchError(f"dlmi_launch needs {key}: {fix}")
        requirements = value["requirements"]
        requirements = [requirements] if isinstance(requirements, str) else list(requirements)
        paths = tuple(root / str(p) for p in requirements)
        source = root / str(value["package_source"]) if value.get("package_source") else None
        for path in (*paths, *([source] if source else [])):
            if not path.exists():
                raise LaunchError(f"dlmi_launch: {path} does not exist: fix the path (relative to the book root)")
        preinstalled = value.get("colab_preinstalled") or []
        if not isinstance(preinstalled, list):
            raise LaunchError(f"dlmi_launch: colab_preinstalled must be a list of distribution names, not {preinstalled!r}")
        in_place = value.get("no_build_isolation") or []
        if not isinstance(in_place, list):
            raise LaunchError(f"dlmi_launch: no_build_isolation must be a list of distribution names, not {in_place!r}")
        return cls(
            notebooks_branch=str(value["notebooks_branch"]),
            package=str(value["package"]),
            package_source=source,
            requirements=paths,
            colab_preinstalled=frozenset(canonicalize_name(str(name)) for name in preinstalled),
            no_build_isolation=frozenset(canonicalize_name(str(name)) for name in in_place),
        )


def book_settings(root: str | Path) -> tuple[LaunchConfig, Repository]:
    """The ``dlmi_launch`` and ``repository`` settings of the book at ``root`` (its ``_config.yml``), outside Sphinx.

    Raises:
        LaunchError: the settings are missing or unusable.
    """
    import yaml

    root = Path(root)
    data = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    value = ((data.get("sphinx") or {}).get("config") or {}).get("dlmi_launch")
    if not value:
        raise LaunchError(f"{root / '_config.yml'} has no sphinx: config: dlmi_launch setting")
    repository = data.get("repository") or {}
    return LaunchConfig.from_config(value, root), Repository.from_url(repository.get("url", ""), repository.get("branch", ""))


def read_pins(paths: list[Path] | tuple[Path, ...]) -> dict[str, str]:
    """The exact pins of requirements files: canonical name -> ``"name==version"`` (first file wins).

    Lines that are not ``name==version`` (comments, options, ranges) are skipped.
    """
    pins: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            specs = list(req.specifier)
            if len(specs) == 1 and specs[0].operator == "==":
                pins.setdefault(canonicalize_name(req.name), f"{req.name}=={specs[0].version}")
    return pins


# --------------------------------------------------------------------------- what a chapter imports


def _python_source(code: str) -> str:
    """A cell's code as plain Python: IPython magics and ``!shell`` lines turned into calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(code)


def imported_modules(code: str, where: str = "<cell>") -> set[str]:
    """Top-level names of the modules that ``code`` imports (absolute imports, at any depth).

    Raises:
        LaunchError: the code is not valid (I)Python.
    """
    try:
        tree = ast.parse(_python_source(code))
    except SyntaxError as err:
        raise LaunchError(f"{where}: cannot read the imports, line {err.lineno}: {err.msg}") from None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(modules: set[str], *, local: str | None = None) -> tuple[set[str], set[str]]:
    """(canonical names of the installed distributions that provide ``modules``, modules none provides).

    Standard-library modules and the package ``local`` itself are left out.
    """
    provided = _packages_distributions()
    dists, unknown = set(), set()
    for module in modules:
        if module in sys.stdlib_module_names or module == local:
            continue
        if module in provided:
            dists.update(canonicalize_name(name) for name in provided[module])
        else:
            unknown.add(module)
    return dists, unknown


def colab_requirements(dists: set[str], pins: dict[str, str], preinstalled: frozenset[str] | set[str]) -> list[str]:
    """The pinned requirements Colab must install for ``dists``: those not preinstalled, sorted.

    Raises:
        LaunchError: a needed distribution has no exact pin.
    """
    needed = sorted(canonicalize_name(d) for d in dists if canonicalize_name(d) not in preinstalled)
    missing = [d for d in needed if d not in pins]
    if missing:
        raise LaunchError(
            f"the book imports {', '.join(missing)} but the requirements files pin no version of it: "
            "pin it (name==version) in requirements.txt, or list it in dlmi_launch colab_preinstalled"
        )
    return [pins[d] for d in needed]


def package_modules(source: Path | None) -> set[str]:
    """Modules imported anywhere in the package's source folder (``.py`` files, recursively)."""
    if source is None:
        return set()
    files = [source] if source.is_file() else sorted(source.rglob("*.py"))
    found: set[str] = set()
    for path in files:
        found |= imported_modules(path.read_text(encoding="utf-8"), str(path))
    return found


# --------------------------------------------------------------------------- the notebook


def setup_cells(
    install: list[str], *, source_link: str, readme_link: str, install_no_isolation: list[str] | tuple[str, ...] = ()
) -> list[nbformat.NotebookNode]:
    """The two ``colab-setup`` cells: a note, and the code that installs ``install`` in Colab only.

    Args:
        install: pip requirement strings (the package from git first, then the pins).
        install_no_isolation: pins installed afterwards with ``--no-build-isolation`` (source builds
            that need the numpy installed by the first step, e.g. pyradiomics).
        source_link: Address of the chapter's source on GitHub (shown in the note).
        readme_link: Address of the README that tells how to install the book elsewhere.
    """
    note = (
        "**Running this chapter as a notebook.** This notebook is generated from "
        f"[the chapter's source]({source_link}) when the book is built. In Google Colab the next cell "
        "installs the book's helper package and the libraries the chapter needs that Colab lacks (it keeps "
        "Colab's PyTorch); anywhere else it does nothing: set up the book's environment as its "
        f"[README]({readme_link}) describes. With a GPU the chapter runs its `full` profile, the one the "
        'book is built with; for a shorter run add `import os; os.environ["DLMI_PROFILE"] = "quick"` '
        "before the first `import dlmi`. References, glossary terms and numbers written as MyST markup "
        "(`{term}`, `{glue:text}`) appear as plain text here; the book's web pages show them rendered."
    )
    packages = "".join(f"            {json.dumps(req)},\n" for req in install)
    second = ""
    if install_no_isolation:
        listed = "".join(f"            {json.dumps(req)},\n" for req in install_no_isolation)
        second = (
            "\n    subprocess.run(  # built from source against the numpy installed above\n"
            "        [\n"
            '            sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation",\n'
            f"{listed}"
            "        ],\n"
            "        check=True,\n"
            "    )"
        )
    code = (
        "# Google Colab only: install the book's package and the libraries this chapter needs, at the\n"
        "# versions the book is built with. Anywhere else this cell does nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        "try:\n"
        "    import google.colab  # noqa: F401  (importable only in Colab)\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    subprocess.run(\n"
        "        [\n"
        '            sys.executable, "-m", "pip", "install", "--quiet",\n'
        f"{packages}"
        "        ],\n"
        "        check=True,\n"
        "    )"
        f"{second}"
    )
    tags = {"tags": [SETUP_TAG]}
    return [
        nbformat.v4.new_markdown_cell(note, metadata=dict(tags), id=SETUP_IDS[0]),
        nbformat.v4.new_code_cell(code, metadata=dict(tags), id=SETUP_IDS[1]),
    ]


def assign_ids(nb: nbformat.NotebookNode, keep: tuple[str, ...] = SETUP_IDS) -> None:
    """Give every cell an id made from its type and source (``-2``, ``-3`` for repeats); ids in ``keep`` stay."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        if cell.get("id") in keep:
            continue
        base = hashlib.sha256(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:12]
        seen[base] = seen.get(base, 0) + 1
        cell["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"


def read_chapter(source: str | Path) -> nbformat.NotebookNode:
    """A chapter (MyST Markdown or ``.ipynb``) read with jupytext.

    Raises:
        LaunchError: the source cannot be read as a notebook.
    """
    try:
        return jupytext.read(Path(source))
    except Exception as err:  # jupytext raises many types for a bad source
        raise LaunchError(f"{source}: jupytext cannot read it as a notebook: {err}") from None


def chapter_notebook(chapter: nbformat.NotebookNode, first: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """A copy of ``chapter`` without outputs, the cells ``first`` first, ids from the contents, Colab metadata."""
    nb = copy.deepcopy(chapter)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.cells = [*first, *nb.cells]
    kernelspec = nb.metadata.get("kernelspec") or {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": kernelspec,
            "language_info": {"name": "python"},
            "accelerator": "GPU",  # Colab opens it on a GPU runtime
            "colab": {"provenance": []},
        }
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    assign_ids(nb)
    nbformat.validate(nb)
    return nb


def chapter_requirements(chapter: nbformat.NotebookNode, config: LaunchConfig, where: str = "<chapter>") -> list[str]:
    """What Colab installs for ``chapter``: the package from the repository's git (added by the caller) aside,
    the pins of every distribution the chapter's code cells and the package import, less ``colab_preinstalled``.

    Raises:
        LaunchError: an import that no installed distribution provides, or that has no pin.
    """
    modules = package_modules(config.package_source)
    for cell in chapter.cells:
        if cell.cell_type == "code":
            modules |= imported_modules(cell.source, where)
    dists, unknown = distributions_of(modules, local=config.package)
    if unknown:
        raise LaunchError(
            f"{where} or the package {config.package} imports {', '.join(sorted(unknown))}, which no installed "
            "distribution provides: install it and pin it in requirements.txt"
        )
    return colab_requirements(dists, read_pins(config.requirements), config.colab_preinstalled)


def launch_notebook(source: str | Path, *, config: LaunchConfig, repo: Repository, source_path: str) -> nbformat.NotebookNode:
    """The Colab-ready notebook of the chapter ``source`` (see the module docstring).

    Args:
        source: The chapter's file.
        config: The ``dlmi_launch`` settings.
        repo: The book's repository.
        source_path: The chapter's path in the repository (for the link in the note).

    Raises:
        LaunchError: the chapter cannot be read, or what it imports cannot be installed.
    """
    chapter = read_chapter(source)
    pins = chapter_requirements(chapter, config, str(source))
    in_place = [pin for pin in pins if canonicalize_name(Requirement(pin).name) in config.no_build_isolation]
    install = [repo.pip_requirement(config.package), *(pin for pin in pins if pin not in in_place)]
    first = setup_cells(install, source_link=repo.blob_url(source_path), readme_link=repo.blob_url("README.md"),
                        install_no_isolation=in_place)
    return chapter_notebook(chapter, first)


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """The notebook as ``.ipynb`` bytes (stable key order, final newline)."""
    return (nbformat.writes(nb).rstrip("\n") + "\n").encode("utf-8")


def is_notebook_source(path: str | Path) -> bool:
    """Whether a page source is a notebook: an ``.ipynb``, or MyST with a ``kernelspec`` front matter."""
    path = Path(path)
    return path.suffix == ".ipynb" or "kernelspec" in jupytext.read(path).metadata


# --------------------------------------------------------------------------- Sphinx


def _settings(app) -> tuple[LaunchConfig, Repository] | None:
    """The checked settings, or ``None`` when ``dlmi_launch`` is not set (the extension then does nothing)."""
    if not app.config.dlmi_launch:
        return None
    from sphinx.errors import ExtensionError

    options = app.config.html_theme_options or {}
    try:
        config = LaunchConfig.from_config(app.config.dlmi_launch, Path(app.srcdir))
        repo = Repository.from_url(options.get("repository_url", ""), options.get("repository_branch", ""))
    except LaunchError as err:
        raise ExtensionError(f"dlmi_launch: {err}") from None
    return config, repo


def _check_settings(app) -> None:
    _settings(app)  # fail at the start of the build, not after every page is executed


def is_notebook(app, docname: str) -> bool:
    """Whether the page is a notebook: an ``.ipynb`` source, or front matter with a ``kernelspec`` (as the theme decides)."""
    return "kernelspec" in app.env.metadata.get(docname, {}) or str(app.env.doc2path(docname)).endswith(".ipynb")


def _source_path(app, docname: str) -> str:
    """The page's source, relative to the repository root (``path_to_book`` from ``repository:``)."""
    root = Path(app.srcdir)
    relative = Path(app.env.doc2path(docname)).resolve().relative_to(root.resolve()).as_posix()
    prefix = str((app.config.html_theme_options or {}).get("path_to_docs", "") or "").strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def _write_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    settings = _settings(app)
    if settings is None:
        return
    from sphinx.errors import ExtensionError
    from sphinx.util import logging as sphinx_logging

    logger = sphinx_logging.getLogger(__name__)
    config, repo = settings
    outdir = Path(app.outdir) / NOTEBOOKS_DIR
    written = set()
    for docname in sorted(app.env.found_docs):
        if not is_notebook(app, docname):
            continue
        try:
            nb = launch_notebook(app.env.doc2path(docname), config=config, repo=repo, source_path=_source_path(app, docname))
        except LaunchError as err:
            raise ExtensionError(f"dlmi_launch: {err}") from None
        target = outdir / f"{docname}.ipynb"
        write_if_changed(target, notebook_bytes(nb))
        written.add(target)
    for stale in sorted(outdir.rglob("*.ipynb")) if outdir.is_dir() else []:
        if stale not in written:
            stale.unlink()
    logger.info(f"dlmi_launch: {len(written)} notebooks in {outdir}")


def _group(context: dict, label: str) -> dict | None:
    return next((b for b in context.get("header_buttons") or [] if b.get("label") == label), None)


def _add_buttons(app, pagename, templatename, context, doctree) -> None:
    """Add Colab to the theme's launch menu and the generated notebook to its download menu."""
    settings = _settings(app)
    if settings is None or pagename not in app.env.found_docs or not is_notebook(app, pagename):
        return
    config, repo = settings
    launch = _group(context, "launch-buttons")
    if launch is None:  # the theme adds the menu only when launch_buttons names a service
        launch = {"type": "group", "tooltip": "Launch interactive content", "icon": "fas fa-rocket", "buttons": [], "label": "launch-buttons"}
        context.setdefault("header_buttons", []).append(launch)
    launch["buttons"].append(
        {
            "type": "link",
            "text": "Colab",
            "tooltip": "Launch on Colab",
            "icon": "_static/images/logo_colab.png",
            "url": repo.colab_url(config.notebooks_branch, f"{pagename}.ipynb"),
            "label": "launch-colab-button",
        }
    )
    download = _group(context, "download-buttons")
    if download is not None:
        entry = {
            "type": "link",
            "url": context["pathto"](f"{NOTEBOOKS_DIR}/{pagename}.ipynb", 1),
            "text": ".ipynb (to run, no outputs)",
            "tooltip": "Download the chapter as a notebook to run: no outputs, a setup cell for Colab",
            "icon": "fas fa-code",
            "label": "download-runnable-notebook-button",
        }
        position = 0
        for index, button in enumerate(download["buttons"]):
            if button.get("label") == "download-notebook-button":  # the theme's: the executed notebook
                button["text"], position = ".ipynb (with outputs)", index + 1
        download["buttons"].insert(position, entry)


def setup(app):
    app.add_config_value("dlmi_launch", {}, "html", types=[dict])
    app.connect("builder-inited", _check_settings)
    app.connect("html-page-context", _add_buttons, priority=600)  # after the theme's buttons (501)
    app.connect("build-finished", _write_notebooks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
