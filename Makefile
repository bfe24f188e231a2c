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

.PHONY: install book test test-fast clean

$(BIN)/.installed: requirements.txt requirements-radiomics.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	$(PIP) install --quiet --no-build-isolation -r requirements-radiomics.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python tools/check_env.py
	touch $@

install: $(BIN)/.installed

# jupyter-cache re-executes a chapter when its code cells change, not when the package
# they import does: a change to src/dlmi clears the cache so every chapter runs again.
_build/.dlmi-source: $(wildcard src/dlmi/*.py)
	rm -rf _build/.jupyter_cache
	mkdir -p _build && touch $@

book: install _build/.dlmi-source
	tools/build_book.sh .

test: install _build/.dlmi-source
	$(BIN)/python -m pytest -m "not built"
	tools/build_book.sh .
	$(BIN)/python -m pytest -m built

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not built"

clean:
	rm -rf _build
