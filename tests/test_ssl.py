"""Tests of dlmi.ssl: the NT-Xent loss against a direct computation and its known properties,
the two views, the SimCLR model and a few pretraining steps through dlmi.train.fit."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dlmi import zoo
from dlmi.augment import BatchAugment
from dlmi.ssl import HE_VIEWS, SimCLR, SimCLRLoss, SimCLRRecipe, encode, nt_xent
from dlmi.train import to_float

TINY = SimCLRRecipe(backbone_kwargs={"widths": (4, 8)}, projection_dim=8, epochs=3, batch_size=16, warmup_epochs=0)


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """NT-Xent written out as in the SimCLR paper, one anchor at a time, in float64."""
    z = torch.cat([z1, z2]).double()
    n, b = len(z), len(z1)

    def sim(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    total = 0.0
    for i in range(n):
        j = (i + b) % n  # the partner view
        numerator = math.exp(sim(z[i], z[j]) / temperature)
        denominator = sum(math.exp(sim(z[i], z[k]) / temperature) for k in range(n) if k != i)
        total += -math.log(numerator / denominator)
    return total / n


def random_pair(b: int = 6, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


# --------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize(("b", "d", "temperature", "seed"), [(2, 3, 0.5, 0), (6, 5, 0.1, 1), (8, 16, 1.0, 2), (5, 2, 0.07, 3)])
def test_nt_xent_matches_a_direct_computation(b, d, temperature, seed):
    """The vectorised loss equals the loop over anchors, for random inputs."""
    z1, z2 = random_pair(b, d, seed)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_known_values(temperature):
    """All vectors equal: log(2B - 1) at any temperature. Identical views of orthogonal
    embeddings: log(1 + (2B - 2) exp(-1/T)), which tends to 0 as T -> 0."""
    b = 4
    same = torch.ones(b, 3)
    assert nt_xent(same, same, temperature).item() == pytest.approx(math.log(2 * b - 1), rel=1e-6)
    eye = torch.eye(b)
    expected = math.log(1 + (2 * b - 2) * math.exp(-1 / temperature))
    assert nt_xent(eye, eye, temperature).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_nt_xent_identical_well_separated_views_are_near_the_minimum():
    """Identical views, far-apart images, low temperature: loss close to 0, far below random views."""
    eye = torch.eye(16) * 3.0  # scale does not matter: vectors are normalised
    low = nt_xent(eye, eye, temperature=0.05).item()
    assert 0 <= low < 1e-6
    z1, z2 = random_pair(16, 16)
    assert nt_xent(z1, z2, temperature=0.05).item() > 1.0


def test_nt_xent_lower_temperature_sharpens():
    """Lower T: good configurations (aligned partners, orthogonal images) get lower loss,
    bad ones (partners orthogonal, another image aligned) higher loss."""
    eye = torch.eye(4)
    good = [nt_xent(eye, eye, t).item() for t in (1.0, 0.5, 0.1)]
    assert good[0] > good[1] > good[2]
    # each view's partner is orthogonal to it, but it coincides with another image's view
    z1, z2 = eye, eye.roll(1, dims=0)
    bad = [nt_xent(z1, z2, t).item() for t in (1.0, 0.5, 0.1)]
    assert bad[0] < bad[1] < bad[2]


def test_nt_xent_invariant_to_the_batch_order():
    """Permuting the images (the same permutation for both views) does not change the loss."""
    z1, z2 = random_pair(7, 4)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm]), nt_xent(z1, z2))


def test_nt_xent_depends_on_the_pairing():
    """Permuting only one view breaks the pairs and changes the loss."""
    z1, z2 = random_pair(7, 4)
    assert not torch.isclose(nt_xent(z1, z2.roll(1, dims=0)), nt_xent(z1, z2))


def test_nt_xent_symmetric_and_scale_invariant():
    """Swapping the views, or rescaling vectors, does not change the loss."""
    z1, z2 = random_pair(5, 3)
    torch.testing.assert_close(nt_xent(z2, z1, 0.3), nt_xent(z1, z2, 0.3))
    scale = torch.tensor([[0.5], [2.0], [10.0], [1.0], [3.0]])
    torch.testing.assert_close(nt_xent(z1 * scale, z2, 0.3), nt_xent(z1, z2, 0.3))


def test_nt_xent_gradient_flows():
    """The loss is differentiable: finite, non-zero gradients for both views; a step lowers it."""
    z1, z2 = (t.requires_grad_() for t in random_pair(6, 5))
    loss = nt_xent(z1, z2)
    loss.backward()
    for g in (z1.grad, z2.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    with torch.no_grad():
        assert nt_xent(z1 - 0.5 * z1.grad, z2 - 0.5 * z2.grad) < loss


def test_nt_xent_is_computed_in_float32_under_mixed_precision():
    """Under bfloat16 autocast (as fit uses on GPUs) the loss keeps float32 precision."""
    z1, z2 = random_pair(8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = nt_xent(z1, z2, 0.1)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, nt_xent(z1, z2, 0.1))


@pytest.mark.parametrize(
    ("z1", "z2", "kwargs", "match"),
    [
        (torch.zeros(4, 3), torch.zeros(4, 2), {}, "must both be"),
        (torch.zeros(4), torch.zeros(4), {}, "must both be"),
        (torch.ones(1, 3), torch.ones(1, 3), {}, "at least 2"),
        (torch.ones(3, 3), torch.ones(3, 3), {"temperature": 0.0}, "positive"),
        (torch.full((3, 3), float("nan")), torch.ones(3, 3), {}, "NaN"),
    ],
    ids=["shapes", "1-d", "one-image", "temperature", "nan"],
)
def test_nt_xent_rejects_bad_input(z1, z2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nt_xent(z1, z2, **kwargs)


# --------------------------------------------------------------------------- views and model


def rgb_batch(b: int = 8, size: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, size, size, generator=g)


def test_views_differ_but_keep_shape_and_range():
    """Two views of each image: same shape and dtype, within [0, 1], different from each other and the input."""
    torch.manual_seed(0)
    x = rgb_batch()
    v1, v2 = SimCLRLoss(BatchAugment(**HE_VIEWS)).views(x)
    for v in (v1, v2):
        assert v.shape == x.shape and v.dtype == x.dtype
        assert v.min() >= 0 and v.max() <= 1
    per_image = (v1 - v2).abs().flatten(1).mean(1)
    assert (per_image > 1e-3).all(), "every image's two views differ"
    assert not torch.allclose(v1, x)


def test_views_are_seeded():
    """The same seed gives the same views (augmentation uses the global torch generator)."""
    x = rgb_batch()
    loss = SimCLRLoss(BatchAugment(**HE_VIEWS))
    torch.manual_seed(3)
    a = loss.views(x)
    torch.manual_seed(3)
    b = loss.views(x)
    torch.testing.assert_close(a, b)


def test_model_shapes_and_encode():
    """The projector maps (B, C, H, W) to (B, projection_dim); encode gives the encoder's features."""
    model = TINY.build_model(3)
    assert isinstance(model, SimCLR)
    assert model(rgb_batch(5)).shape == (5, TINY.projection_dim)
    images = torch.randint(0, 256, (7, 3, 12, 12), dtype=torch.uint8)
    feats = encode(model, images)
    assert feats.shape == (7, 8) and feats.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(feats, model.encoder(to_float(images)).numpy(), atol=1e-5)


def test_encode_a_classifier_and_reject_others():
    classifier = zoo.Recipe(model_kwargs={"widths": (4, 8)}).build_model(3, 2)
    assert encode(classifier, torch.zeros(3, 3, 8, 8, dtype=torch.uint8)).shape == (3, 8)
    with pytest.raises(TypeError, match="SimCLR model or a classifier"):
        encode(torch.nn.Flatten(), torch.zeros(3, 3, 8, 8, dtype=torch.uint8))


def test_build_model_is_seeded_and_checks_the_backbone():
    a, b = TINY.build_model(3), TINY.build_model(3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="unknown backbone"):
        replace(TINY, backbone="ResNet50").build_model(3)


# --------------------------------------------------------------------------- pretraining


def stripes(n: int = 64, size: int = 12, seed: int = 0):
    """Unlabelled-style RGB data with structure: random stripe orientation and colour per image."""
    from dlmi.data import ImageSet

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (n, 3, size, size), generator=g, dtype=torch.uint8)
    kind = torch.arange(n) % 4
    for i in range(n):
        colour = int(kind[i])
        if kind[i] % 2:
            images[i, colour % 3, ::3, :] += 180
        else:
            images[i, colour % 3, :, ::3] += 180
    return ImageSet(images, kind % 2, ("a", "b"), "binary-class", "stripes", "train", "synthetic")


def test_pretraining_lowers_the_loss():
    """A few epochs of SimCLR through dlmi.train.fit lower the contrastive loss; no accuracy is logged."""
    result = replace(TINY, epochs=6, lr=5e-3).fit(stripes())
    h = result.history
    assert len(h) == 6 and result.best_epoch == 6
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert h["train_acc"].isna().all()
    assert not result.model.training


def test_pretraining_rejects_val_and_single_image_batches():
    with pytest.raises(ValueError, match="no validation split"):
        TINY.fit(stripes(), stripes(seed=1))
    with pytest.raises(ValueError, match="last batch of one image"):
        TINY.fit(stripes(n=33))


def test_pretraining_is_cached_and_initialises_a_classifier(toy):
    """train_recipe caches the pretraining (no val); a Recipe with init starts from its encoder."""
    data = stripes(n=32)
    first = zoo.train_recipe("simclr", TINY, data)
    again = zoo.train_recipe("simclr", TINY, data)
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    entry = zoo.entry_name("simclr", TINY, data)
    classifier = zoo.Recipe(model_kwargs={"widths": (4, 8)}, seed=5).build_model(3, 2)
    loaded = zoo.load_weights(classifier, entry)
    assert "features.0.0.weight" in loaded and not any(k.startswith("head") for k in loaded)
    torch.testing.assert_close(classifier.features[0][0].weight, first.model.encoder.features[0][0].weight.cpu())
