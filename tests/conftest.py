"""Shared fixtures: an isolated environment, the real data folder, tiny fake data.

Every test runs with the ``DLMI_*`` variables cleared (``DLMI_DEVICE=cpu`` and
``DLMI_CACHE_DIR`` in ``tmp_path``), so that neither the caller's shell nor another test
changes what :func:`dlmi.config.get_settings` sees. Tests that need the real datasets
ask for ``shared_data``; error-path tests build fake files with ``fake_data_dir``.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dlmi import data as dlmi_data

ENV_VARS = ("DLMI_DATA_DIR", "DLMI_CACHE_DIR", "DLMI_OFFLINE", "DLMI_PROFILE", "DLMI_DEVICE", "DLMI_SEED")

# Read once, before any fixture clears the environment.
_CALLER_DATA_DIR = os.environ.get("DLMI_DATA_DIR", "").strip() or None
REPO_ROOT = Path(__file__).resolve().parents[1]


# The front matter that makes a MyST Markdown page a notebook (jupytext + kernelspec), for throwaway pages.
MYST_NOTEBOOK_HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def md5_bytes(payload: bytes) -> str:
    """MD5 hex digest of some bytes."""
    return hashlib.md5(payload).hexdigest()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear every DLMI_* variable, run on the CPU, cache in tmp; restore global torch state after.

    Returns:
        The test's cache folder (``DLMI_CACHE_DIR``).
    """
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "dlmi-cache"
    monkeypatch.setenv("DLMI_CACHE_DIR", str(cache))
    monkeypatch.setenv("DLMI_DEVICE", "cpu")
    # seed_everything() sets this and global torch flags: undo them after each test
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    rng_state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    yield cache
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
    random.setstate(rng_state[0])
    np.random.set_state(rng_state[1])
    torch.set_rng_state(rng_state[2])


@pytest.fixture
def shared_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder of real dataset copies, set as ``DLMI_DATA_DIR`` (offline: never download).

    Taken from the caller's ``DLMI_DATA_DIR`` if set, else ``../shared/data`` next to the
    repository; the test is skipped if that folder does not exist.
    """
    root = Path(_CALLER_DATA_DIR) if _CALLER_DATA_DIR else REPO_ROOT / ".." / "shared" / "data"
    root = root.expanduser().resolve()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root}; set DLMI_DATA_DIR to the folder of local copies")
    monkeypatch.setenv("DLMI_DATA_DIR", str(root))
    monkeypatch.setenv("DLMI_OFFLINE", "1")
    return root


def require(root: Path, *relpaths: str) -> None:
    """Skip the test if one of the real data files is absent from ``root``."""
    for rel in relpaths:
        if not (root / rel).exists():
            pytest.skip(f"{rel} is not in the data folder {root}")


@pytest.fixture
def fresh_caches():
    """Forget remembered MD5s and decoded arrays (for tests that rewrite files in place)."""
    dlmi_data._MD5_CACHE.clear()
    dlmi_data._read_npz.cache_clear()
    dlmi_data._mednist_arrays.cache_clear()
    yield
    dlmi_data._MD5_CACHE.clear()
    dlmi_data._read_npz.cache_clear()
    dlmi_data._mednist_arrays.cache_clear()


class FakeData:
    """A tiny data folder in ``tmp_path`` with synthetic files (for error paths only)."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, relpath: str, payload: bytes) -> Path:
        """Write ``payload`` to ``root/relpath`` and return the path."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        return path


@pytest.fixture
def fake_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_caches) -> FakeData:
    """An empty data folder set as ``DLMI_DATA_DIR``, with ``DLMI_OFFLINE=1``; fill it with ``.write``."""
    root = tmp_path / "fake-data"
    root.mkdir()
    monkeypatch.setenv("DLMI_DATA_DIR", str(root))
    monkeypatch.setenv("DLMI_OFFLINE", "1")
    return FakeData(root)


@pytest.fixture
def fake_spec(monkeypatch: pytest.MonkeyPatch):
    """Register a temporary one-file dataset ``fake_set`` whose official bytes are given.

    Usage: ``spec = fake_spec(b"official bytes", local=b"subset bytes")``.
    """

    def make(official: bytes, local: bytes | None = None, url: str | None = "https://example.org/fake.bin"):
        remote = dlmi_data.RemoteFile("fake.bin", url, md5_bytes(official), md5_bytes(local) if local else None)
        spec = dlmi_data.DatasetSpec(
            name="fake_set",
            folder="fake",
            files=(remote,),
            licence="CC0",
            source="the test suite",
            citation="none",
            description="a fake one-file dataset",
            local_copy="the test's local subset" if local else None,
            how_to_get=None if url else "ask the test suite",
        )
        monkeypatch.setitem(dlmi_data.REGISTRY, "fake_set", spec)
        return spec

    return make


def toy_imageset(n: int = 64, size: int = 8, n_classes: int = 2, seed: int = 0, flip: bool = False, split: str = "train"):
    """A learnable synthetic :class:`~dlmi.data.ImageSet`: class ``c`` brightens the ``c``-th band of rows.

    Args:
        n: Number of images (classes cycle 0, 1, ..., so they are balanced).
        size: Image side length (1 channel).
        n_classes: Number of classes.
        seed: Noise seed.
        flip: Reverse the labels (same images), for a validation split that disagrees with training.
        split: Split name stored in the set.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    images = torch.randint(0, 100, (n, 1, size, size), generator=g, dtype=torch.uint8)
    band = size // n_classes
    for c in range(n_classes):
        images[labels == c, :, c * band : (c + 1) * band, :] += 120
    if flip:
        labels = (n_classes - 1) - labels
    classes = tuple(f"class{c}" for c in range(n_classes))
    task = "binary-class" if n_classes == 2 else "multi-class"
    return dlmi_data.ImageSet(images, labels, classes, task, "toy", split, "synthetic toy data")


@pytest.fixture
def toy():
    """The :func:`toy_imageset` factory, as a fixture."""
    return toy_imageset
