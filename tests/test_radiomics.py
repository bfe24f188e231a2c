"""Hand-crafted features: known values on synthetic images, every channel used, caching, PyRadiomics regions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import toy_imageset
from dlmi import radiomics as R

N_GLCM_H = 28 * 27  # horizontal (or vertical) neighbour pairs at distance 1 in a 28 x 28 patch
N_GLCM_D = 27 * 27  # diagonal pairs


def checkerboard(size: int = 28) -> np.ndarray:
    """One-pixel black/white checkerboard, ``(size, size)`` uint8 with values 0 and 255."""
    return ((np.add.outer(np.arange(size), np.arange(size)) % 2) * 255).astype(np.uint8)


def random_patches(n: int = 6, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, 28, 28)).astype(np.uint8)


# --------------------------------------------------------------------------- patch features: known values


def test_constant_patch_has_no_spread_and_no_texture():
    x = np.full((1, 1, 28, 28), 100, np.uint8)
    f = R.patch_features(x, n_jobs=1).iloc[0]
    assert f["grey_firstorder_mean"] == 100 and f["grey_firstorder_median"] == 100
    for name in ("std", "range", "iqr", "mad", "entropy", "skewness", "kurtosis"):
        assert f[f"grey_firstorder_{name}"] == 0, name
    assert f["grey_firstorder_uniformity"] == 1
    assert f["grey_firstorder_energy"] == 100**2 * 28 * 28
    for d in R.GLCM_DISTANCES:
        assert f[f"grey_glcm_contrast_d{d}"] == 0 and f[f"grey_glcm_dissimilarity_d{d}"] == 0
        assert f[f"grey_glcm_homogeneity_d{d}"] == 1 and f[f"grey_glcm_energy_d{d}"] == 1
        assert f[f"grey_glcm_correlation_d{d}"] == 1  # skimage's convention for a constant image
    # every neighbour is >= the centre: all 8 bits set, uniform code 8
    assert f["grey_lbp_8"] == 1 and f[[f"grey_lbp_{k}" for k in range(10)]].sum() == 1


def test_checkerboard_known_values():
    """Neighbours along rows and columns always differ by 31 levels, diagonal ones never."""
    f = R.patch_features(checkerboard()[None, None], n_jobs=1).iloc[0]
    assert f["grey_firstorder_mean"] == pytest.approx(127.5)
    assert f["grey_firstorder_std"] == pytest.approx(127.5)
    assert f["grey_firstorder_entropy"] == pytest.approx(1.0)  # two equally likely values: 1 bit
    assert f["grey_firstorder_uniformity"] == pytest.approx(0.5)
    assert f["grey_firstorder_skewness"] == pytest.approx(0.0, abs=1e-12)
    assert f["grey_firstorder_kurtosis"] == pytest.approx(1.0)  # Pearson kurtosis of two spikes
    differing = 2 * N_GLCM_H / (2 * N_GLCM_H + 2 * N_GLCM_D)  # share of pooled pairs that differ
    assert f["grey_glcm_contrast_d1"] == pytest.approx(31**2 * differing)
    assert f["grey_glcm_dissimilarity_d1"] == pytest.approx(31 * differing)
    assert f["grey_glcm_homogeneity_d1"] == pytest.approx(1 - differing + differing / (1 + 31**2))
    # at distance 2 every pair (2 along a row or column; skimage rounds the diagonal to one step) has equal values
    assert f["grey_glcm_contrast_d2"] == 0


def test_lbp_histograms_sum_to_one():
    f = R.patch_features(random_patches(), n_jobs=1)
    for ch in ("red", "green", "blue"):
        hist = f[[f"{ch}_lbp_{k}" for k in range(R.LBP_POINTS + 2)]]
        np.testing.assert_allclose(hist.sum(axis=1), 1.0)
        assert (hist >= 0).all().all()


def test_columns_and_shapes():
    f = R.patch_features(torch.from_numpy(random_patches(n=5)), n_jobs=1)
    assert f.shape == (5, 3 * 38)
    assert list(f.index) == list(range(5))
    assert all(c.split("_")[0] in ("red", "green", "blue") for c in f.columns)
    assert {c.split("_")[1] for c in f.columns} == {"firstorder", "glcm", "lbp"}
    grey = R.patch_features(random_patches(n=5), grey=True, n_jobs=1)
    assert grey.shape == (5, 4 * 38) and "grey_glcm_contrast_d1" in grey.columns


def test_every_channel_is_used():
    """Changing only the blue channel changes only the blue features (and the grey channel made from it)."""
    x = random_patches()
    y = x.copy()
    y[:, 2] = 255 - y[:, 2, ::-1]  # another blue channel: mirrored and inverted
    fx, fy = (R.patch_features(a, grey=True, n_jobs=1) for a in (x, y))
    changed = {c.split("_")[0] for c in fx.columns if not np.allclose(fx[c], fy[c])}
    assert changed == {"blue", "grey"}
    blue = [c for c in fx.columns if c.startswith("blue_")]
    assert not np.allclose(fx[blue], fy[blue])


def test_float_input_matches_uint8():
    x = random_patches(n=3)
    pd.testing.assert_frame_equal(R.patch_features(x / 255.0, n_jobs=1), R.patch_features(x, n_jobs=1))


def test_parallel_equals_serial(monkeypatch):
    monkeypatch.setattr(R, "CHUNK", 4)  # 3 chunks for 10 patches
    x = random_patches(n=10)
    pd.testing.assert_frame_equal(R.patch_features(x, n_jobs=2), R.patch_features(x, n_jobs=1))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((4, 28, 28), np.uint8), "shape"),
        (np.zeros((4, 2, 28, 28), np.uint8), "C = 1 or 3"),
        (np.zeros((0, 3, 28, 28), np.uint8), "empty"),
        (np.zeros((4, 1, 2, 2), np.uint8), "larger"),
        (np.full((2, 1, 28, 28), np.nan, np.float32), "NaN"),
        (np.full((2, 1, 28, 28), 3.0, np.float32), r"\[0, 1\]"),
        (np.zeros((2, 1, 28, 28), np.int16), "uint8"),
        ([[1, 2]], "NumPy"),
    ],
)
def test_patch_input_errors(images, match):
    with pytest.raises((ValueError, TypeError), match=match):
        R.patch_features(images, n_jobs=1)


# --------------------------------------------------------------------------- against PyRadiomics


def test_pyradiomics_agrees_on_first_order():
    """PyRadiomics (whole-patch mask, bins of 8 grey levels) gives the same first-order values."""
    x = random_patches(n=2)
    x[1, 0] = x[1, 0] // 3 + 40  # a narrower histogram, not starting at 0
    fast = R.patch_features(x, n_jobs=1)
    ref = R.pyradiomics_patch_features(x, classes=("firstorder", "glcm"), n_jobs=1)
    pairs = {
        "mean": "Mean", "median": "Median", "p10": "10Percentile", "p90": "90Percentile",
        "iqr": "InterquartileRange", "range": "Range", "mad": "MeanAbsoluteDeviation", "rms": "RootMeanSquared",
        "energy": "Energy", "skewness": "Skewness", "kurtosis": "Kurtosis", "entropy": "Entropy",
        "uniformity": "Uniformity",
    }  # fmt: skip
    for ch in ("red", "green", "blue"):
        for ours, theirs in pairs.items():
            np.testing.assert_allclose(fast[f"{ch}_firstorder_{ours}"], ref[f"{ch}_firstorder_{theirs}"], rtol=1e-9, err_msg=ours)
        np.testing.assert_allclose(fast[f"{ch}_firstorder_std"] ** 2, ref[f"{ch}_firstorder_Variance"], rtol=1e-9)
    # GLCM contrast: PyRadiomics averages the four directions, we pool their counts: close, not equal
    # (both in units of levels of 8 grey values)
    np.testing.assert_allclose(fast["red_glcm_contrast_d1"], ref["red_glcm_Contrast"], rtol=0.02)
    assert len(ref) == 2 and any(c.startswith("blue_glcm_") for c in ref.columns)


# --------------------------------------------------------------------------- cache


def test_cached_patch_features_hits_the_cache(monkeypatch):
    data = toy_imageset(n=40, size=8)
    first = R.cached_patch_features(data, n_jobs=1)
    assert first.attrs["from_cache"] is False and first.attrs["n_images"] == 40 == first.attrs["n_available"]
    assert first.index.name == "image" and list(first.index) == list(range(40))

    def fail(*args, **kwargs):
        raise AssertionError("features recomputed although they were cached")

    monkeypatch.setattr(R, "patch_features", fail)
    second = R.cached_patch_features(data, n_jobs=1)
    assert second.attrs["from_cache"] is True
    pd.testing.assert_frame_equal(first, second)
    assert second.attrs["seconds"] == first.attrs["seconds"]


def test_cached_patch_features_subsets_and_keys():
    data = toy_imageset(n=40, size=8)
    sub = R.cached_patch_features(data, max_images=10, seed=1, n_jobs=1)
    assert len(sub) == 10 and sub.attrs["n_available"] == 40
    assert np.bincount(data.labels[sub.index].numpy()).tolist() == [5, 5]  # stratified
    np.testing.assert_array_equal(sub.index, data.subset_index(10, seed=1))
    whole = R.patch_features(data.images, n_jobs=1)
    np.testing.assert_allclose(sub.to_numpy(), whole.loc[sub.index].to_numpy())
    other = R.cached_patch_features(data, max_images=10, seed=2, n_jobs=1)
    assert other.attrs["path"] != sub.attrs["path"] and not other.attrs["from_cache"]
    changed = toy_imageset(n=40, size=8, seed=5)  # other pixels
    assert R.cached_patch_features(changed, n_jobs=1).attrs["path"] != R.cached_patch_features(data, n_jobs=1).attrs["path"]
    with pytest.raises(TypeError, match="ImageSet"):
        R.cached_patch_features(data.images)


# --------------------------------------------------------------------------- PyRadiomics regions


def ball(shape, centre, radii_mm, spacing) -> np.ndarray:
    """Boolean ellipsoid with semi-axes ``radii_mm`` on a grid of ``spacing`` mm (array axes x, y, z)."""
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij")
    return sum((g / r) ** 2 for g, r in zip(grids, radii_mm)) <= 1


def noise_image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)


def test_sphere_shape_features():
    r = 10.0
    mask = ball((30, 30, 30), (15, 15, 15), (r, r, r), (1, 1, 1))
    f = R.region_features(noise_image(mask.shape), mask, spacing=(1, 1, 1))
    assert f["shape_MeshVolume"] == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)
    assert f["shape_VoxelVolume"] == mask.sum()
    assert f["shape_Maximum3DDiameter"] == pytest.approx(2 * r, rel=0.05)
    assert 0.9 < f["shape_Sphericity"] <= 1.0
    assert {"firstorder_Mean", "glcm_Contrast", "glrlm_RunEntropy", "glszm_ZoneEntropy"} <= set(f)
    assert not any(k.startswith(("original_", "diagnostics")) for k in f)


def test_spacing_follows_the_array_axes():
    """An ellipsoid of 8 voxels radius on 1 x 1.5 x 2 mm voxels is 16, 24 and 32 mm across x, y and z.

    Were the spacing applied in the wrong order, the largest diameter in the x-y plane would be
    32 mm instead of 24 mm.
    """
    spacing, radii = (1.0, 1.5, 2.0), (8.0, 12.0, 16.0)
    shape = (22, 22, 22)
    mask = ball(shape, (11, 11, 11), radii, spacing)
    params = R.load_params()
    params["featureClass"] = {"shape": ["Maximum3DDiameter", "Maximum2DDiameterSlice", "MeshVolume"]}
    f = R.region_features(noise_image(shape), mask, params, spacing=spacing)
    # the voxelised surface lies up to half a voxel (here up to 1 mm) outside the ellipsoid
    assert 2 * radii[2] <= f["shape_Maximum3DDiameter"] <= 2 * radii[2] + 2 * spacing[2]
    assert 2 * radii[1] <= f["shape_Maximum2DDiameterSlice"] <= 2 * radii[1] + 2 * spacing[1]
    assert f["shape_MeshVolume"] == pytest.approx(4 / 3 * math.pi * np.prod(radii), rel=0.1)


def test_nibabel_input_and_silence(capfd):
    nib = pytest.importorskip("nibabel")
    mask = ball((20, 20, 20), (10, 10, 10), (6, 6, 6), (1, 1, 1))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = nib.Nifti1Image(noise_image(mask.shape), affine)
    f = R.region_features(image, nib.Nifti1Image(mask.astype(np.uint8), affine))
    assert f["shape_VoxelVolume"] == pytest.approx(mask.sum() * 8, rel=0.1)  # resampled to 1 mm
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_bin_width_changes_texture():
    """GLCM contrast is measured in bins squared: 4 times wider bins, about 16 times less contrast."""
    mask = ball((24, 24, 24), (12, 12, 12), (9, 9, 9), (1, 1, 1))
    image = noise_image(mask.shape)
    params = R.load_params()
    params["featureClass"] = {"glcm": ["Contrast"]}
    contrast = {}
    for width in (0.1, 0.4):
        params["setting"]["binWidth"] = width
        contrast[width] = R.region_features(image, mask, params, spacing=(1, 1, 1))["glcm_Contrast"]
    assert contrast[0.1] / contrast[0.4] == pytest.approx(16, rel=0.15)
    assert R.load_params()["setting"]["binWidth"] == 0.1  # the file itself is unchanged


def test_region_errors():
    mask = ball((12, 12, 12), (6, 6, 6), (4, 4, 4), (1, 1, 1))
    image = noise_image(mask.shape)
    with pytest.raises(ValueError, match="differs"):
        R.region_features(image, mask[:-1], spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        R.region_features(image, np.zeros_like(mask), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        R.region_features(image, mask)
    bad = image.copy()
    bad[6, 6, 6] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        R.region_features(bad, mask, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="bins"):
        R.region_features(image * 1000, mask, spacing=(1, 1, 1))
    with pytest.raises(FileNotFoundError):
        R.load_params("no-such-file.yaml")


def test_regions_table_normalises_each_sequence():
    """A second sequence that is a linear rescaling of the first has identical features after z-scoring."""
    shape = (26, 26, 26)
    brain = ball(shape, (13, 13, 13), (12, 12, 12), (1, 1, 1))
    a = np.where(brain, noise_image(shape) + 5, 0).astype(np.float32)
    b = np.where(brain, 3 * a + 100, 0).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[ball(shape, (9, 13, 13), (4, 4, 4), (1, 1, 1))] = 1
    labels[ball(shape, (18, 13, 13), (3, 5, 4), (1, 1, 1))] = 2
    table = R.regions_table({"A": a, "B": b}, labels, {"one": 1, "two": (2,), "both": (1, 2)}, spacing=(1, 1, 1))
    assert list(zip(table.region, table.sequence)) == [(r, s) for r in ("one", "two", "both") for s in ("A", "B")]
    features = [c for c in table.columns if c not in ("region", "sequence")]
    for region in ("one", "two", "both"):
        rows = table[table.region == region]
        np.testing.assert_allclose(rows.iloc[0][features].astype(float), rows.iloc[1][features].astype(float), rtol=1e-3, atol=1e-6)
    volumes = table.groupby("region", sort=False)["shape_VoxelVolume"].first()
    assert volumes["both"] == volumes["one"] + volumes["two"]
    raw = R.regions_table({"A": a}, labels, {"one": 1}, spacing=(1, 1, 1), normalise=False)
    assert raw["firstorder_Mean"].iloc[0] == pytest.approx(a[labels == 1].mean(), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        R.regions_table({"A": a[:-1]}, labels, {"one": 1}, spacing=(1, 1, 1))


def test_brats_regions_checks_the_label_convention():
    seg = np.zeros((4, 4, 4), np.uint8)
    seg[0, 0, :3] = [1, 2, 4]
    assert R.brats_regions(seg) == {"necrotic core": (1,), "oedema": (2,), "enhancing tumour": (4,)}
    assert R.brats_regions(seg, composite=True)["whole tumour"] == (1, 2, 4)
    seg[0, 0, 2] = 3  # BraTS 2023 numbering
    with pytest.raises(ValueError, match="2023"):
        R.brats_regions(seg)
    with pytest.raises(ValueError, match="no tumour"):
        R.brats_regions(np.zeros((2, 2, 2), np.uint8))


def test_lesion_components_count_and_size_filter():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[1:4, 1:4, 1:4] = 1  # 27 voxels
    mask[10:12, 10:12, 10:12] = 1  # 8 voxels
    mask[15, 15, 15] = mask[16, 16, 16] = 1  # two voxels touching at a corner
    mask[5, 15, 5] = 1  # a single voxel
    full = R.lesion_components(mask, spacing=(1, 1, 1), min_volume_mm3=1)
    assert full.n_found == 4 and full.n_dropped == 0
    assert full.volumes_mm3.tolist() == [27, 8, 2, 1]
    assert full.regions == {"lesion 1": 1, "lesion 2": 2, "lesion 3": 3, "lesion 4": 4}
    assert (full.labels[1:4, 1:4, 1:4] == 1).all() and full.labels[16, 16, 16] == 3
    faces = R.lesion_components(mask, spacing=(1, 1, 1), min_volume_mm3=1, connectivity=1)
    assert faces.n_found == 5  # the corner-touching pair splits
    kept = R.lesion_components(mask, spacing=(0.5, 0.5, 0.5), min_volume_mm3=1.0)  # voxels of 0.125 mm³
    assert kept.n_found == 4 and kept.n_dropped == 2 and kept.dropped_mm3 == pytest.approx(3 * 0.125)
    assert len(kept.regions) == 2 and (kept.labels[15:17, 15:17, 15:17] == 0).all()
    with pytest.raises(ValueError, match="spacing"):
        R.lesion_components(mask)
