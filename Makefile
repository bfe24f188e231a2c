# Two commands on a fresh Linux machine with Python 3.11 (see README.md):
#   make book   builds the book into _build/html (executing every chapter)
#   make test   installs, runs the unit tests, builds the book strictly, checks the result
# Local dataset copies: DLMI_DATA_DIR=/path/to/data make test

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The index's torch/torchvision pair, not a local CPU-only torch wheel without torchvision.
PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(BIN)/python -m pip

ifdef DLMI_DATA_DIR
export DLMI_DATA_DIR := $(abspath $(DLMI_DATA_DIR))
endif
export DLMI_CACHE_DIR ?= $(CURDIR)/_build/cache
export MPLBACKEND ?= Agg
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: install chromium book test test-fast clean

$(BIN)/.installed: requirements.txt requirements-radiomics.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	$(PIP) install --quiet --no-build-isolation -r requirements-radiomics.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python tools/check_env.py
	touch $@

# MathJax 3 for the pages, served from _static (tools/dlmi_html.py), never from a CDN: the exact
# npm package and integrity hash of tools/mathjax/package-lock.json, into tools/mathjax/node_modules
MATHJAX := tools/mathjax/node_modules/mathjax/package.json
$(MATHJAX): tools/mathjax/package.json tools/mathjax/package-lock.json
	command -v npm >/dev/null || { echo "npm not found: install Node.js and npm (apt-get install npm) for the book's local MathJax" >&2; exit 1; }
	npm ci --prefix tools/mathjax --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium, driven by Playwright in the browser tests (tests/test_browser.py); Playwright's
# own browser download is never used. DLMI_CHROMIUM=/path/to/chromium uses another build instead.
chromium:
	@if [ -n "$${DLMI_CHROMIUM:-}" ]; then
	  test -x "$$DLMI_CHROMIUM" || { echo "DLMI_CHROMIUM=$$DLMI_CHROMIUM is not an executable file" >&2; exit 1; }
	  exit 0
	fi
	test -x /usr/bin/chromium && exit 0
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo
	echo "installing Debian's chromium for the browser tests"
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  || { echo "could not install chromium: run \`sudo apt-get install chromium\` (Debian/Ubuntu) or set DLMI_CHROMIUM" >&2; exit 1; }
	test -x /usr/bin/chromium || { echo "apt-get installed chromium but /usr/bin/chromium is missing: set DLMI_CHROMIUM" >&2; exit 1; }

install: $(BIN)/.installed $(MATHJAX) chromium

# jupyter-cache re-executes a chapter when its code cells change, not when the package
# they import does: a change to src/dlmi clears the cache so every chapter runs again.
_build/.dlmi-source: $(wildcard src/dlmi/*.py)
	rm -rf _build/.jupyter_cache
	mkdir -p _build && touch $@

book: $(BIN)/.installed $(MATHJAX) _build/.dlmi-source
	tools/build_book.sh .

test: install _build/.dlmi-source
	$(BIN)/python -m pytest -m "not built"
	tools/build_book.sh .
	$(BIN)/python -m pytest -m built

test-fast: $(BIN)/.installed $(MATHJAX)
	$(BIN)/python -m pytest -m "not slow and not built"

clean:
	rm -rf _build
