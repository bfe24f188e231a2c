"""Tests of dlmi.augment: per-image random augmentation of float batches."""

from __future__ import annotations

import pytest
import torch

from dlmi.augment import BatchAugment

NEUTRAL = {"hflip": 0.0, "vflip": 0.0, "degrees": 0.0, "scale": (1.0, 1.0), "translate": 0.0, "brightness": 0.0, "contrast": 0.0}


def neutral(**changes) -> BatchAugment:
    """A BatchAugment that changes nothing, except for the given settings."""
    return BatchAugment(**{**NEUTRAL, **changes})


def batch(b: int = 4, c: int = 1, h: int = 12, w: int = 10, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Random float images (B, C, H, W) uniform in [low, high] (not square, to catch swapped axes)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, h, w, generator=g) * (high - low) + low


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "settings",
    [{}, {"vflip": 0.5, "degrees": 45.0, "scale": (0.5, 1.5), "translate": 0.3, "brightness": 0.5, "contrast": 0.8}],
    ids=["default", "strong"],
)
def test_shape_dtype_range(channels, settings):
    """Same shape and dtype as the input, values clamped to [0, 1]."""
    x = batch(b=8, c=channels)
    out = BatchAugment(**settings)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.isfinite(out).all()


def test_input_is_left_unchanged():
    """The input batch is not modified in place."""
    x = batch()
    before = x.clone()
    BatchAugment()(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("channels", [1, 3])
def test_neutral_settings_are_the_identity(channels):
    """No flip, rotation, zoom, shift or intensity change: the output is the input."""
    x = batch(c=channels)
    torch.testing.assert_close(neutral()(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("setting", "dim"), [("hflip", 3), ("vflip", 2)], ids=["hflip", "vflip"])
@pytest.mark.parametrize("channels", [1, 3])
def test_certain_flip_is_an_exact_mirror(setting, dim, channels):
    """hflip=1 mirrors left-right (the W axis), vflip=1 up-down (the H axis), with nothing else."""
    x = batch(c=channels)
    out = neutral(**{setting: 1.0})(x)
    torch.testing.assert_close(out, torch.flip(x, dims=[dim]), atol=1e-5, rtol=0)


def test_both_flips():
    """hflip=1 and vflip=1 together: a 180 degree turn."""
    x = batch()
    torch.testing.assert_close(neutral(hflip=1.0, vflip=1.0)(x), torch.flip(x, dims=[2, 3]), atol=1e-5, rtol=0)


def test_flip_probability_is_per_image():
    """hflip=0.5 flips about half of a batch of identical images, each image either mirrored or not."""
    torch.manual_seed(0)
    x = batch(b=1).expand(200, -1, -1, -1).contiguous()
    out = neutral(hflip=0.5)(x)
    same = (out - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - torch.flip(x, dims=[3])).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (same ^ mirrored).all(), "each image is either unchanged or exactly mirrored"
    assert 60 < int(mirrored.sum()) < 140


def test_each_image_gets_its_own_draw():
    """Two identical images in one batch come out different with the default settings."""
    torch.manual_seed(0)
    x = batch(b=1).expand(2, -1, -1, -1).contiguous()
    out = BatchAugment()(x)
    assert not torch.allclose(out[0], out[1], atol=1e-3)


def test_reproducible_under_manual_seed():
    """The global torch generator drives the draws: same seed, same output; another seed differs."""
    x = batch(b=6, c=3)
    aug = BatchAugment(vflip=0.5)
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    torch.manual_seed(4)
    c = aug(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_brightness_adds_one_offset_per_image():
    """brightness alone shifts every pixel of an image by the same amount, in [-brightness, brightness]."""
    torch.manual_seed(0)
    x = batch(b=16, low=0.3, high=0.7)  # far from 0 and 1: no clamping
    diff = neutral(brightness=0.2)(x) - x
    offset = diff.flatten(1)
    torch.testing.assert_close(offset, offset[:, :1].expand_as(offset), atol=1e-5, rtol=0)
    assert (offset.abs() <= 0.2 + 1e-5).all()
    assert offset[:, 0].std() > 0.01, "the offsets differ between images"


def test_contrast_scales_deviation_from_the_image_mean():
    """contrast alone multiplies each image's deviation from its mean by one factor in [1-c, 1+c]."""
    torch.manual_seed(0)
    x = batch(b=16, c=3, low=0.4, high=0.6)  # no clamping even at factor 1.5
    out = neutral(contrast=0.5)(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3), keepdim=True), mean, atol=1e-5, rtol=0)
    factor = ((out - mean) * (x - mean)).sum(dim=(1, 2, 3)) / ((x - mean) ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(out - mean, (x - mean) * factor.view(-1, 1, 1, 1), atol=1e-5, rtol=0)
    assert ((factor >= 0.5 - 1e-5) & (factor <= 1.5 + 1e-5)).all()


@pytest.mark.parametrize("setting", [{"degrees": 30.0}, {"scale": (0.6, 0.8)}, {"translate": 0.25}])
def test_geometric_settings_change_the_image(setting):
    """A rotation, a zoom or a shift alone moves pixels (but keeps the mean intensity roughly)."""
    torch.manual_seed(0)
    x = batch(b=8, h=16, w=16)
    out = neutral(**setting)(x)
    change = (out - x).abs().amax(dim=(1, 2, 3))
    assert change.min() > 1e-4, "every image moves (a draw can be small, never exactly neutral)"
    assert change.max() > 0.2
    torch.testing.assert_close(out.mean(), x.mean(), atol=0.05, rtol=0)


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(2, 1, 8, 8, dtype=torch.int64),
        torch.zeros(1, 8, 8),
        torch.zeros(8, 8),
        torch.zeros(1, 1, 4, 8, 8),
    ],
    ids=["uint8", "int64", "3d", "2d", "5d"],
)
def test_rejects_non_float_or_wrong_rank(x):
    """Integer images (not yet scaled to [0, 1]) or anything but (B, C, H, W) is a ValueError."""
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        BatchAugment()(x)


def test_float64_input():
    """A float64 batch is accepted (it is a float batch) and comes back as float64."""
    x = batch().double()
    out = neutral(hflip=1.0)(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.flip(x, dims=[3]), atol=1e-5, rtol=0)


def test_is_a_module_without_parameters():
    """BatchAugment is an nn.Module with nothing to train (safe to put in an nn.Sequential)."""
    aug = BatchAugment()
    assert isinstance(aug, torch.nn.Module)
    assert list(aug.parameters()) == []


def test_channel_gain_scales_each_channel_by_its_own_factor():
    """channel_gain multiplies every channel of every image by one factor in [1-g, 1+g], drawn per channel."""
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8) * 0.5 + 0.1  # stays inside [0, 1] after a gain of at most 1.2
    out = neutral(channel_gain=0.2)(x)
    ratio = out / x
    per_channel = ratio.flatten(2)
    assert torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel), atol=1e-5)
    gains = per_channel[..., 0]
    assert ((gains >= 0.8 - 1e-6) & (gains <= 1.2 + 1e-6)).all()
    assert gains.std(dim=1).min() > 0  # the channels of an image get different factors


# --------------------------------------------------------------------------- colour jitter (saturation, hue, greyscale)

LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def pastel(b: int = 6) -> torch.Tensor:
    """RGB images near mid-grey (values 0.4-0.6), so no colour change is clipped at 0 or 1."""
    return batch(b=b, c=3, low=0.4, high=0.6)


def test_hue_rotation_keeps_brightness_and_changes_colour():
    """A hue change rotates the colour around the grey axis: same luma, different RGB."""
    torch.manual_seed(0)
    x = pastel()
    out = neutral(hue=0.5)(x)
    torch.testing.assert_close((out * LUMA).sum(1), (x * LUMA).sum(1), atol=1e-5, rtol=0)
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_grey_pixels_are_unchanged_by_saturation_and_hue():
    """Grey (R = G = B) has no colour to saturate or rotate."""
    torch.manual_seed(0)
    x = batch(b=6, c=1).expand(6, 3, 12, 10).contiguous()
    torch.testing.assert_close(neutral(saturation=0.9, hue=0.5)(x), x, atol=1e-5, rtol=0)


def test_certain_greyscale_gives_grey_images():
    torch.manual_seed(0)
    x = pastel()
    out = neutral(grayscale=1.0)(x)
    expected = (x * LUMA).sum(1, keepdim=True).expand_as(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_saturation_moves_along_the_grey_axis():
    """Saturation keeps luma and scales each pixel's distance from its grey value by one factor per image."""
    torch.manual_seed(0)
    x = pastel()
    out = neutral(saturation=0.5)(x)
    grey_in, grey_out = (x * LUMA).sum(1, keepdim=True), (out * LUMA).sum(1, keepdim=True)
    torch.testing.assert_close(grey_out, grey_in, atol=1e-5, rtol=0)
    ratio = ((out - grey_out).flatten(1).norm(dim=1) / (x - grey_in).flatten(1).norm(dim=1))
    assert ((ratio >= 0.5 - 1e-4) & (ratio <= 1.5 + 1e-4)).all() and ratio.std() > 0.01


def test_colour_settings_leave_greyscale_images_and_defaults_alone():
    """One-channel images ignore colour settings; zero colour settings draw no random numbers (old results stay)."""
    x = batch(c=1)
    torch.testing.assert_close(neutral(saturation=0.5, hue=0.2, grayscale=1.0)(x), x, atol=1e-5, rtol=0)
    x3 = batch(c=3)
    torch.manual_seed(4)
    a = BatchAugment()(x3)
    torch.manual_seed(4)
    b = BatchAugment(saturation=0.0, hue=0.0, grayscale=0.0)(x3)
    assert torch.equal(a, b)


@pytest.mark.parametrize("hue", [-0.1, 0.6])
def test_hue_out_of_range(hue):
    with pytest.raises(ValueError, match="hue"):
        BatchAugment(hue=hue)


# --------------------------------------------------------------------------- synthetic shifts (chapter 7)

from dlmi.augment import SHIFTS, corrupt  # noqa: E402


@pytest.fixture
def xray_like():
    """Eight smooth 28x28 uint8 images with structure (a bright disc on a ramp)."""
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    base = 40 + 4 * xx + 120 * (((yy - 14) ** 2 + (xx - 12) ** 2) < 40)
    return base.clamp(0, 255).to(torch.uint8).expand(8, 1, 28, 28).clone()


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_corrupt_identity_at_zero_and_shape(xray_like, kind):
    level0 = 1 if kind == "resolution" else 0
    assert torch.equal(corrupt(xray_like, kind, level0), xray_like)
    level = {"noise": 0.1, "blur": 1.5, "contrast": 0.5, "resolution": 4}[kind]
    out = corrupt(xray_like, kind, level)
    assert out.shape == xray_like.shape and out.dtype == torch.uint8
    assert not torch.equal(out, xray_like)


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_corrupt_grows_with_severity(xray_like, kind):
    """The mean absolute change from the original grows with the severity."""
    levels = {"noise": (0.05, 0.2), "blur": (0.5, 2.0), "contrast": (0.2, 0.8), "resolution": (2, 5)}[kind]
    change = [(corrupt(xray_like, kind, s).float() - xray_like.float()).abs().mean().item() for s in levels]
    assert change[0] < change[1]


def test_contrast_keeps_mean_and_shrinks_spread(xray_like):
    out, x = corrupt(xray_like, "contrast", 0.5).float(), xray_like.float()
    assert out.std().item() == pytest.approx(0.5 * x.std().item(), rel=0.05)
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=2)


def test_noise_is_seeded(xray_like):
    a, b = corrupt(xray_like, "noise", 0.1, seed=1), corrupt(xray_like, "noise", 0.1, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, corrupt(xray_like, "noise", 0.1, seed=2))


@pytest.mark.parametrize(("kind", "level", "match"), [("warp", 1, "unknown shift"), ("contrast", 1.0, "out of range"),
                                                       ("noise", -0.1, "out of range"), ("resolution", 0.5, "out of range")])
def test_corrupt_bad_arguments(xray_like, kind, level, match):
    with pytest.raises(ValueError, match=match):
        corrupt(xray_like, kind, level)


def test_corrupt_wants_uint8(xray_like):
    with pytest.raises(ValueError, match="uint8"):
        corrupt(xray_like.float(), "blur", 1.0)
