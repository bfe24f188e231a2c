"""Exploratory data analysis of image-classification sets: duplicates, balance, confounders, shift.

Every function takes whole splits (:class:`~dlmi.data.ImageSet`) or image arrays and returns a
tidy ``pandas`` table or a NumPy array; the figures that go with them are in :mod:`dlmi.plots`.

Duplicates
    :func:`checksums` (one MD5 per image) finds byte-identical images with
    :func:`exact_duplicates`. :func:`near_duplicates` finds images that are *almost* identical,
    either by a 64-bit perceptual hash (:func:`perceptual_hashes`, searched with the pigeonhole
    bucketing of :func:`hamming_pairs`) or by the correlation of downsampled pixels
    (:func:`pixel_embedding`, searched with :func:`cosine_pairs`). :func:`pair_distances`
    re-measures candidate pairs by the other measure, :func:`pair_counts` counts pairs per pair
    of splits (a pair that crosses into the test split is leakage), and
    :func:`perturbation_distances` and :func:`nearest_distances` help to choose thresholds.
Balance
    :func:`class_balance` and :func:`imbalance_ratio`.
Confounders
    :func:`image_statistics` (intensity, contrast, colour, H&E stain from
    :func:`stain_concentrations`, sharpness per image),
    :func:`class_summary`, :func:`pairwise_auc` and :func:`feature_scores` (how well one simple
    statistic alone predicts the class).
Source shift
    :func:`standardized_mean_difference`, :func:`domain_auc` and :func:`source_shift` (can a
    classifier tell two splits apart from simple statistics?), :func:`channel_histograms`.

Images are ``uint8`` of shape ``(N, C, H, W)`` with ``C`` 1 (greyscale) or 3 (RGB), as in
:class:`~dlmi.data.ImageSet`; tensors and NumPy arrays are both accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dlmi.data import ImageSet

__all__ = [
    "PHASH_THRESHOLD",
    "PIXEL_THRESHOLD",
    "channel_histograms",
    "checksums",
    "class_balance",
    "class_summary",
    "cosine_pairs",
    "domain_auc",
    "exact_duplicates",
    "feature_scores",
    "hamming",
    "hamming_pairs",
    "image_statistics",
    "imbalance_ratio",
    "near_duplicates",
    "nearest_distances",
    "pair_counts",
    "pair_distances",
    "pairwise_auc",
    "perceptual_hashes",
    "perturbation_distances",
    "pixel_embedding",
    "source_shift",
    "stain_concentrations",
    "standardized_mean_difference",
]

#: Near duplicates by perceptual hash: at most this many of the 64 bits differ. Copies of an
#: image with a brightness or contrast change or a slight blur nearly always stay within 4 bits,
#: noisy copies (sd 5 grey levels) mostly do (:func:`perturbation_distances`); two unrelated
#: images differ in about 32 bits. The distance between two pHashes is always even (each hash
#: has 32 bits set), so 4 means "at most two coefficients changed sides of the median". A wider
#: threshold makes the pigeonhole blocks of :func:`hamming_pairs` shorter and their buckets fuller:
#: 6 bits takes about 25 times longer than 4 on PathMNIST.
PHASH_THRESHOLD = 4

#: Near duplicates by pixels: cosine distance of :func:`pixel_embedding` at most 0.02, i.e.
#: the two downsampled images have a Pearson correlation of at least 0.98. Noisy, brightened,
#: contrast-changed or slightly blurred copies of 28 x 28 MedMNIST images stay below it, while
#: the nearest *other* chest X-ray is typically at 0.05 to 0.1.
PIXEL_THRESHOLD = 0.02

PAIR_COLUMNS = ["split_a", "index_a", "split_b", "index_b", "label_a", "label_b", "distance", "exact", "same_label"]

ImagesLike = ImageSet | torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- input checks


def _as_images(images: ImagesLike, what: str = "images") -> np.ndarray:
    """Check and return ``uint8`` images as a NumPy ``(N, C, H, W)`` array (no copy when possible)."""
    if isinstance(images, ImageSet):
        what = f"{images.name} {images.split} images"
        images = images.images
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{what} must be a torch.Tensor, a NumPy array or an ImageSet, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{what} must have shape (N, C, H, W) with C = 1 or 3 (2D images), got {images.shape}")
    if images.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8 (0-255) as loaded by dlmi.data, got {images.dtype}")
    if len(images) == 0:
        raise ValueError(f"{what} is empty: there is nothing to inspect")
    return images


def _check_sets(sets: Sequence[ImageSet] | ImageSet) -> list[ImageSet]:
    """Check that the splits are non-empty ImageSets with distinct names and one image shape."""
    sets = [sets] if isinstance(sets, ImageSet) else list(sets)
    if not sets:
        raise ValueError("no splits given: pass a list of ImageSets, e.g. [train, val, test]")
    for s in sets:
        if not isinstance(s, ImageSet):
            raise TypeError(f"expected ImageSets, got {type(s).__name__}")
        _as_images(s)
        if len(s.labels) != len(s.images):
            raise ValueError(f"{s.name} {s.split}: {len(s.images)} images but {len(s.labels)} labels")
    names = [s.split for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"split names must be distinct, got {names}")
    shapes = {tuple(s.images.shape[1:]) for s in sets}
    if len(shapes) > 1:
        detail = ", ".join(f"{s.split} {tuple(s.images.shape[1:])}" for s in sets)
        raise ValueError(f"all splits must have the same image shape (C, H, W); got {detail}")
    return sets


def _as_features(x: pd.DataFrame | np.ndarray, what: str = "features") -> pd.DataFrame:
    """Check a non-empty, finite, numeric feature table and return it as a DataFrame."""
    df = x if isinstance(x, pd.DataFrame) else pd.DataFrame(np.asarray(x))
    if df.ndim != 2 or df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty table (rows = images, columns = statistics), got shape {df.shape}")
    values = df.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"{what} must be numeric, got dtype {values.dtype}")
    if not np.isfinite(values).all():
        bad = [str(c) for c in df.columns if not np.isfinite(df[c].to_numpy(dtype=float)).all()]
        raise ValueError(f"{what} contain NaN or infinite values in column(s) {bad}; drop or fix those images first")
    return df


def _as_labels(labels: torch.Tensor | np.ndarray | Sequence[int], n: int) -> np.ndarray:
    """Check integer class labels of length ``n``."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be one class index per image (1-D), got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{n} rows of statistics but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices, got {y.dtype}")
    return y


# --------------------------------------------------------------------------- hashes and embeddings


def checksums(images: ImagesLike) -> np.ndarray:
    """The MD5 checksum of every image's bytes: equal checksums mean identical images.

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet.

    Returns:
        ``(N,)`` array of 32-character hexadecimal strings.
    """
    x = np.ascontiguousarray(_as_images(images))
    return np.array([hashlib.md5(im.tobytes(), usedforsecurity=False).hexdigest() for im in x])


def perceptual_hashes(images: ImagesLike) -> np.ndarray:
    """The 64-bit perceptual hash (pHash, :func:`imagehash.phash`) of every image.

    pHash converts the image to greyscale, resizes it to 32 x 32, takes the 2-D discrete cosine
    transform and keeps one bit per low-frequency coefficient of the top-left 8 x 8 block: is it
    above their median? Small changes of brightness, contrast, noise or blur rarely flip a bit.
    About 50 microseconds per 28 x 28 image.

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` (C = 1 or 3) or an ImageSet.

    Returns:
        ``(N,)`` ``uint64`` array; bit 63 is the hash's first bit, so ``int(str(imagehash.phash(img)), 16)``
        gives the same number.
    """
    import imagehash
    from PIL import Image

    x = _as_images(images)
    channels_last = x[:, 0] if x.shape[1] == 1 else np.moveaxis(x, 1, -1)
    bits = np.empty((len(x), 64), dtype=bool)
    for i, im in enumerate(channels_last):
        bits[i] = imagehash.phash(Image.fromarray(np.ascontiguousarray(im))).hash.ravel()
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between 64-bit hashes (element-wise, broadcasting).

    Returns:
        ``int`` array of distances 0-64.
    """
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))).astype(int)


def pixel_embedding(images: ImagesLike, size: int = 14) -> np.ndarray:
    """Downsampled, centred, unit-length pixel vectors: their dot product is a correlation.

    Each image is average-pooled to ``size x size`` (which smooths away noise and tiny shifts),
    each channel's mean is subtracted (a brightness offset does not matter) and the vector is
    scaled to unit length (a contrast change does not matter). The cosine distance ``1 - a.b``
    of two embeddings is then ``1 - r``, with ``r`` the Pearson correlation of the pooled images.
    A constant image has no pattern to correlate and is embedded as the zero vector.

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet.
        size: Side length after pooling.

    Returns:
        ``float32`` array ``(N, C * size * size)``.
    """
    x = torch.from_numpy(np.ascontiguousarray(_as_images(images))).float()
    if not 1 <= size <= min(x.shape[-2:]):
        raise ValueError(f"size must be between 1 and the image side {min(x.shape[-2:])}, got {size}")
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, size)
    pooled = pooled - pooled.mean(dim=(2, 3), keepdim=True)
    flat = pooled.flatten(1)
    norm = flat.norm(dim=1, keepdim=True)
    flat = torch.where(norm > 1e-6, flat / norm.clamp_min(1e-6), torch.zeros_like(flat))
    return flat.numpy()


# --------------------------------------------------------------------------- all-pairs searches


def _equal_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``i < j`` with ``values[i] == values[j]`` (vectorised, via one sort)."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    n = len(v)
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    ends = np.r_[starts[1:], n]  # one past each run of equal values
    run_end = np.repeat(ends, ends - starts)  # for every sorted position: where its run ends
    later = run_end - np.arange(n) - 1  # how many equal values follow it
    first = np.repeat(np.arange(n), later)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(later) - later, later)
    second = first + 1 + offset
    i, j = order[first], order[second]
    return np.minimum(i, j), np.maximum(i, j)


def hamming_pairs(hashes: np.ndarray, threshold: int = PHASH_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of 64-bit hashes within ``threshold`` bits, without comparing every pair.

    Pigeonhole bucketing: the 64 bits are cut into ``threshold + 1`` blocks. Two hashes that
    differ in at most ``threshold`` bits cannot differ in every block, so they agree *exactly* on
    at least one block. Only hashes that share a block value are compared, which finds every
    pair (no approximation) at a small fraction of the cost of all ``N (N - 1) / 2`` comparisons.

    Args:
        hashes: ``(N,)`` ``uint64`` hashes, e.g. from :func:`perceptual_hashes`.
        threshold: Largest Hamming distance reported, 0-63.

    Returns:
        ``(i, j, d)``: index arrays with ``i < j`` and their distances, sorted by ``(i, j)``.
    """
    h = np.asarray(hashes)
    if h.ndim != 1 or len(h) == 0:
        raise ValueError(f"hashes must be a non-empty 1-D array, got shape {h.shape}")
    if h.dtype != np.uint64:
        raise TypeError(f"hashes must be uint64 (as from perceptual_hashes), got {h.dtype}")
    if not 0 <= int(threshold) <= 63 or int(threshold) != threshold:
        raise ValueError(f"threshold must be an integer number of bits between 0 and 63, got {threshold}")
    t, n = int(threshold), len(h)
    edges = np.linspace(0, 64, t + 2).round().astype(int)
    keys = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        i, j = _equal_pairs((h >> np.uint64(lo)) & mask)
        keys.append(i.astype(np.int64) * n + j)
    key = np.unique(np.concatenate(keys))
    i, j = key // n, key % n
    d = hamming(h[i], h[j])
    keep = d <= t
    return i[keep], j[keep], d[keep]


def cosine_pairs(
    embeddings: np.ndarray, threshold: float = PIXEL_THRESHOLD, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of rows whose cosine distance is at most ``threshold`` (exact, brute force).

    The rows are scaled to unit length and compared block by block with one matrix product per
    block, only above the diagonal (``N (N - 1) / 2`` comparisons in ``float32``): well under a
    second for 5,000 rows of 196 numbers, but growing with ``N**2`` (about 10 s for 42,000 RGB
    images on two CPU cores), where :func:`hamming_pairs` stays fast.

    Args:
        embeddings: ``(N, D)`` array, e.g. from :func:`pixel_embedding`. Zero rows (constant
            images) are at distance 1 from everything.
        threshold: Largest cosine distance reported (0 = same direction, 1 = orthogonal).
        chunk: Rows per block (memory: ``chunk * N`` floats).

    Returns:
        ``(i, j, d)``: index arrays with ``i < j`` and their distances, sorted by ``(i, j)``.
    """
    e = _as_features(embeddings, "embeddings").to_numpy().astype(np.float32)
    if not 0 <= threshold <= 2:
        raise ValueError(f"a cosine distance lies between 0 and 2, got threshold {threshold}")
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    e = np.divide(e, norm, out=np.zeros_like(e), where=norm > 1e-12)
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(e), chunk):
        block = e[start : start + chunk]
        dist = 1.0 - block @ e[start:].T  # columns: rows start, start + 1, ...
        dist[np.tril_indices(len(block))] = np.inf  # keep j > i only
        a, b = np.nonzero(dist <= threshold)
        found_i.append(start + a)
        found_j.append(start + b)
        found_d.append(np.clip(dist[a, b].astype(float), 0.0, None))
    i, j, d = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)
    order = np.lexsort((j, i))
    return i[order].astype(int), j[order].astype(int), d[order]


def nearest_distances(images: ImagesLike, method: str = "pixels") -> np.ndarray:
    """Distance from every image to its nearest *other* image (all pairs; for sets up to ~10,000).

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet, N >= 2.
        method: ``"pixels"`` (cosine distance of :func:`pixel_embedding`) or ``"phash"`` (bits).

    Returns:
        ``(N,)`` float array.
    """
    x = _as_images(images)
    if len(x) < 2:
        raise ValueError("need at least two images to find nearest neighbours")
    if method == "pixels":
        from sklearn.neighbors import NearestNeighbors

        e = pixel_embedding(x)
        dist, _ = NearestNeighbors(n_neighbors=2, metric="cosine", algorithm="brute").fit(e).kneighbors(e)
        return np.clip(dist[:, 1], 0.0, None)
    if method == "phash":
        h = perceptual_hashes(x)
        out = np.empty(len(h), dtype=float)
        for start in range(0, len(h), 1024):
            d = hamming(h[start : start + 1024, None], h[None, :]).astype(float)
            rows = np.arange(d.shape[0])
            d[rows, start + rows] = np.inf
            out[start : start + 1024] = d.min(1)
        return out
    raise ValueError(f"method must be 'pixels' or 'phash', got {method!r}")


# --------------------------------------------------------------------------- duplicates


def _label_values(labels: torch.Tensor) -> list:
    """Labels as hashable Python values: ints, or tuples for multi-label rows."""
    y = labels.detach().cpu().numpy()
    return y.tolist() if y.ndim == 1 else [tuple(r) for r in y.tolist()]


def _pairs_table(sets: list[ImageSet], i: np.ndarray, j: np.ndarray, d: np.ndarray) -> pd.DataFrame:
    """Global pair indices over the concatenated splits -> the tidy pair table."""
    split_of = np.concatenate([[k] * len(s) for k, s in enumerate(sets)])
    local = np.concatenate([np.arange(len(s)) for s in sets])
    labels = [v for s in sets for v in _label_values(s.labels)]
    names = [s.split for s in sets]
    flat = np.concatenate([s.images.reshape(len(s), -1).numpy() for s in sets]) if len(i) else None
    exact = (flat[i] == flat[j]).all(1) if len(i) else np.zeros(0, bool)
    table = pd.DataFrame(
        {
            "split_a": [names[k] for k in split_of[i]],
            "index_a": local[i].astype(int),
            "split_b": [names[k] for k in split_of[j]],
            "index_b": local[j].astype(int),
            "label_a": [labels[k] for k in i],
            "label_b": [labels[k] for k in j],
            "distance": np.asarray(d, dtype=float),
            "exact": exact.astype(bool),
        },
        columns=PAIR_COLUMNS[:-1],
    )
    table["same_label"] = [a == b for a, b in zip(table["label_a"], table["label_b"])]
    table = table.astype({"same_label": bool})
    return table.sort_values(["distance", "split_a", "index_a", "split_b", "index_b"], kind="stable").reset_index(drop=True)


def exact_duplicates(sets: Sequence[ImageSet] | ImageSet) -> pd.DataFrame:
    """Every pair of byte-identical images, within and across splits.

    Images are grouped by :func:`checksums`; a group of ``k`` identical images gives
    ``k (k - 1) / 2`` pairs. Pairs are ordered so that ``split_a`` comes first in ``sets``.

    Args:
        sets: The splits in order, e.g. ``[train, val, test]`` (distinct ``split`` names, one image shape).

    Returns:
        One row per pair: ``split_a, index_a, split_b, index_b, label_a, label_b, distance`` (0.0),
        ``exact`` (True) and ``same_label`` (False flags conflicting labels).
    """
    sets = _check_sets(sets)
    sums = np.concatenate([checksums(s) for s in sets])
    _, codes = np.unique(sums, return_inverse=True)
    i, j = _equal_pairs(codes)
    order = np.lexsort((j, i))
    return _pairs_table(sets, i[order], j[order], np.zeros(len(i)))


def near_duplicates(
    sets: Sequence[ImageSet] | ImageSet, method: str = "phash", threshold: float | None = None
) -> pd.DataFrame:
    """Every pair of nearly identical images, within and across splits, with its distance.

    Args:
        sets: The splits in order, e.g. ``[train, val, test]``.
        method: ``"phash"``: Hamming distance of :func:`perceptual_hashes` (bits, searched with
            :func:`hamming_pairs`); ``"pixels"``: cosine distance of :func:`pixel_embedding`
            (``1 - correlation``, searched with :func:`cosine_pairs`).
        threshold: Largest distance reported; default :data:`PHASH_THRESHOLD` or :data:`PIXEL_THRESHOLD`.

    Returns:
        The columns of :func:`exact_duplicates`, sorted by distance; ``exact`` marks pairs that
        are also byte-identical.
    """
    sets = _check_sets(sets)
    if method == "phash":
        hashes = np.concatenate([perceptual_hashes(s) for s in sets])
        i, j, d = hamming_pairs(hashes, PHASH_THRESHOLD if threshold is None else threshold)
    elif method == "pixels":
        emb = np.concatenate([pixel_embedding(s) for s in sets])
        i, j, d = cosine_pairs(emb, PIXEL_THRESHOLD if threshold is None else threshold)
    else:
        raise ValueError(f"method must be 'phash' or 'pixels', got {method!r}")
    return _pairs_table(sets, i, j, d)


def pair_counts(pairs: pd.DataFrame, splits: Sequence[str] = ("train", "val", "test")) -> pd.DataFrame:
    """Count duplicate pairs for every pair of splits (within a split and across splits).

    Args:
        pairs: A table from :func:`exact_duplicates` or :func:`near_duplicates`.
        splits: Split names in order; every combination gets a row, zeros included.

    Returns:
        Index ``"train-train"``, ``"train-val"``, ...; columns ``pairs``, ``images`` (distinct
        images of the second split that occur in such a pair: for ``train-test``, the test images
        with a copy in training) and ``conflicting`` (pairs whose labels differ).
    """
    missing = set(PAIR_COLUMNS) - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lacks columns {sorted(missing)}; pass a table from exact_duplicates or near_duplicates")
    rows = {}
    for a_pos, a in enumerate(splits):
        for b in splits[a_pos:]:
            m = ((pairs["split_a"] == a) & (pairs["split_b"] == b)) | ((pairs["split_a"] == b) & (pairs["split_b"] == a))
            sub = pairs[m]
            if a == b:
                images = len(set(sub["index_a"]) | set(sub["index_b"]))
            else:
                images = len(set(sub.loc[sub["split_b"] == b, "index_b"]) | set(sub.loc[sub["split_a"] == b, "index_a"]))
            rows[f"{a}-{b}"] = {"pairs": int(len(sub)), "images": int(images), "conflicting": int((~sub["same_label"]).sum())}
    return pd.DataFrame.from_dict(rows, orient="index")


def pair_distances(sets: Sequence[ImageSet] | ImageSet, pairs: pd.DataFrame, method: str = "pixels") -> np.ndarray:
    """The distance of given pairs by another measure, e.g. to confirm perceptual-hash candidates by pixels.

    Args:
        sets: The splits the pairs refer to (matched by their ``split`` names).
        pairs: A pair table (columns ``split_a, index_a, split_b, index_b``).
        method: ``"pixels"`` (cosine distance of :func:`pixel_embedding`) or ``"phash"`` (bits).

    Returns:
        ``(len(pairs),)`` float array.
    """
    by_split = {s.split: s for s in _check_sets(sets)}
    missing = (set(pairs["split_a"]) | set(pairs["split_b"])) - set(by_split)
    if missing:
        raise ValueError(f"pairs refer to splits {sorted(missing)} that are not in sets {sorted(by_split)}")
    if method not in ("pixels", "phash"):
        raise ValueError(f"method must be 'pixels' or 'phash', got {method!r}")
    if len(pairs) == 0:
        return np.zeros(0)

    def images(side: str) -> np.ndarray:
        return np.stack([by_split[s].images[int(i)].numpy() for s, i in zip(pairs[f"split_{side}"], pairs[f"index_{side}"])])

    a, b = images("a"), images("b")
    if method == "phash":
        return hamming(perceptual_hashes(a), perceptual_hashes(b)).astype(float)
    return np.clip(1.0 - (pixel_embedding(a) * pixel_embedding(b)).sum(1), 0.0, None).astype(float)


def perturbation_distances(
    images: ImagesLike,
    seed: int = 0,
    phash_threshold: int = PHASH_THRESHOLD,
    pixel_threshold: float = PIXEL_THRESHOLD,
) -> pd.DataFrame:
    """How far an altered copy of an image lands from the original, for both near-duplicate measures.

    Each image is copied with Gaussian noise (sd 5 grey levels), brightness +15, contrast x1.2
    (around the image mean), a Gaussian blur (sigma 0.7 px) and a one-pixel shift (edge pixels
    repeated); the distances between originals and copies show what a threshold must tolerate.

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet (a few hundred are enough).
        seed: Seed of the noise.
        phash_threshold, pixel_threshold: The thresholds whose catch is reported.

    Returns:
        Index: the perturbation; columns ``phash median``, ``phash p95`` (bits), ``phash caught``
        (share of copies within ``phash_threshold``), ``pixels median``, ``pixels p95`` (cosine
        distance) and ``pixels caught``.
    """
    from scipy.ndimage import gaussian_filter

    x = _as_images(images).astype(np.float64)
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    shifted = x.copy()
    shifted[..., 1:] = x[..., :-1]
    copies = {
        "noise (sd 5)": x + rng.normal(0.0, 5.0, x.shape),
        "brightness +15": x + 15.0,
        "contrast x1.2": (x - mean) * 1.2 + mean,
        "blur (sigma 0.7 px)": gaussian_filter(x, sigma=(0, 0, 0.7, 0.7)),
        "shift by 1 px": shifted,
    }
    original = x.astype(np.uint8)
    h0, e0 = perceptual_hashes(original), pixel_embedding(original)
    rows = {}
    for name, c in copies.items():
        c = np.clip(np.round(c), 0, 255).astype(np.uint8)
        dh = hamming(h0, perceptual_hashes(c))
        dp = np.clip(1.0 - (e0 * pixel_embedding(c)).sum(1), 0.0, None)
        rows[name] = {
            "phash median": float(np.median(dh)),
            "phash p95": float(np.quantile(dh, 0.95)),
            "phash caught": float(np.mean(dh <= phash_threshold)),
            "pixels median": float(np.median(dp)),
            "pixels p95": float(np.quantile(dp, 0.95)),
            "pixels caught": float(np.mean(dp <= pixel_threshold)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- class balance


def class_balance(sets: Sequence[ImageSet] | ImageSet) -> pd.DataFrame:
    """Images per class and split, with each class's share and the uniform share 1/K.

    Returns:
        A tidy table, one row per (split, class): ``split``, ``class``, ``count``, ``share``
        (of the split), ``uniform`` (1/K) and ``ratio_to_uniform`` (share / uniform).
    """
    sets = _check_sets(sets)
    classes = sets[0].classes
    if any(s.classes != classes for s in sets):
        raise ValueError("all splits must have the same classes")
    rows = []
    for s in sets:
        counts = s.class_counts()
        total = int(counts.sum())
        for c, name in enumerate(classes):
            share = float(counts[c] / total) if total else 0.0
            rows.append({"split": s.split, "class": name, "count": int(counts[c]), "share": share,
                         "uniform": 1.0 / len(classes), "ratio_to_uniform": share * len(classes)})  # fmt: skip
    return pd.DataFrame(rows)


def imbalance_ratio(balance: pd.DataFrame) -> pd.Series:
    """Largest class count divided by the smallest, per split (1.0 = balanced).

    Args:
        balance: A table from :func:`class_balance`.

    Returns:
        Series indexed by split (``inf`` if a class is absent from a split).
    """
    if not {"split", "count"} <= set(balance.columns):
        raise ValueError("balance must be a table from class_balance (columns split, class, count, ...)")
    g = balance.groupby("split", sort=False)["count"]
    ratio = g.max() / g.min().replace(0, np.nan)
    return ratio.fillna(np.inf).astype(float).rename("imbalance ratio")


# --------------------------------------------------------------------------- per-image statistics


def stain_concentrations(images: ImagesLike) -> np.ndarray:
    """Haematoxylin, eosin and DAB concentration of every pixel by colour deconvolution.

    The same computation as :func:`skimage.color.rgb2hed` (Ruifrok and Johnston's method: optical
    density ``log(I) / log(1e-6)`` per channel, times the inverse stain matrix, negatives set to 0),
    vectorised over a whole set with a 256-entry look-up table for the logarithm, in ``float32``.

    Args:
        images: ``uint8`` RGB images ``(N, 3, H, W)`` or an ImageSet.

    Returns:
        ``float32`` array ``(N, 3, H, W)``: channels haematoxylin, eosin, DAB.
    """
    from skimage.color import hed_from_rgb

    x = _as_images(images)
    if x.shape[1] != 3:
        raise ValueError(f"stain separation needs RGB images (N, 3, H, W), got {x.shape[1]} channel(s)")
    lut = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / np.log(1e-6)).astype(np.float32)
    stains = np.tensordot(hed_from_rgb.T.astype(np.float32), lut[x], axes=([1], [1]))  # (3, N, H, W)
    return np.moveaxis(np.maximum(stains, 0.0, out=stains), 0, 1)


def image_statistics(images: ImagesLike) -> pd.DataFrame:
    """Simple per-image statistics that a model could use as a shortcut.

    - ``intensity``: mean grey level (0-255; ITU-R 601 weights for RGB);
    - ``contrast``: standard deviation of the grey levels;
    - ``red``, ``green``, ``blue``: channel means (RGB only);
    - ``haematoxylin``, ``eosin``: mean stain concentrations from colour deconvolution
      (:func:`stain_concentrations`; RGB only; higher = more stain);
    - ``sharpness``: variance of the 4-neighbour Laplacian of the grey image (low = blurred or flat).

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet.

    Returns:
        One row per image.
    """
    x = _as_images(images)
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"images must be at least 3 x 3 pixels for the Laplacian, got {x.shape[-2:]}")
    rgb = x.shape[1] == 3
    xf = x.astype(np.float32)
    grey = np.einsum("c,nchw->nhw", np.array([0.299, 0.587, 0.114], np.float32), xf) if rgb else xf[:, 0]
    lap = grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:] - 4 * grey[:, 1:-1, 1:-1]
    stats = {"intensity": grey.mean(axis=(1, 2)), "contrast": grey.std(axis=(1, 2))}
    if rgb:
        means = xf.mean(axis=(2, 3))
        stats.update(red=means[:, 0], green=means[:, 1], blue=means[:, 2])
        hed = stain_concentrations(x)
        stats.update(haematoxylin=hed[:, 0].mean(axis=(1, 2)), eosin=hed[:, 1].mean(axis=(1, 2)))
    stats["sharpness"] = lap.var(axis=(1, 2))
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in stats.items()})


def class_summary(stats: pd.DataFrame, labels: torch.Tensor | np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Median of every statistic per class (robust to the odd extreme image).

    Returns:
        Index: class names; columns: the statistics.
    """
    df = _as_features(stats, "statistics")
    y = _as_labels(labels, len(df))
    out = df.groupby(y).median()
    return out.reindex(range(len(classes))).set_axis(list(classes), axis=0)


def _auc(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """P(score of b > score of a) + P(tie) / 2, via ranks (the Mann-Whitney U statistic)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([scores_a, scores_b]))
    na, nb = len(scores_a), len(scores_b)
    return float((ranks[na:].sum() - nb * (nb + 1) / 2) / (na * nb))


def pairwise_auc(
    stats: pd.DataFrame,
    labels: torch.Tensor | np.ndarray,
    classes: Sequence[str],
    direction: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """How well each statistic alone separates each pair of classes, as an AUC.

    For classes ``a`` and ``b`` and one statistic, the AUC is the probability that a random
    image of the ``higher`` class has the larger value (ties count half); 0.5 = no separation,
    1.0 = a threshold on this one number separates the two classes perfectly. No model is
    fitted, so there is nothing to cross-validate.

    Args:
        stats: Per-image statistics, e.g. from :func:`image_statistics`.
        labels: Class index per image.
        classes: Class names.
        direction: Optional table from an earlier call (e.g. on the training split). Its
            ``higher`` class is kept, so that the AUC says how well the *rule learned there*
            works here: it falls below 0.5 where the relation is reversed.

    Returns:
        One row per (feature, class pair): ``feature``, ``class_a``, ``class_b``, ``auc`` and
        ``higher``, sorted by decreasing AUC. Without ``direction``, ``higher`` is the class with
        the larger values and ``auc`` lies in 0.5-1.
    """
    df = _as_features(stats, "statistics")
    y = _as_labels(labels, len(df))
    present = [c for c in range(len(classes)) if (y == c).any()]
    if len(present) < 2:
        raise ValueError("need images of at least two classes to compare")
    given = None
    if direction is not None:
        if not {"feature", "class_a", "class_b", "higher"} <= set(direction.columns):
            raise ValueError("direction must be a table from pairwise_auc (columns feature, class_a, class_b, higher)")
        given = direction.set_index(["feature", "class_a", "class_b"])["higher"].to_dict()
    rows = []
    for feature in df.columns:
        v = df[feature].to_numpy()
        for p, a in enumerate(present):
            for b in present[p + 1 :]:
                auc = _auc(v[y == a], v[y == b])  # P(b > a)
                key = (feature, classes[a], classes[b])
                if given is not None and key in given:
                    higher = given[key]
                else:
                    higher = classes[b] if auc >= 0.5 else classes[a]
                oriented = auc if higher == classes[b] else 1.0 - auc
                rows.append({"feature": feature, "class_a": classes[a], "class_b": classes[b],
                             "auc": float(oriented), "higher": higher})  # fmt: skip
    out = pd.DataFrame(rows)
    return out.sort_values("auc", ascending=False, kind="stable").reset_index(drop=True)


def feature_scores(
    stats: pd.DataFrame,
    labels: torch.Tensor | np.ndarray,
    groups: Mapping[str, Sequence[str]] | None = None,
    folds: int = 5,
    max_depth: int = 4,
    seed: int = 0,
) -> pd.DataFrame:
    """How well a few simple statistics alone predict the class, cross-validated.

    A shallow decision tree (``max_depth`` levels, so at most ``2**max_depth`` intervals of one
    statistic) is trained on each group of statistics with stratified ``folds``-fold
    cross-validation; every image is scored by the tree that did not see it.

    Args:
        stats: Per-image statistics, e.g. from :func:`image_statistics`.
        labels: Class index per image.
        groups: ``{name: [columns]}``; default: each column alone, then all columns together.
        folds: Number of cross-validation folds.
        max_depth: Depth of the tree.
        seed: Seed of the fold assignment and the tree.

    Returns:
        Index: group names; columns ``balanced accuracy``, ``chance`` (1/K) and ``AUC``
        (macro one-vs-rest AUC of the predicted probabilities; binary: ordinary AUC).
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    df = _as_features(stats, "statistics")
    y = _as_labels(labels, len(df))
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("need images of at least two classes to predict")
    if np.bincount(y_idx).min() < folds:
        raise ValueError(f"every class needs at least folds={folds} images for cross-validation")
    if groups is None:
        groups = {c: [c] for c in df.columns} | {"all statistics": list(df.columns)}
    unknown = sorted({c for cols in groups.values() for c in cols} - set(df.columns))
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; available: {list(df.columns)}")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = {}
    for name, cols in groups.items():
        tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
        proba = cross_val_predict(tree, df[list(cols)].to_numpy(), y_idx, cv=cv, method="predict_proba")
        auc = roc_auc_score(y_idx, proba[:, 1]) if len(classes) == 2 else roc_auc_score(y_idx, proba, multi_class="ovr")
        rows[name] = {"balanced accuracy": float(balanced_accuracy_score(y_idx, proba.argmax(1))),
                      "chance": 1.0 / len(classes), "AUC": float(auc)}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- source shift


def standardized_mean_difference(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """Per statistic, ``(mean_b - mean_a) / pooled sd``: 0.2 is small, 0.5 medium, 0.8 large (Cohen).

    Args:
        a, b: Per-image statistics of two groups (same columns), e.g. training and test images.

    Returns:
        Series indexed by statistic (0 where both groups are constant).
    """
    a, b = _as_features(a, "statistics of the first group"), _as_features(b, "statistics of the second group")
    if list(a.columns) != list(b.columns):
        raise ValueError(f"both groups need the same statistics, got {list(a.columns)} and {list(b.columns)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least two images in each group for a standard deviation")
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return ((b.mean() - a.mean()) / pooled.replace(0, np.nan)).fillna(0.0).rename("SMD")


def domain_auc(a: pd.DataFrame, b: pd.DataFrame, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated AUC of a classifier that tells group ``a`` from group ``b`` by their statistics.

    0.5: the statistics do not reveal which group (split, centre, scanner) an image came from;
    1.0: they give it away completely. The classifier is a small gradient-boosted tree ensemble
    (50 trees of at most 15 leaves), which also catches differences in combinations of statistics.

    Args:
        a, b: Per-image statistics (same columns), e.g. from :func:`image_statistics`.
        folds: Stratified cross-validation folds.
        seed: Seed of the fold assignment.

    Returns:
        The AUC (0-1).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    a, b = _as_features(a, "statistics of the first group"), _as_features(b, "statistics of the second group")
    if list(a.columns) != list(b.columns):
        raise ValueError(f"both groups need the same statistics, got {list(a.columns)} and {list(b.columns)}")
    if min(len(a), len(b)) < folds:
        raise ValueError(f"each group needs at least folds={folds} images, got {len(a)} and {len(b)}")
    x = np.concatenate([a.to_numpy(), b.to_numpy()])
    d = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    model = HistGradientBoostingClassifier(max_iter=50, max_leaf_nodes=15, early_stopping=False, random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One OpenMP thread: on small tables the boosting is fastest that way, and it cannot stall
    # when other processes keep the CPU cores busy (OpenMP threads wait for each other).
    with threadpool_limits(limits=1, user_api="openmp"):
        p = cross_val_predict(model, x, d, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(d, p))


def source_shift(
    stats_a: pd.DataFrame,
    stats_b: pd.DataFrame,
    labels_a: torch.Tensor | np.ndarray | None = None,
    labels_b: torch.Tensor | np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Shift between two sources: domain AUC and standardised mean differences, overall and per class.

    Two splits can differ because their class mix differs; comparing images *of the same class*
    isolates the shift due to the source (centre, scanner, staining).

    Args:
        stats_a, stats_b: Per-image statistics of the two splits.
        labels_a, labels_b, classes: Optional class labels and names; with them, one row per class
            that has at least ``folds`` images in both splits is added.
        folds, seed: As in :func:`domain_auc`.

    Returns:
        Index ``"all images"`` (and class names); columns ``n_a``, ``n_b``, ``domain AUC``,
        ``max |SMD|`` and one SMD column per statistic.
    """
    a, b = _as_features(stats_a, "statistics of the first group"), _as_features(stats_b, "statistics of the second group")
    groups = {"all images": (np.ones(len(a), bool), np.ones(len(b), bool))}
    if labels_a is not None or labels_b is not None:
        if labels_a is None or labels_b is None or classes is None:
            raise ValueError("give labels_a, labels_b and classes together (or none of them)")
        ya, yb = _as_labels(labels_a, len(a)), _as_labels(labels_b, len(b))
        for c, name in enumerate(classes):
            if (ya == c).sum() >= folds and (yb == c).sum() >= folds:
                groups[name] = (ya == c, yb == c)
    rows = {}
    for name, (ma, mb) in groups.items():
        smd = standardized_mean_difference(a[ma], b[mb])
        rows[name] = {"n_a": int(ma.sum()), "n_b": int(mb.sum()), "domain AUC": domain_auc(a[ma], b[mb], folds, seed),
                      "max |SMD|": float(smd.abs().max()), **{f"SMD {k}": float(v) for k, v in smd.items()}}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def channel_histograms(images: ImagesLike, bins: int = 32) -> np.ndarray:
    """Normalised histogram of every channel's pixel values over a whole set.

    Args:
        images: ``uint8`` images ``(N, C, H, W)`` or an ImageSet.
        bins: Number of equal-width bins over 0-255.

    Returns:
        ``(C, bins)`` densities (each row sums to 1 over the bins).
    """
    x = _as_images(images)
    if not 1 <= bins <= 256:
        raise ValueError(f"bins must be between 1 and 256, got {bins}")
    t = torch.from_numpy(np.ascontiguousarray(x))
    per_value = np.stack([torch.bincount(t[:, c].reshape(-1), minlength=256).numpy() for c in range(x.shape[1])])
    starts = -((-np.arange(bins) * 256) // bins)  # smallest value of each bin: ceil(b * 256 / bins)
    counts = np.add.reduceat(per_value, starts, axis=1).astype(float)
    return counts / counts.sum(axis=1, keepdims=True)
