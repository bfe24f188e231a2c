"""Tests of dlmi.pretrained: published weights are checked and loaded safely, through the path online readers use."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision
from torch import nn

from dlmi.data import ChecksumError
from dlmi.pretrained import PUBLISHED, PublishedWeights, WeightsNotFoundError, build, freeze_except, load_state_dict, publish, weights_file


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLMI_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DLMI_OFFLINE", "1")
    return tmp_path


def publish_model(model: nn.Module, name: str = "toy") -> PublishedWeights:
    return publish(model.state_dict(), name, "https://example.org/models/", "torchvision.models.resnet18")


def test_published_entries_carry_hash_prefixes():
    """Every known entry names its file the torch.hub way, with the SHA-256 prefix the check uses."""
    assert PUBLISHED["resnet18-imagenet"].sha256_prefix == "f37072fd"
    for spec in PUBLISHED.values():
        assert spec.url.startswith("https://") and len(spec.sha256_prefix) >= 8
    with pytest.raises(ValueError, match="no SHA-256 prefix"):
        PublishedWeights("x", "https://example.org/x.pth", "a.b", "", "").sha256_prefix


def test_publish_names_the_file_by_its_hash(cache):
    spec = publish_model(nn.Linear(4, 2), "lin")
    path = cache / "weights" / spec.filename
    assert spec.url == f"https://example.org/models/{path.name}" and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith(spec.sha256_prefix)
    assert not list((cache / "weights").glob("*.part"))


def test_locally_saved_weights_load_through_the_published_path(cache):
    """A ResNet-18's weights saved locally come back identical, as tensors only (weights_only)."""
    torch.manual_seed(0)
    original = torchvision.models.resnet18(weights=None)
    spec = publish_model(original)
    state = load_state_dict(spec)
    assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())
    model = build(spec, n_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.conv1.weight, original.conv1.weight)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def test_tampered_weights_are_refused(cache):
    spec = publish_model(nn.Linear(4, 2))
    path = weights_file(spec)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ChecksumError, match="expected it to start with"):
        weights_file(spec)


def test_missing_weights_offline_say_where_to_get_them(cache):
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-f37072fd\.pth.*DLMI_OFFLINE.*download https://download\.pytorch\.org"):
        weights_file("resnet18-imagenet")
    with pytest.raises(KeyError, match="unknown published weights"):
        weights_file("resnet1000")


def test_a_pickled_object_is_not_loaded(cache):
    """weights_only=True: a file holding arbitrary Python objects is refused, not executed."""
    tmp = cache / "tmp.pth"
    torch.save({"weights": torch.zeros(2), "payload": ValueError("not a tensor")}, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    (cache / "weights").mkdir()
    tmp.replace(cache / "weights" / f"evil-{prefix}.pth")
    spec = PublishedWeights("evil", f"https://example.org/evil-{prefix}.pth", "torchvision.models.resnet18", "", "")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_state_dict(spec)


def test_freeze_except_counts_and_freezes():
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    counts = freeze_except(model, ["fc"])
    assert counts == {"trainable": 512 * 2 + 2, "total": sum(p.numel() for p in model.parameters())}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    more = freeze_except(model, ["layer4", "fc"])
    assert counts["trainable"] < more["trainable"] < more["total"]
    with pytest.raises(ValueError, match="no parameter name starts with"):
        freeze_except(model, ["head"])
