"""Tests of dlmi.interpret: reading out layers and probing them linearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlmi.interpret import layer_outputs, linear_probe
from dlmi.models import SmallCNN
from dlmi.train import to_float


@pytest.fixture
def cnn_and_images():
    """An untrained SmallCNN (16, 32, 64) and five 64x64 greyscale uint8 images."""
    torch.manual_seed(0)
    model = SmallCNN(1, 6)
    images = torch.randint(0, 256, (5, 1, 64, 64), dtype=torch.uint8)
    return model, images


@pytest.mark.parametrize("batch_size", [2, 256])
def test_layer_outputs_sizes(cnn_and_images, batch_size):
    """Requested nodes plus 'input', flattened per image: C x H x W of each block, 64 after pooling."""
    model, images = cnn_and_images
    nodes = ["features.0", "features.1", "features.2", "pool"]
    out = layer_outputs(model, images, nodes, batch_size=batch_size)
    assert list(out) == ["input", *nodes]
    expected = {"input": 64 * 64, "features.0": 16 * 32 * 32, "features.1": 32 * 16 * 16, "features.2": 64 * 8 * 8, "pool": 64}
    assert {k: v.shape for k, v in out.items()} == {k: (5, d) for k, d in expected.items()}
    assert all(v.dtype == np.float32 for v in out.values())


def test_layer_outputs_values(cnn_and_images):
    """'input' is the scaled pixels and 'pool' the network's own pooled features (eval mode)."""
    model, images = cnn_and_images
    out = layer_outputs(model, images, ["pool"], batch_size=2)
    np.testing.assert_allclose(out["input"], to_float(images).flatten(1).numpy())
    with torch.no_grad():
        pooled = model.eval().pool(model.features(to_float(images))).numpy()
    np.testing.assert_allclose(out["pool"], pooled, rtol=1e-5, atol=1e-6)


def test_layer_outputs_subset_of_nodes(cnn_and_images):
    """Only the requested nodes come back (plus 'input')."""
    model, images = cnn_and_images
    assert set(layer_outputs(model, images, ["features.1"])) == {"input", "features.1"}


def separable(n: int, d: int, seed: int):
    """Two Gaussian blobs in d dimensions, far apart along every axis."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)) + 3.0 * (2 * y[:, None] - 1)
    return x, y


def test_linear_probe_separable():
    """Linearly separable features: the probe is (nearly) perfect."""
    xtr, ytr = separable(200, 20, 0)
    xte, yte = separable(200, 20, 1)
    assert linear_probe(xtr, ytr, xte, yte) >= 0.99


def test_linear_probe_random_labels():
    """Labels unrelated to the features: the probe scores about chance (1/2)."""
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(size=(300, 30)), rng.normal(size=(400, 30))
    ytr, yte = rng.integers(0, 2, 300), rng.integers(0, 2, 400)
    assert abs(linear_probe(xtr, ytr, xte, yte) - 0.5) < 0.1


def test_linear_probe_few_samples_and_torch_labels():
    """Fewer rows than n_components and torch labels are handled."""
    xtr, ytr = separable(20, 100, 2)
    xte, yte = separable(40, 100, 3)
    assert linear_probe(xtr, torch.from_numpy(ytr), xte, torch.from_numpy(yte), n_components=50) >= 0.95


def test_linear_probe_is_deterministic():
    """Same inputs and seed: same score."""
    xtr, ytr = separable(100, 60, 4)
    xte, yte = separable(100, 60, 5)
    ytr[:30] = 1 - ytr[:30]  # some label noise so the score is not trivially 1
    assert linear_probe(xtr, ytr, xte, yte, seed=1) == linear_probe(xtr, ytr, xte, yte, seed=1)
