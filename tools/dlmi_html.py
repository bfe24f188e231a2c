"""Sphinx extension: HTML pages that work offline and load without script errors.

Registered in ``_config.yml`` (``sphinx: local_extensions: {dlmi_html: tools}``). For HTML builds:

- **Local MathJax.** MathJax 3 is installed from the npm registry by ``make install``
  (``npm ci --prefix tools/mathjax``: the exact version and its integrity hash are in
  ``tools/mathjax/package-lock.json``) into the git-ignored ``tools/mathjax/node_modules/``. This
  extension adds that folder to ``html_static_path``, so the package lands in
  ``_build/html/_static/mathjax/`` (the ``es5/`` scripts, the CHTML web fonts, the TeX extensions
  MathJax loads on demand, its licence), and pages load the script that Sphinx's ``mathjax_path``
  names relative to ``_static``::

      sphinx:
        config:
          mathjax_path: mathjax/es5/tex-mml-chtml.js

  A missing local copy, or a ``mathjax_path`` that is a URL or names a file the local copy lacks,
  stops the build with a one-line error saying how to fix it.
- **Inline scripts once.** Sphinx 7.4 writes an inline ``<script>`` that an extension adds after
  the builder started (sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's
  settings) twice into every page; the second ``const`` is a JavaScript error in the reader's
  console. Identical scripts are written once.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NODE_MODULES", "check_local_mathjax", "setup", "unique_scripts"]

# npm's install folder for tools/mathjax/package.json: it holds the package folder `mathjax/`
NODE_MODULES = Path(__file__).resolve().parent / "mathjax" / "node_modules"
INSTALL_HINT = "run `make install` (it runs `npm ci --prefix tools/mathjax`)"


def check_local_mathjax(mathjax_path: str, node_modules: Path = NODE_MODULES) -> Path:
    """The local file that ``mathjax_path`` (relative to ``_static``) will be served from.

    Args:
        mathjax_path: Sphinx's ``mathjax_path`` setting, e.g. ``mathjax/es5/tex-mml-chtml.js``.
        node_modules: The folder copied into ``_static`` (it holds ``mathjax/``).

    Raises:
        ValueError: ``mathjax_path`` is a URL or an absolute path, the local copy is missing,
            or it lacks the script or (for CHTML output) the web fonts.
    """
    if not mathjax_path or "://" in mathjax_path or mathjax_path.startswith("/"):
        raise ValueError(
            f"mathjax_path {mathjax_path!r} is not a path inside _static: set `mathjax_path: mathjax/es5/tex-mml-chtml.js`"
            " under sphinx: config: in _config.yml (the book serves its own MathJax, no CDN)"
        )
    package = node_modules / "mathjax"
    if not (package / "package.json").is_file():
        raise ValueError(f"the local MathJax is missing ({package} does not exist): {INSTALL_HINT}")
    script = node_modules / mathjax_path
    if not script.is_file():
        raise ValueError(
            f"mathjax_path {mathjax_path!r} names {script}, which the local MathJax does not have:"
            f" fix mathjax_path in _config.yml or {INSTALL_HINT}"
        )
    fonts = script.parent / "output" / "chtml" / "fonts" / "woff-v2"
    if "chtml" in script.name and not any(fonts.glob("*.woff")):
        raise ValueError(f"the local MathJax has no CHTML fonts in {fonts}: {INSTALL_HINT}")
    return script


def unique_scripts(scripts: list) -> list:
    """``scripts`` (Sphinx's ``_JavaScript`` assets) without repeats, in order.

    An inline script (no file) is recorded as ``None`` or ``""`` depending on when it was added;
    both count as the same script when the rest (priority, attributes, body) is equal.
    """
    seen, unique = set(), []
    for script in scripts:
        key = (
            getattr(script, "filename", script) or "",
            getattr(script, "priority", None),
            tuple(sorted((getattr(script, "attributes", None) or {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    return unique


def _add_static(app) -> None:
    """For HTML builds: check the local MathJax and have Sphinx copy it into ``_static``."""
    from sphinx.errors import ExtensionError

    if app.builder.format != "html" or "sphinx.ext.mathjax" not in app.extensions:
        return
    try:
        check_local_mathjax(app.config.mathjax_path)
    except ValueError as err:
        raise ExtensionError(f"dlmi_html: {err}") from None
    if str(NODE_MODULES) not in app.config.html_static_path:
        app.config.html_static_path.append(str(NODE_MODULES))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        scripts[:] = unique_scripts(scripts)


def setup(app):
    app.connect("builder-inited", _add_static)
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after the other extensions add theirs
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
