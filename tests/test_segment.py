"""Tests of dlmi.segment: U-Net shapes, overlap metrics, lesion-wise and instance-level detection counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlmi.segment import (
    SegmentationLoss,
    SegRecipe,
    axial_slices,
    predict_volume,
    UNet,
    evaluate_patches,
    image_scores,
    lesion_metrics,
    match_instances,
    monai_unet,
    overlap_metrics,
    patch_set,
    receptive_field,
    to_grey,
    to_uint8,
)


@pytest.mark.parametrize("merge", ["concat", "add"])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (64, 96), (128, 40)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_unet_keeps_the_image_size(merge, height, width, in_channels):
    torch.manual_seed(0)
    model = UNet(in_channels, 2, widths=(8, 16, 32, 64), merge=merge).eval()
    out = model(torch.rand(2, in_channels, height, width))
    assert out.shape == (2, 2, height, width)


def test_unet_two_levels_and_odd_sizes():
    """Two levels pool once: any even size works, an odd one is refused with a clear message."""
    model = UNet(1, 1, widths=(4, 8)).eval()
    assert model(torch.rand(1, 1, 10, 6)).shape == (1, 1, 10, 6)
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.rand(1, 1, 9, 6))
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet(1, 1, widths=(4, 8, 16, 32))(torch.rand(1, 1, 36, 36))


def test_unet_merge_changes_parameter_count():
    """Concatenation doubles the decoder's input channels, addition does not."""
    concat, add = UNet(1, 1, merge="concat"), UNet(1, 1, merge="add")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(concat) > n(add)
    with pytest.raises(ValueError, match="merge"):
        UNet(1, 1, merge="sum")


@pytest.mark.parametrize("merge", ["concat", "add"])
def test_unet_learns_a_mask(merge):
    """Thirty Adam steps on one image of two bright discs bring the mask's Dice above 0.9."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mask = (((yy - 10) ** 2 + (xx - 10) ** 2) < 25) | (((yy - 22) ** 2 + (xx - 20) ** 2) < 16)
    image = (0.2 + 0.6 * mask + 0.05 * torch.randn(32, 32))[None, None]
    model = UNet(1, 1, widths=(8, 16, 32), merge=merge)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(image)[0, 0], mask.float())
        loss.backward()
        opt.step()
    pred = model.eval()(image)[0, 0] > 0
    assert overlap_metrics(pred, mask, hausdorff=False)["dice"] > 0.9


def test_monai_unet_shapes():
    model = monai_unet(1, 2, widths=(8, 16, 32)).eval()
    assert model(torch.rand(1, 1, 32, 48)).shape == (1, 2, 32, 48)


def test_overlap_metrics_by_hand():
    """Two 4-pixel squares sharing 2 pixels: Dice = 2*2/(4+4) = 0.5, IoU = 2/6."""
    a = np.zeros((8, 8), np.uint8)
    b = np.zeros((8, 8), np.uint8)
    a[2:4, 2:4] = 1
    b[2:4, 3:5] = 1
    out = overlap_metrics(a, b)
    assert out["dice"] == pytest.approx(0.5)
    assert out["iou"] == pytest.approx(1 / 3)
    assert out["accuracy"] == pytest.approx(1 - 4 / 64)
    assert out["hd95"] == pytest.approx(1.0)


def test_overlap_metrics_empty_cases():
    empty = np.zeros((5, 5))
    assert overlap_metrics(empty, empty)["dice"] == 1.0
    one = empty.copy()
    one[2, 2] = 1
    out = overlap_metrics(empty, one)
    assert out["dice"] == 0.0 and math.isnan(out["hd95"])
    # the voxel-accuracy paradox: a model that finds nothing is 24/25 accurate here
    assert out["accuracy"] == pytest.approx(24 / 25)
    with pytest.raises(ValueError, match="differ in shape"):
        overlap_metrics(empty, np.zeros((4, 5)))


def _lesions_3d():
    """Reference: three lesions. Prediction: finds lesions 1 and 2 (partly), misses 3, adds 2 false alarms."""
    t = np.zeros((10, 20, 20), np.uint8)
    t[1:3, 1:4, 1:4] = 1        # lesion 1
    t[5:8, 10:14, 10:14] = 1    # lesion 2
    t[8, 2, 17] = 1             # lesion 3 (one voxel)
    p = np.zeros_like(t)
    p[2, 2, 2] = 1              # touches lesion 1
    p[6:9, 12:16, 12:16] = 1    # overlaps lesion 2
    p[0, 18, 0:3] = 1           # false alarm
    p[9, 10, 1] = 1             # false alarm (one voxel)
    return p, t


def test_lesion_metrics_known_counts():
    p, t = _lesions_3d()
    out = lesion_metrics(p, t)
    assert (out["n_lesions"], out["n_predicted"]) == (3, 4)
    assert (out["detected"], out["missed"], out["false_positives"]) == (2, 1, 2)
    assert out["sensitivity"] == pytest.approx(2 / 3)
    assert out["precision"] == pytest.approx(2 / 4)
    assert out["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_lesion_metrics_min_size_drops_speckle():
    """Dropping predicted components under 2 voxels removes one false alarm and the 1-voxel hit on lesion 1."""
    p, t = _lesions_3d()
    out = lesion_metrics(p, t, min_size=2)
    assert (out["n_predicted"], out["detected"], out["false_positives"]) == (2, 1, 1)


def test_lesion_metrics_nothing_found():
    t = np.zeros((6, 6), np.uint8)
    t[1, 1] = t[4, 4] = 1
    out = lesion_metrics(np.zeros_like(t), t)
    assert out["sensitivity"] == 0.0 and math.isnan(out["precision"]) and out["missed"] == 2


def test_match_instances_known_counts():
    """Reference nuclei 1, 2, 3; prediction: a perfect copy of 1, a shifted 2 (IoU 1/3), one spurious object."""
    t = np.zeros((12, 12), np.int32)
    t[0:3, 0:3] = 1
    t[5:7, 5:8] = 2
    t[10:12, 0:2] = 3
    p = np.zeros_like(t)
    p[0:3, 0:3] = 7
    p[5:7, 6:9] = 8             # overlaps 2 in 4 pixels: IoU 4 / 8 = 0.5 -> a match at >= 0.5
    p[9:11, 9:11] = 9
    out = match_instances(p, t)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 1)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["mean_matched_iou"] == pytest.approx((1.0 + 0.5) / 2)
    strict = match_instances(p, t, iou_threshold=0.6)
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1, 2, 2)


def test_match_instances_one_to_one():
    """One large prediction covering two nuclei can match at most one of them."""
    t = np.zeros((4, 8), np.int32)
    t[:, 0:4] = 1
    t[:, 4:8] = 2
    p = np.ones_like(t)
    out = match_instances(p, t)
    assert out["tp"] == 1 and out["fn"] == 1 and out["fp"] == 0 or out["tp"] == 0
    assert out["tp"] + out["fn"] == 2


def test_match_instances_empty_and_bad_threshold():
    z = np.zeros((4, 4), np.int32)
    out = match_instances(z, z)
    assert out["tp"] == 0 and math.isnan(out["precision"])
    with pytest.raises(ValueError, match="iou_threshold"):
        match_instances(z, z, iou_threshold=0)


# --------------------------------------------------------------------------- preprocessing, patches, sliding window

from dlmi.segment import normalise_in_mask, sample_patches, sliding_window_predict  # noqa: E402


def test_normalise_in_mask():
    rng = np.random.default_rng(0)
    v = np.zeros((10, 12, 14), np.float32)
    v[2:8, 3:9, 4:10] = rng.normal(300, 40, (6, 6, 6))
    out = normalise_in_mask(v)
    inside = v > 0
    assert out[inside].mean() == pytest.approx(0, abs=1e-5) and out[inside].std() == pytest.approx(1, abs=1e-4)
    assert (out[~inside] == 0).all() and out.dtype == np.float32


@pytest.mark.parametrize(("volume", "mask", "match"), [
    (np.full((3, 3), np.nan), None, "NaN"),
    (np.ones((3, 3)), np.zeros((3, 3)), "fewer than 2"),
    (np.ones((3, 3)), np.ones((3, 3)), "constant"),
    (np.ones((3, 3)), np.ones((2, 3)), "differs"),
])
def test_normalise_in_mask_errors(volume, mask, match):
    with pytest.raises(ValueError, match=match):
        normalise_in_mask(volume, mask)


def _toy_images():
    images = [np.full((1, 40, 50), 7, np.uint8), np.full((3, 12, 9), 9, np.uint8)]
    masks = [np.zeros((40, 50), np.uint8), np.zeros((12, 9), np.uint8)]
    masks[0][30, 10] = 1
    masks[1][3:5, 3:5] = 1
    return images, masks


def test_sample_patches_shapes_and_foreground():
    images, masks = _toy_images()
    x, y = sample_patches(images[:1], masks[:1], size=16, n=20, pos_fraction=1.0, seed=0)
    assert x.shape == (20, 1, 16, 16) and y.shape == (20, 1, 16, 16) and x.dtype == torch.uint8
    assert (y[:, 0, 8, 8] == 1).all()  # every patch centred on the single foreground pixel
    a, _ = sample_patches(images[:1], masks[:1], size=16, n=20, pos_fraction=0.0, seed=0)
    b, _ = sample_patches(images[:1], masks[:1], size=16, n=20, pos_fraction=0.0, seed=0)
    assert torch.equal(a, b)


def test_sample_patches_pads_small_images():
    images, masks = _toy_images()
    x, y = sample_patches(images[1:], masks[1:], size=32, n=5, pos_fraction=1.0, seed=1)
    assert x.shape == (5, 3, 32, 32)
    assert (x == 0).any() and (x == 9).any()  # part image, part padding
    assert int(y.sum()) > 0


def test_sample_patches_errors():
    images, masks = _toy_images()
    with pytest.raises(ValueError, match="as many masks"):
        sample_patches(images, masks[:1], 8, 2)
    with pytest.raises(ValueError, match="pos_fraction"):
        sample_patches(images, masks, 8, 2, pos_fraction=2)


class _Identity(torch.nn.Module):
    """Logit = 10 * (x - 0.5): a pixel-wise model whose sigmoid output is known exactly."""

    def forward(self, x):
        return 10 * (x - 0.5)


@pytest.mark.parametrize(("height", "width", "roi"), [(37, 50, 16), (16, 16, 16), (10, 70, 32)])
def test_sliding_window_predict_stitches_exactly(height, width, roi):
    """A pixel-wise model gives the same output through overlapping windows as on the whole image."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, height, width), dtype=np.uint8)
    out = sliding_window_predict(_Identity(), image, roi=roi, overlap=0.5)
    expected = torch.sigmoid(10 * (torch.from_numpy(image).float() / 255 - 0.5))
    assert out.shape == (1, height, width)
    assert torch.allclose(out, expected, atol=1e-6)


def test_sliding_window_predict_with_unet():
    model = UNet(3, 1, widths=(4, 8, 16))
    image = np.random.default_rng(0).integers(0, 256, (3, 45, 61), dtype=np.uint8)
    out = sliding_window_predict(model, image, roi=32)
    assert out.shape == (1, 45, 61) and ((out >= 0) & (out <= 1)).all()
    with pytest.raises(ValueError, match="uint8"):
        sliding_window_predict(model, image.astype(np.float32), roi=32)


# --------------------------------------------------------------------------- preparing, training, scoring


def test_receptive_field_known_cases():
    """One 3x3 convolution sees 3 pixels, two see 5; each U-Net level (one more pooling) roughly doubles the field."""
    conv = lambda: torch.nn.Conv2d(1, 1, 3, padding=1)  # noqa: E731
    assert receptive_field(conv()) == 3
    assert receptive_field(torch.nn.Sequential(conv(), conv())) == 5
    fields = [receptive_field(UNet(1, 1, widths=w), size=256) for w in [(4, 8), (4, 8, 16), (4, 8, 16, 32)]]
    assert fields[0] < fields[1] < fields[2] < 256
    assert fields[2] > 1.8 * fields[1]


def test_to_grey_and_to_uint8():
    colour = np.stack([np.full((2, 3), v, np.uint8) for v in (10, 20, 60)])
    assert to_grey(colour).shape == (1, 2, 3) and (to_grey(colour) == 30).all()
    grey = np.full((1, 2, 3), 7, np.uint8)
    assert to_grey(grey) is grey
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_grey(np.zeros((4, 2, 2), np.uint8))
    assert to_uint8(np.array([-5.0, -4.0, 1.0, 6.0, 9.0]), -4, 6).tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match="high > low"):
        to_uint8(np.zeros(3), 1, 1)
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([np.nan]), 0, 1)


def test_patch_set_is_an_image_set_of_masks():
    images, masks = _toy_images()
    data = patch_set(images[:1], masks[:1], size=16, n=10, pos_fraction=1.0, seed=0, split="val")
    assert data.images.shape == (10, 1, 16, 16) and data.labels.shape == (10, 1, 16, 16)
    assert data.labels.dtype == torch.uint8 and data.task == "segmentation" and data.split == "val" and len(data) == 10
    with pytest.raises(TypeError, match="uint8"):
        patch_set([images[0].astype(np.float32)], masks[:1], size=16, n=2)


def _bright_discs(n=24, size=32, seed=0):
    """Images with a bright disc on a noisy dark background; the mask is the disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(3, 7))]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
        img = np.clip(40 + 150 * mask + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
        images.append(img[None]), masks.append(mask)
    return images, masks


class _Threshold(torch.nn.Module):
    """Logit = 50 * (x - 0.5): separates the bright discs almost perfectly."""

    def forward(self, x):
        return 50 * (x - 0.5)


def test_segmentation_loss_moves_image_and_mask_together():
    """Whatever flip or rotation is drawn, a perfect pixel-wise model keeps a near-zero loss: masks follow their images."""
    images, masks = _bright_discs(8)
    x = torch.from_numpy(np.stack(images)).float() / 255
    y = torch.from_numpy(np.stack(masks))[:, None]
    torch.manual_seed(0)
    losses = [SegmentationLoss(augment=True)(_Threshold(), x, y).item() for _ in range(12)]
    assert max(losses) < 0.05
    shifted = torch.roll(y, 5, dims=-1)  # a misaligned mask is penalised
    assert SegmentationLoss(augment=False)(_Threshold(), x, shifted).item() > 0.5


class _Empty(torch.nn.Module):
    """Predicts background everywhere."""

    def forward(self, x):
        return torch.full_like(x[:, :1], -20.0)


def test_evaluate_patches_perfect_and_empty():
    images, masks = _bright_discs(8)
    data = patch_set(images, masks, size=32, n=16, pos_fraction=1.0, seed=0)
    perfect = evaluate_patches(_Threshold(), data)
    assert perfect["dice"] > 0.97 and perfect["loss"] < 0.1
    nothing = evaluate_patches(_Empty(), data)
    assert nothing["dice"] == 0.0 and nothing["loss"] > perfect["loss"]


@pytest.mark.parametrize(("model", "kind"), [("UNet", UNet), ("MONAI", torch.nn.Module)])
def test_seg_recipe_builds_seeded_models(model, kind):
    recipe = SegRecipe(model=model, widths=(4, 8, 16), seed=3)
    a, b = recipe.build_model(1, 1), recipe.build_model(1, 1)
    assert isinstance(a, kind)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="unknown segmentation model"):
        SegRecipe(model="SegNet").build_model(1, 1)


@pytest.mark.slow
def test_seg_recipe_learns_discs():
    """Through the book's fit loop, a small U-Net learns to segment discs (val Dice rises above 0.8)."""
    images, masks = _bright_discs(40)
    train = patch_set(images[:30], masks[:30], size=32, n=240, seed=0)
    val = patch_set(images[30:], masks[30:], size=32, n=60, seed=1, split="val")
    result = SegRecipe(widths=(8, 16, 32), epochs=6, batch_size=16, lr=5e-3).fit(train, val)
    h = result.history
    assert {"val_loss", "val_dice"} <= set(h.columns) and h["train_acc"].isna().all()
    assert h["val_dice"].max() > 0.8 and h["val_dice"].iloc[result.best_epoch - 1] == h["val_dice"].max()


def test_image_scores_perfect_and_split_objects():
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6], labels[10:15, 10:15] = 1, 2
    perfect = image_scores((labels > 0).astype(np.float32)[None], labels)
    assert perfect["dice"] == 1.0 and perfect["object_f1"] == 1.0 and perfect["n_true"] == 2 and perfect["n_pred"] == 2
    half = np.zeros((20, 20), np.float32)
    half[2:6, 2:6] = 0.9  # one nucleus found, the other missed
    scores = image_scores(half, labels)
    assert scores["object_precision"] == 1.0 and scores["object_recall"] == 0.5 and scores["n_pred"] == 1
    assert (scores["object_tp"], scores["object_fp"], scores["object_fn"]) == (1, 0, 1)


def test_axial_slices_keeps_slices_with_brain():
    volume = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    mask = (volume % 7 == 0).astype(np.uint8)
    keep = np.zeros_like(volume, bool)
    keep[1, 2, [1, 4]] = True
    images, masks, index = axial_slices(volume, mask, keep)
    assert index.tolist() == [1, 4] and images[0].shape == (1, 4, 5) and masks[1].shape == (4, 5)
    assert np.array_equal(images[1][0], volume[:, :, 4]) and np.array_equal(masks[0], mask[:, :, 1])
    assert len(axial_slices(volume, mask)[0]) == 6
    with pytest.raises(ValueError, match="same shape"):
        axial_slices(volume, mask[:, :, :3])


def test_predict_volume_slice_by_slice():
    """A pixel-wise model reproduces its own output on every kept slice; skipped slices stay 0."""
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (20, 24, 5), dtype=np.uint8)
    keep = np.zeros_like(volume, bool)
    keep[:, :, 1:4] = True
    prob = predict_volume(_Identity(), volume, roi=16, keep=keep)
    expected = torch.sigmoid(10 * (torch.from_numpy(volume).float() / 255 - 0.5)).numpy()
    assert prob.shape == volume.shape and prob.dtype == np.float32
    assert np.allclose(prob[:, :, 1:4], expected[:, :, 1:4], atol=1e-6) and (prob[:, :, [0, 4]] == 0).all()
