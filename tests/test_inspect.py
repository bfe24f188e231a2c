"""Tests of dlmi.inspect on tiny synthetic sets with planted duplicates and known statistics,
plus a few checks on the real MedMNIST copies (``shared_data``)."""

from __future__ import annotations

import time

import imagehash
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.color import rgb2hed

from conftest import require
from dlmi import inspect
from dlmi.data import ImageSet, load_medmnist

# --------------------------------------------------------------------------- synthetic data


def smooth_images(n: int, seed: int, channels: int = 1, size: int = 28) -> np.ndarray:
    """``n`` unrelated smooth random uint8 images ``(n, channels, size, size)`` using the full 0-255 range."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=(n, channels, size, size)), sigma=(0, 0, 2.5, 2.5))
    lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
    return np.round((x - lo) / (hi - lo) * 230 + 10).astype(np.uint8)


def make_set(images: np.ndarray, labels, split: str, n_classes: int = 2) -> ImageSet:
    """An ImageSet around given uint8 images and labels."""
    classes = tuple(f"c{i}" for i in range(n_classes))
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.as_tensor(labels, dtype=torch.int64),
                    classes, "multi-class", "toy", split, "synthetic")  # fmt: skip


def slight_copy(image: np.ndarray, seed: int) -> np.ndarray:
    """A near duplicate: brightness +8 and Gaussian noise of sd 2 grey levels."""
    rng = np.random.default_rng(seed)
    return np.clip(image.astype(float) + 8 + rng.normal(0, 2, image.shape), 0, 255).round().astype(np.uint8)


@pytest.fixture
def planted():
    """train/val/test with planted copies.

    Exact: train 0 == train 5; train 3 == val 2 == test 1 (test 1 labelled differently).
    Near (not exact): val 4 is a slight copy of train 7; test 3 is a slight copy of test 0.
    Everything else is an unrelated smooth random image.
    """
    train = smooth_images(10, seed=1)
    val = smooth_images(6, seed=2)
    test = smooth_images(5, seed=3)
    train[5] = train[0]
    val[2] = train[3]
    test[1] = train[3]
    val[4] = slight_copy(train[7], seed=4)
    test[3] = slight_copy(test[0], seed=5)
    y_train = np.arange(10) % 2
    y_val = np.arange(6) % 2
    y_test = np.arange(5) % 2
    y_train[5] = y_train[0]
    y_val[2] = y_train[3]  # same label as its copy in train
    y_test[1] = 1 - y_train[3]  # conflicting label
    return [make_set(train, y_train, "train"), make_set(val, y_val, "val"), make_set(test, y_test, "test")]


def as_pairs(table: pd.DataFrame) -> set[tuple]:
    return set(zip(table["split_a"], table["index_a"], table["split_b"], table["index_b"]))


# --------------------------------------------------------------------------- exact duplicates


def test_checksums_equal_for_identical_images(planted):
    train = planted[0]
    sums = inspect.checksums(train)
    assert sums.shape == (10,) and all(len(s) == 32 for s in sums)
    assert sums[0] == sums[5]
    assert len(set(sums)) == 9
    assert inspect.checksums(train.images[:1].numpy())[0] == sums[0]  # arrays and tensors alike


def test_exact_duplicates_within_and_across_splits(planted):
    pairs = inspect.exact_duplicates(planted)
    assert list(pairs.columns) == inspect.PAIR_COLUMNS
    assert as_pairs(pairs) == {("train", 0, "train", 5), ("train", 3, "val", 2), ("train", 3, "test", 1), ("val", 2, "test", 1)}
    assert (pairs["distance"] == 0).all() and pairs["exact"].all()
    conflicts = as_pairs(pairs[~pairs["same_label"]])
    assert conflicts == {("train", 3, "test", 1), ("val", 2, "test", 1)}


def test_pair_counts(planted):
    counts = inspect.pair_counts(inspect.exact_duplicates(planted))
    assert list(counts.index) == ["train-train", "train-val", "train-test", "val-val", "val-test", "test-test"]
    assert counts.loc["train-train"].tolist() == [1, 2, 0]  # one pair, two images, no conflict
    assert counts.loc["train-val"].tolist() == [1, 1, 0]  # one val image has a copy in train
    assert counts.loc["train-test"].tolist() == [1, 1, 1]
    assert counts.loc["val-test"].tolist() == [1, 1, 1]
    assert counts.loc["test-test"].tolist() == [0, 0, 0]


def test_no_duplicates_gives_empty_table():
    sets = [make_set(smooth_images(4, seed=9), [0, 1, 0, 1], "train"), make_set(smooth_images(3, seed=8), [0, 1, 0], "test")]
    pairs = inspect.exact_duplicates(sets)
    assert len(pairs) == 0 and list(pairs.columns) == inspect.PAIR_COLUMNS
    counts = inspect.pair_counts(pairs, splits=("train", "test"))
    assert counts.to_numpy().sum() == 0 and list(counts.index) == ["train-train", "train-test", "test-test"]


def test_exact_duplicates_groups_of_many():
    """k identical images give k (k - 1) / 2 pairs."""
    x = np.repeat(smooth_images(1, seed=0), 5, axis=0)
    pairs = inspect.exact_duplicates(make_set(x, [0] * 5, "train"))
    assert len(pairs) == 10


# --------------------------------------------------------------------------- hashes and near duplicates


def test_perceptual_hashes_match_imagehash():
    grey = smooth_images(3, seed=0)
    rgb = smooth_images(3, seed=1, channels=3)
    for x, to_pil in [(grey, lambda im: Image.fromarray(im[0])), (rgb, lambda im: Image.fromarray(np.moveaxis(im, 0, -1)))]:
        ours = inspect.perceptual_hashes(x)
        assert ours.dtype == np.uint64
        theirs = [imagehash.phash(to_pil(im)) for im in x]
        assert [int(h) for h in ours] == [int(str(h), 16) for h in theirs]
        assert inspect.hamming(ours[0], ours[1]) == theirs[0] - theirs[1]


def test_hamming_by_hand():
    a = np.array([0b1011, 0, 2**64 - 1], dtype=np.uint64)
    b = np.array([0, 0, 0], dtype=np.uint64)
    assert inspect.hamming(a, b).tolist() == [3, 0, 64]


def brute_hamming_pairs(h: np.ndarray, t: int) -> set[tuple[int, int, int]]:
    d = inspect.hamming(h[:, None], h[None, :])
    i, j = np.nonzero(np.triu(d <= t, k=1))
    return set(zip(i.tolist(), j.tolist(), d[i, j].tolist()))


@pytest.mark.parametrize("threshold", [0, 1, 3, 4, 8])
def test_hamming_pairs_equals_brute_force(threshold):
    """The pigeonhole bucketing finds exactly the pairs that comparing all pairs finds."""
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, size=300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300).astype(np.uint64)
    flips = [base[k] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, size=k % 7, replace=False))) for k in range(60)]
    h = np.concatenate([base, np.array(flips, dtype=np.uint64), base[:5]])  # near copies and exact copies
    i, j, d = inspect.hamming_pairs(h, threshold)
    assert (i < j).all()
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == brute_hamming_pairs(h, threshold)


def test_hamming_pairs_many_equal_hashes():
    h = np.array([7] * 40 + [8], dtype=np.uint64)
    i, j, d = inspect.hamming_pairs(h, 0)
    assert len(i) == 40 * 39 // 2 and (d == 0).all()


def test_pixel_embedding_ignores_brightness_and_contrast():
    x = smooth_images(2, seed=0).astype(float)
    brighter = np.clip((x - x.mean()) * 0.8 + x.mean() + 10, 0, 255).round().astype(np.uint8)
    e, e2 = inspect.pixel_embedding(x.astype(np.uint8)), inspect.pixel_embedding(brighter)
    assert e.shape == (2, 14 * 14) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert 1 - (e * e2).sum(1).min() < 1e-3
    flat = inspect.pixel_embedding(np.full((1, 3, 28, 28), 77, np.uint8))
    assert flat.shape == (1, 3 * 14 * 14) and not flat.any()


def test_cosine_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(200, 8))
    e[100:110] = e[:10] + rng.normal(0, 0.05, size=(10, 8))
    i, j, d = inspect.cosine_pairs(e, 0.02, chunk=37)  # a chunk that does not divide 200
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    full = 1 - u @ u.T
    bi, bj = np.nonzero(np.triu(full <= 0.02, k=1))
    assert list(zip(i, j)) == list(zip(bi, bj))
    np.testing.assert_allclose(d, full[bi, bj], atol=1e-5)


@pytest.mark.parametrize("method", ["phash", "pixels"])
def test_near_duplicates_find_planted_copies(planted, method):
    pairs = inspect.near_duplicates(planted, method=method)
    found = as_pairs(pairs)
    assert {("train", 7, "val", 4), ("test", 0, "test", 3)} <= found
    assert as_pairs(pairs[pairs["exact"]]) == as_pairs(inspect.exact_duplicates(planted))
    assert found == as_pairs(pairs[pairs["exact"]]) | {("train", 7, "val", 4), ("test", 0, "test", 3)}
    assert pairs["distance"].is_monotonic_increasing
    limit = inspect.PHASH_THRESHOLD if method == "phash" else inspect.PIXEL_THRESHOLD
    assert (pairs["distance"] <= limit).all()


def test_near_duplicates_threshold_and_method(planted):
    assert len(inspect.near_duplicates(planted, "phash", threshold=0)) >= 4  # exact copies at least
    with pytest.raises(ValueError, match="method must be"):
        inspect.near_duplicates(planted, method="ssim")
    with pytest.raises(ValueError, match="between 0 and 63"):
        inspect.near_duplicates(planted, "phash", threshold=64)


def test_pair_distances_confirm_candidates(planted):
    pairs = inspect.near_duplicates(planted, "phash")
    d = inspect.pair_distances(planted, pairs, method="pixels")
    assert d.shape == (len(pairs),) and (d <= inspect.PIXEL_THRESHOLD).all()
    np.testing.assert_array_equal(inspect.pair_distances(planted, pairs, method="phash"), pairs["distance"])


def test_nearest_distances(planted):
    train = planted[0]
    for method in ("pixels", "phash"):
        d = inspect.nearest_distances(train, method)
        assert d.shape == (10,)
        assert d[0] == pytest.approx(0, abs=1e-6) and d[5] == pytest.approx(0, abs=1e-6)
        assert (np.delete(d, [0, 5]) > 0).all()


def test_perturbation_distances():
    table = inspect.perturbation_distances(smooth_images(40, seed=0), seed=0)
    assert list(table.columns) == ["phash median", "phash p95", "phash caught", "pixels median", "pixels p95", "pixels caught"]
    assert table.loc["brightness +15", "pixels caught"] == 1.0
    assert ((table["phash caught"] >= 0) & (table["phash caught"] <= 1)).all()
    assert "noise (sd 5)" in table.index and "shift by 1 px" in table.index
    assert table.loc["brightness +15", "pixels p95"] < 1e-3
    assert table.loc["noise (sd 5)", "phash median"] <= inspect.PHASH_THRESHOLD
    assert table["pixels median"].idxmax() == "shift by 1 px"


# --------------------------------------------------------------------------- class balance


def test_class_balance_and_imbalance_ratio():
    sets = [make_set(smooth_images(40, 0), [0] * 30 + [1] * 10, "train"), make_set(smooth_images(4, 1), [0, 0, 0, 0], "test")]
    balance = inspect.class_balance(sets)
    assert list(balance.columns) == ["split", "class", "count", "share", "uniform", "ratio_to_uniform"]
    train = balance[balance["split"] == "train"].set_index("class")
    assert train["count"].tolist() == [30, 10]
    assert train["share"].tolist() == pytest.approx([0.75, 0.25])
    assert (balance["uniform"] == 0.5).all()
    assert train["ratio_to_uniform"].tolist() == pytest.approx([1.5, 0.5])
    ratio = inspect.imbalance_ratio(balance)
    assert ratio["train"] == pytest.approx(3.0) and ratio["test"] == np.inf


# --------------------------------------------------------------------------- statistics


def test_image_statistics_known_values():
    flat = np.full((1, 1, 8, 8), 100, np.uint8)
    checker = ((np.indices((8, 8)).sum(0) % 2) * 255).astype(np.uint8)[None, None]
    stats = inspect.image_statistics(np.concatenate([flat, checker]))
    assert list(stats.columns) == ["intensity", "contrast", "sharpness"]
    assert stats.loc[0].tolist() == pytest.approx([100, 0, 0])
    assert stats.loc[1, "intensity"] == pytest.approx(127.5)
    assert stats.loc[1, "contrast"] == pytest.approx(127.5)
    assert stats.loc[1, "sharpness"] == pytest.approx((4 * 255) ** 2)  # Laplacian +-1020 everywhere


def test_image_statistics_rgb_colour_and_stain():
    red = np.zeros((1, 3, 6, 6), np.uint8)
    red[:, 0] = 255
    purple = np.stack([np.full((6, 6), 120), np.full((6, 6), 60), np.full((6, 6), 160)]).astype(np.uint8)[None]
    pink = np.stack([np.full((6, 6), 230), np.full((6, 6), 150), np.full((6, 6), 200)]).astype(np.uint8)[None]
    stats = inspect.image_statistics(np.concatenate([red, purple, pink]))
    assert list(stats.columns) == ["intensity", "contrast", "red", "green", "blue", "haematoxylin", "eosin", "sharpness"]
    assert stats.loc[0, ["red", "green", "blue"]].tolist() == pytest.approx([255, 0, 0])
    assert stats.loc[0, "intensity"] == pytest.approx(0.299 * 255, rel=1e-5)
    # purple (haematoxylin-like) has more haematoxylin than light pink (eosin-like)
    assert stats.loc[1, "haematoxylin"] > stats.loc[2, "haematoxylin"]


def test_stain_concentrations_match_skimage():
    x = smooth_images(4, seed=3, channels=3)
    ours = inspect.stain_concentrations(x)
    ref = np.moveaxis(rgb2hed(np.moveaxis(x, 1, -1)), -1, 1)
    assert ours.shape == (4, 3, 28, 28)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    with pytest.raises(ValueError, match="RGB"):
        inspect.stain_concentrations(smooth_images(1, seed=0))


def separable_stats(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Class 1 has larger 'signal'; 'noise' is unrelated to the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return pd.DataFrame({"signal": y * 10 + rng.normal(size=n), "noise": rng.normal(size=n)}), y


def test_class_summary():
    stats, y = separable_stats()
    summary = inspect.class_summary(stats, y, ["a", "b"])
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["b", "signal"] - summary.loc["a", "signal"] == pytest.approx(10, abs=1)


def test_pairwise_auc_and_direction():
    stats, y = separable_stats()
    table = inspect.pairwise_auc(stats, y, ["a", "b"])
    row = table.set_index("feature").loc["signal"]
    assert row["auc"] == pytest.approx(1.0) and row["higher"] == "b"
    assert 0.5 <= table.set_index("feature").loc["noise", "auc"] < 0.65
    # a "test centre" where the relation is reversed: the rule learned on the first set fails
    reversed_stats = stats.assign(signal=-stats["signal"])
    there = inspect.pairwise_auc(reversed_stats, y, ["a", "b"], direction=table).set_index("feature")
    assert there.loc["signal", "auc"] == pytest.approx(0.0) and there.loc["signal", "higher"] == "b"


def test_pairwise_auc_ties_count_half():
    stats = pd.DataFrame({"f": [1.0, 1.0, 1.0, 1.0]})
    assert inspect.pairwise_auc(stats, np.array([0, 0, 1, 1]), ["a", "b"])["auc"].iloc[0] == pytest.approx(0.5)


def test_feature_scores():
    stats, y = separable_stats()
    scores = inspect.feature_scores(stats, y, seed=0)
    assert list(scores.index) == ["signal", "noise", "all statistics"]
    assert list(scores.columns) == ["balanced accuracy", "chance", "AUC"]
    assert scores.loc["signal", "balanced accuracy"] > 0.95 and scores.loc["signal", "AUC"] > 0.95
    assert scores.loc["noise", "AUC"] < 0.65
    assert (scores["chance"] == 0.5).all()
    custom = inspect.feature_scores(stats, y, groups={"both": ["signal", "noise"]})
    assert list(custom.index) == ["both"]
    pd.testing.assert_frame_equal(scores, inspect.feature_scores(stats, y, seed=0))  # deterministic


def test_standardized_mean_difference_by_hand():
    a = pd.DataFrame({"x": [0.0, 2.0], "c": [1.0, 1.0]})
    b = pd.DataFrame({"x": [2.0, 4.0], "c": [1.0, 1.0]})
    smd = inspect.standardized_mean_difference(a, b)
    assert smd["x"] == pytest.approx(2 / np.sqrt(2))
    assert smd["c"] == 0.0


def test_domain_auc_same_and_shifted_sources():
    rng = np.random.default_rng(0)
    a = pd.DataFrame(rng.normal(size=(300, 3)), columns=list("xyz"))
    same = pd.DataFrame(rng.normal(size=(300, 3)), columns=list("xyz"))
    shifted = same.assign(x=same["x"] + 3)
    assert abs(inspect.domain_auc(a, same) - 0.5) < 0.1
    assert inspect.domain_auc(a, shifted) > 0.95


def test_source_shift_per_class():
    rng = np.random.default_rng(0)
    ya, yb = np.arange(200) % 2, np.arange(100) % 2
    a = pd.DataFrame({"x": rng.normal(size=200) + 5 * ya, "y": rng.normal(size=200)})
    # class 0 images of source b are shifted in x; class 1 are not
    b = pd.DataFrame({"x": rng.normal(size=100) + 5 * yb + 2 * (yb == 0), "y": rng.normal(size=100)})
    table = inspect.source_shift(a, b, ya, yb, ["a", "b"])
    assert list(table.index) == ["all images", "a", "b"]
    assert {"n_a", "n_b", "domain AUC", "max |SMD|", "SMD x", "SMD y"} <= set(table.columns)
    assert table.loc["a", "n_a"] == 100 and table.loc["b", "n_b"] == 50
    assert table.loc["a", "domain AUC"] > 0.85 and table.loc["b", "domain AUC"] < 0.7
    assert table.loc["a", "SMD x"] > 1.5
    with pytest.raises(ValueError, match="together"):
        inspect.source_shift(a, b, ya)


def test_channel_histograms():
    x = np.zeros((2, 3, 4, 4), np.uint8)
    x[:, 1] = 255
    x[0, 2, :2] = 128
    h = inspect.channel_histograms(x, bins=4)
    assert h.shape == (3, 4)
    np.testing.assert_allclose(h.sum(1), 1.0)
    assert h[0].tolist() == [1, 0, 0, 0] and h[1].tolist() == [0, 0, 0, 1]
    assert h[2].tolist() == pytest.approx([0.75, 0, 0.25, 0])


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors(planted):
    empty = make_set(np.zeros((0, 1, 28, 28), np.uint8), [], "train")
    with pytest.raises(ValueError, match="empty"):
        inspect.exact_duplicates([empty])
    with pytest.raises(ValueError, match="no splits"):
        inspect.exact_duplicates([])
    rgb = make_set(smooth_images(3, 0, channels=3), [0, 1, 0], "test")
    with pytest.raises(ValueError, match="same image shape"):
        inspect.exact_duplicates([planted[0], rgb])
    with pytest.raises(ValueError, match="distinct"):
        inspect.exact_duplicates([planted[0], planted[0]])
    with pytest.raises(TypeError, match="uint8"):
        inspect.image_statistics(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        inspect.checksums(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        inspect.perceptual_hashes(np.zeros((2, 1, 4, 8, 8), np.uint8))  # 3D images
    with pytest.raises(ValueError, match="NaN"):
        inspect.feature_scores(pd.DataFrame({"f": [1.0, np.nan, 2.0, 3.0]}), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="labels"):
        inspect.class_summary(pd.DataFrame({"f": [1.0, 2.0]}), np.array([0, 1, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="same statistics"):
        inspect.domain_auc(pd.DataFrame({"f": np.arange(10.0)}), pd.DataFrame({"g": np.arange(10.0)}))
    with pytest.raises(TypeError, match="uint64"):
        inspect.hamming_pairs(np.arange(5), 2)
    with pytest.raises(ValueError, match="lacks columns"):
        inspect.pair_counts(pd.DataFrame({"split_a": []}))


def test_errors_are_one_line(planted):
    """Every error message is a single line that says what to do."""
    with pytest.raises(ValueError) as err:
        inspect.exact_duplicates([planted[0], make_set(smooth_images(3, 0, channels=3), [0, 1, 0], "test")])
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- real data


def test_real_exact_duplicates(shared_data):
    """PneumoniaMNIST repeats images within and across splits; BreastMNIST has one conflicting train-test copy."""
    require(shared_data, "medmnist/pneumoniamnist.npz", "medmnist/breastmnist.npz")
    pneumonia = [load_medmnist("pneumoniamnist", s) for s in ("train", "val", "test")]
    counts = inspect.pair_counts(inspect.exact_duplicates(pneumonia))
    assert counts.loc["train-train", "pairs"] == 18
    assert counts.loc["train-val", "pairs"] == 10 and counts.loc["train-val", "images"] == 8
    assert counts.loc["train-test", "pairs"] == 0 and counts.loc["test-test", "pairs"] == 3
    breast = [load_medmnist("breastmnist", s) for s in ("train", "val", "test")]
    pairs = inspect.exact_duplicates(breast)
    assert len(pairs) == 1 and pairs.loc[0, "split_b"] == "test" and not pairs.loc[0, "same_label"]


def test_real_breastmnist_near_duplicates_cross_splits(shared_data):
    """A third of BreastMNIST's test images have a near copy (pixel correlation >= 0.98) in training."""
    require(shared_data, "medmnist/breastmnist.npz")
    breast = [load_medmnist("breastmnist", s) for s in ("train", "val", "test")]
    counts = inspect.pair_counts(inspect.near_duplicates(breast, "pixels"))
    assert 40 <= counts.loc["train-test", "images"] <= 70


def test_real_pathmnist_speed_and_shift(shared_data):
    """Hashing and bucketing all 42,185 PathMNIST images is fast; val looks like train, test does not."""
    require(shared_data, "medmnist/pathmnist.npz")
    path = [load_medmnist("pathmnist", s) for s in ("train", "val", "test")]
    start = time.perf_counter()
    hashes = np.concatenate([inspect.perceptual_hashes(s) for s in path])
    inspect.hamming_pairs(hashes, inspect.PHASH_THRESHOLD)
    assert time.perf_counter() - start < 30
    assert len(inspect.exact_duplicates(path)) == 0
    stats = {s.split: inspect.image_statistics(s.subset(2000)) for s in path}
    assert abs(inspect.domain_auc(stats["train"], stats["val"]) - 0.5) < 0.05
    assert inspect.domain_auc(stats["train"], stats["test"]) > 0.75
