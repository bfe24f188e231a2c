#!/usr/bin/env bash
# Build a Jupyter Book with execution, failing on any cell error or Sphinx warning.
# Usage: tools/build_book.sh [BOOK_ROOT]   (default: the repository root)
# Used by `make book` and by tests/test_build.py, so both build the same way.
set -euo pipefail
root=${1:-.}
here=$(cd "$(dirname "$0")" && pwd)
bin=${DLMI_BIN:-$here/../.venv/bin}
"$bin/jupyter-book" build "$root" --builder html -W -n --keep-going
