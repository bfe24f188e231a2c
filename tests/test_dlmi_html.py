"""tools/dlmi_html.py without Sphinx: the local MathJax check and the de-duplication of scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
from dlmi_html import NODE_MODULES, check_local_mathjax, unique_scripts
from sphinx.builders.html._assets import _JavaScript

SCRIPT = "mathjax/es5/tex-mml-chtml.js"


def fake_mathjax(root: Path, fonts: bool = True) -> Path:
    """A folder laid out like npm's install of mathjax (package.json, the script, CHTML fonts)."""
    es5 = root / "mathjax" / "es5"
    es5.mkdir(parents=True)
    (root / "mathjax" / "package.json").write_text('{"name": "mathjax", "version": "3.2.2"}')
    (es5 / "tex-mml-chtml.js").write_text("/* MathJax */")
    if fonts:
        (es5 / "output" / "chtml" / "fonts" / "woff-v2").mkdir(parents=True)
        (es5 / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").write_bytes(b"wOFF")
    return root


def test_local_copy_is_found(tmp_path):
    root = fake_mathjax(tmp_path / "node_modules")
    assert check_local_mathjax(SCRIPT, root) == root / SCRIPT


@pytest.mark.parametrize("path", ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", "/abs/tex.js", ""])
def test_urls_and_absolute_paths_are_refused(tmp_path, path):
    with pytest.raises(ValueError, match="is not a path inside _static"):
        check_local_mathjax(path, fake_mathjax(tmp_path / "node_modules"))


def test_missing_install_says_how_to_fix(tmp_path):
    with pytest.raises(ValueError, match=r"local MathJax is missing .*make install"):
        check_local_mathjax(SCRIPT, tmp_path / "node_modules")


def test_unknown_script_and_missing_fonts(tmp_path):
    root = fake_mathjax(tmp_path / "a")
    with pytest.raises(ValueError, match="does not have"):
        check_local_mathjax("mathjax/es5/tex-nothing.js", root)
    with pytest.raises(ValueError, match="no CHTML fonts"):
        check_local_mathjax(SCRIPT, fake_mathjax(tmp_path / "b", fonts=False))


def test_installed_copy_is_complete():
    """After `make install` the repository's own copy passes (the build relies on it)."""
    if not (NODE_MODULES / "mathjax").is_dir():
        pytest.fail(f"{NODE_MODULES / 'mathjax'} is missing: run `make install`", pytrace=False)
    assert check_local_mathjax(SCRIPT).is_file()


def test_unique_scripts_merges_inline_duplicates():
    """Sphinx records an inline script added late once as None and once as '': one is written."""
    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body=body), _JavaScript("", body=body), _JavaScript("_static/a.js")]
    assert unique_scripts(scripts) == scripts[:2]
    other = [_JavaScript("", body="var a = 1"), _JavaScript("", body="var a = 2")]
    assert unique_scripts(other) == other
