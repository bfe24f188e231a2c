"""Hand-crafted (radiomics) features: of small 2-D patches, and of regions in 3-D MRI.

Patches (chapter 6, PathMNIST)
    :func:`patch_features` computes, for **every** colour channel of ``(N, C, H, W)`` patches
    (and optionally a grey channel), first-order statistics (vectorised in NumPy), grey-level
    co-occurrence (GLCM) texture (:func:`skimage.feature.graycomatrix`, with the features of
    :func:`skimage.feature.graycoprops` computed for a whole chunk of matrices at once) and a
    uniform local-binary-pattern (LBP) histogram
    (:func:`skimage.feature.local_binary_pattern`), in parallel chunks. Columns are named
    ``<channel>_<family>_<feature>``, e.g. ``red_firstorder_mean``, ``blue_glcm_contrast_d1``,
    ``green_lbp_4``. :func:`cached_patch_features` computes them once per split (or stratified
    subset) and keeps them on disk, keyed by the images' content hash.
    :func:`pyradiomics_patch_features` computes PyRadiomics' 2-D features of a few patches
    (whole-patch mask), to check the fast features against the field's reference library.
Regions in MRI (chapter 6, BraTS and MS lesions)
    :func:`region_features` runs PyRadiomics on one region with the parameter file shipped
    with the package (:data:`DEFAULT_PARAMS`: shape, first-order, GLCM, GLRLM and GLSZM
    features, intensities z-scored within the brain, bins of 0.1 standard deviations);
    :func:`regions_table` makes one row per (region, sequence). :func:`brats_regions` names
    the BraTS sub-regions after checking the label convention, :func:`lesion_components`
    splits a lesion mask into connected lesions, and :func:`normalise_intensities` z-scores a
    volume within the brain.

PyRadiomics reports progress and warnings through the ``radiomics`` logger on stderr; this
module silences it (:func:`_pyradiomics`), so a notebook cell that extracts features prints
nothing unless asked to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:  # imported where used: the parallel workers of patch_features then start without torch
    import torch

    from dlmi.data import ImageSet

__all__ = [
    "BRATS_LABELS",
    "DEFAULT_PARAMS",
    "FIRSTORDER_BIN_WIDTH",
    "GLCM_ANGLES",
    "GLCM_DISTANCES",
    "GLCM_LEVELS",
    "GLCM_PROPERTIES",
    "LBP_POINTS",
    "LBP_RADIUS",
    "MIN_LESION_MM3",
    "LesionComponents",
    "brats_regions",
    "cached_patch_features",
    "lesion_components",
    "load_params",
    "normalise_intensities",
    "patch_features",
    "pyradiomics_patch_features",
    "region_features",
    "regions_table",
]

# --------------------------------------------------------------------------- patch features: settings

#: Width (in grey levels of 0-255) of the histogram bins behind first-order entropy and
#: uniformity: 32 bins, as PyRadiomics with ``binWidth: 8`` on 8-bit images.
FIRSTORDER_BIN_WIDTH = 8
#: Grey levels of the co-occurrence matrices: 0-255 is quantised to 32 levels of 8 grey values.
GLCM_LEVELS = 32
#: Pixel distances of the co-occurrence matrices (one set of features per distance).
GLCM_DISTANCES = (1, 2)
#: Directions of the co-occurrence matrices (0, 45, 90, 135 degrees): their counts are pooled
#: into one matrix per distance, which makes the features (nearly) independent of direction.
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
#: GLCM features, as defined by :func:`skimage.feature.graycoprops`.
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
#: Uniform LBP with 8 neighbours on a circle of radius 1 pixel: codes 0-8 count the neighbours
#: at least as bright as the centre (for "uniform" patterns: edges, corners, spots, flat areas),
#: code 9 collects all non-uniform patterns.
LBP_POINTS, LBP_RADIUS = 8, 1
FIRSTORDER_FEATURES = (
    "mean", "std", "min", "max", "range", "p10", "p25", "median", "p75", "p90", "iqr",
    "mad", "rms", "energy", "skewness", "kurtosis", "entropy", "uniformity",
)  # fmt: skip
CHANNEL_NAMES = {1: ("grey",), 3: ("red", "green", "blue")}
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as dlmi.inspect.image_statistics
CHUNK = 512  # patches per parallel task


def _to_numpy(x):
    """A torch tensor -> NumPy array (anything else unchanged); torch is only looked at if it is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


def _as_patches(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Check 2-D patches and return them as ``uint8`` ``(N, C, H, W)`` (floats in [0, 1] are scaled to 0-255)."""
    images = _to_numpy(images)
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a torch.Tensor or a NumPy array, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] not in CHANNEL_NAMES:
        raise ValueError(f"images must have shape (N, C, H, W) with C = 1 or 3 (2-D patches), got {images.shape}")
    if len(images) == 0:
        raise ValueError("images is empty: there are no patches to describe")
    if min(images.shape[-2:]) <= max(GLCM_DISTANCES):
        raise ValueError(f"patches must be larger than {max(GLCM_DISTANCES)} x {max(GLCM_DISTANCES)} pixels, got {images.shape[-2:]}")
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values; fix or drop those patches first")
        if images.min() < 0 or images.max() > 1:
            raise ValueError(
                f"float images must lie in [0, 1] (they are scaled to 0-255), got [{images.min():.3g}, {images.max():.3g}]"
            )
        return np.rint(images * 255).astype(np.uint8)
    raise TypeError(f"images must be uint8 (0-255) or float in [0, 1], got {images.dtype}")


def _channels(x: np.ndarray, grey: bool) -> dict[str, np.ndarray]:
    """``(N, C, H, W)`` uint8 -> ``{channel name: (N, H, W) uint8}``, every image channel and optionally grey."""
    names = CHANNEL_NAMES[x.shape[1]]
    out = {name: x[:, c] for c, name in enumerate(names)}
    if grey and x.shape[1] == 3:
        out["grey"] = np.rint(np.einsum("c,nchw->nhw", GREY_WEIGHTS, x)).astype(np.uint8)
    return out


def _feature_names(channels: Sequence[str]) -> list[str]:
    names = []
    for ch in channels:
        names += [f"{ch}_firstorder_{f}" for f in FIRSTORDER_FEATURES]
        names += [f"{ch}_glcm_{p}_d{d}" for p in GLCM_PROPERTIES for d in GLCM_DISTANCES]
        names += [f"{ch}_lbp_{k}" for k in range(LBP_POINTS + 2)]
    return names


def _firstorder(x: np.ndarray) -> np.ndarray:
    """First-order statistics of ``(n, H, W)`` uint8 patches, vectorised: ``(n, len(FIRSTORDER_FEATURES))``.

    Definitions follow PyRadiomics: population variance, Pearson skewness and kurtosis (3 for a
    normal distribution; both 0 for a constant patch), entropy in bits and uniformity of a
    histogram with bins :data:`FIRSTORDER_BIN_WIDTH` grey levels wide, energy = sum of squares.
    """
    n = len(x)
    v = x.reshape(n, -1).astype(np.float64)
    mean = v.mean(1)
    dev = v - mean[:, None]
    var = (dev**2).mean(1)
    std = np.sqrt(var)
    safe = np.where(var > 0, var, 1.0)
    skew = np.where(var > 0, (dev**3).mean(1) / safe**1.5, 0.0)
    kurt = np.where(var > 0, (dev**4).mean(1) / safe**2, 0.0)
    p10, p25, p50, p75, p90 = np.percentile(v, [10, 25, 50, 75, 90], axis=1)
    n_bins = 256 // FIRSTORDER_BIN_WIDTH
    bins = x.reshape(n, -1) // FIRSTORDER_BIN_WIDTH + (np.arange(n) * n_bins)[:, None]
    p = np.bincount(bins.ravel(), minlength=n * n_bins).reshape(n, n_bins) / v.shape[1]
    entropy = -(p * np.log2(p, where=p > 0, out=np.zeros_like(p))).sum(1)
    lo, hi = v.min(1), v.max(1)
    columns = {
        "mean": mean, "std": std, "min": lo, "max": hi, "range": hi - lo,
        "p10": p10, "p25": p25, "median": p50, "p75": p75, "p90": p90, "iqr": p75 - p25,
        "mad": np.abs(dev).mean(1), "rms": np.sqrt((v**2).mean(1)), "energy": (v**2).sum(1),
        "skewness": skew, "kurtosis": kurt, "entropy": entropy, "uniformity": (p**2).sum(1),
    }  # fmt: skip
    return np.stack([columns[f] for f in FIRSTORDER_FEATURES], axis=1)


def _glcm(x: np.ndarray) -> np.ndarray:
    """GLCM features of ``(n, H, W)`` uint8 patches: ``(n, len(GLCM_PROPERTIES) * len(GLCM_DISTANCES))``.

    Per patch and distance, the symmetric co-occurrence counts of the four directions of
    :data:`GLCM_ANGLES` (:func:`skimage.feature.graycomatrix`, :data:`GLCM_LEVELS` levels) are
    pooled into one matrix (direction-independent texture); the properties of all matrices of
    the chunk come from one :func:`skimage.feature.graycoprops` call per property.
    """
    from skimage.feature import graycomatrix, graycoprops

    q = x // (256 // GLCM_LEVELS)
    n, nd = len(x), len(GLCM_DISTANCES)
    pooled = np.stack(
        [graycomatrix(p, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS, symmetric=True).sum(3) for p in q]
    ).astype(np.float64)  # (n, L, L, nd)
    stacked = np.moveaxis(pooled, 0, 2).reshape(GLCM_LEVELS, GLCM_LEVELS, n * nd, 1)
    props = [graycoprops(stacked, prop).reshape(n, nd) for prop in GLCM_PROPERTIES]
    return np.concatenate(props, axis=1)  # property-major, then distance, as in _feature_names


def _lbp(x: np.ndarray) -> np.ndarray:
    """Uniform LBP histograms of ``(n, H, W)`` uint8 patches, each summing to 1: ``(n, LBP_POINTS + 2)``.

    Only pixels at least :data:`LBP_RADIUS` from the edge count: skimage would treat the
    neighbours outside the patch as black, which in a 28 x 28 patch would bias one pixel in seven.
    """
    from skimage.feature import local_binary_pattern

    k, r = LBP_POINTS + 2, LBP_RADIUS
    codes = np.stack([local_binary_pattern(p, LBP_POINTS, r, method="uniform")[r:-r, r:-r] for p in x]).astype(np.int64)
    offsets = (np.arange(len(x)) * k)[:, None]
    counts = np.bincount((codes.reshape(len(x), -1) + offsets).ravel(), minlength=len(x) * k)
    return counts.reshape(len(x), k) / codes[0].size


def _chunk_features(channels: dict[str, np.ndarray]) -> np.ndarray:
    """All features of one chunk of patches, channel by channel (in :func:`_feature_names` order)."""
    return np.concatenate([np.concatenate([_firstorder(c), _glcm(c), _lbp(c)], axis=1) for c in channels.values()], axis=1)


def _n_workers(n_jobs: int | None, n_tasks: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = available if n_jobs is None or n_jobs < 0 else max(int(n_jobs), 1)
    return max(1, min(wanted, available, n_tasks))


def patch_features(images: torch.Tensor | np.ndarray, grey: bool = False, n_jobs: int | None = -1) -> pd.DataFrame:
    """Hand-crafted features of 2-D patches, from every channel.

    For each channel (``red``, ``green``, ``blue`` for RGB, ``grey`` for one channel, plus
    ``grey`` = ITU-R 601 luma of RGB when ``grey=True``):

    - ``firstorder``: mean, std, min, max, range, percentiles 10/25/50/75/90, IQR, mean absolute
      deviation, RMS, energy, skewness, kurtosis, entropy and uniformity (see :func:`_firstorder`);
    - ``glcm``: contrast, dissimilarity, homogeneity, energy and correlation of the grey-level
      co-occurrence matrix at each distance of :data:`GLCM_DISTANCES` (suffix ``_d1``, ``_d2``),
      counts pooled over four directions, on 0-255 quantised to :data:`GLCM_LEVELS` levels;
    - ``lbp``: the normalised histogram of uniform local binary patterns (codes 0-9) of the
      pixels whose neighbours all lie inside the patch.

    Args:
        images: ``(N, C, H, W)`` patches, C = 1 or 3, ``uint8`` (0-255) or float in [0, 1].
        grey: Add a grey channel computed from RGB (ignored for one-channel images).
        n_jobs: Parallel worker processes (``-1`` or ``None``: every available core); chunks of
            :data:`CHUNK` patches are spread over them with ``joblib``.

    Returns:
        One row per patch (index ``0..N-1``), columns ``<channel>_<family>_<feature>``, float64.

    Raises:
        ValueError, TypeError: wrong shape, empty input, NaNs, or floats outside [0, 1].
    """
    x = _as_patches(images)
    channels = _channels(x, grey)
    starts = range(0, len(x), CHUNK)
    chunks = [{k: v[s : s + CHUNK] for k, v in channels.items()} for s in starts]
    workers = _n_workers(n_jobs, len(chunks))
    if workers == 1:
        parts = [_chunk_features(c) for c in chunks]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=workers)(delayed(_chunk_features)(c) for c in chunks)
    return pd.DataFrame(np.concatenate(parts), columns=_feature_names(list(channels)))


# --------------------------------------------------------------------------- cache


@lru_cache(maxsize=1)
def _code_hash() -> str:
    """SHA-256 of this module's source and the versions of the libraries that compute the features."""
    import skimage

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(f"skimage {skimage.__version__} numpy {np.__version__}".encode())
    return digest.hexdigest()


def cached_patch_features(
    data: ImageSet, max_images: int | None = None, seed: int = 0, grey: bool = False, n_jobs: int | None = -1
) -> pd.DataFrame:
    """:func:`patch_features` of a split or of a stratified subset of it, computed once and kept on disk.

    The file lives in ``DLMI_CACHE_DIR/radiomics`` under a key made of the chosen images'
    content (:func:`dlmi.data.content_hash`), ``grey`` and the feature code (this module's
    source and library versions): new data or changed code can never return stale features.

    Args:
        data: The split.
        max_images: Keep a class-stratified random subset of this many images
            (:meth:`dlmi.data.ImageSet.subset_index`); ``None``: every image.
        seed: Seed of the subset.
        grey: See :func:`patch_features`.
        n_jobs: See :func:`patch_features`.

    Returns:
        The features, indexed by the chosen images' indices in ``data`` (index name ``"image"``;
        labels are ``data.labels[frame.index]``). ``frame.attrs`` holds ``n_images``,
        ``n_available``, ``n_features``, ``seconds`` (time the features took when first computed),
        ``from_cache`` (whether this call read them from disk) and ``path`` (the cache file).
    """
    import torch

    from dlmi.config import get_settings
    from dlmi.data import ImageSet, content_hash

    if not isinstance(data, ImageSet):
        raise TypeError(f"data must be a dlmi.data.ImageSet, got {type(data).__name__}")
    index = data.subset_index(max_images, seed)
    chosen = data if len(index) == len(data) else ImageSet(
        data.images[torch.from_numpy(index)], data.labels[torch.from_numpy(index)],
        data.classes, data.task, data.name, data.split, data.note,
    )  # fmt: skip
    material = {"data": content_hash(chosen), "grey": grey, "code": _code_hash()}
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
    path = get_settings().cache_dir / "radiomics" / f"{data.name}-{data.split}-{len(index)}-{key}.npz"
    from_cache = path.is_file()
    if from_cache:
        with np.load(path) as npz:
            values, columns, seconds = npz["values"], npz["columns"].tolist(), float(npz["seconds"])
            stored_index = npz["index"]
        if not np.array_equal(stored_index, index):
            raise RuntimeError(f"{path} holds features of other images than those asked for; delete it and run again")
    else:
        start = time.perf_counter()
        frame = patch_features(chosen.images, grey=grey, n_jobs=n_jobs)
        seconds = time.perf_counter() - start
        values, columns = frame.to_numpy(), list(frame.columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        np.savez(tmp, values=values, columns=np.array(columns), index=index, seconds=seconds)
        tmp.replace(path)
    out = pd.DataFrame(values, columns=columns, index=pd.Index(index, name="image"))
    out.attrs.update(
        n_images=len(index), n_available=len(data), n_features=len(columns),
        seconds=seconds, from_cache=from_cache, path=str(path),
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- PyRadiomics

#: The package's PyRadiomics parameter file for MRI regions (see the comments in it).
DEFAULT_PARAMS = Path(__file__).with_name("radiomics_params.yaml")
#: Largest number of grey-level bins a region may be discretised into before
#: :func:`region_features` refuses (texture matrices grow with its square).
MAX_BINS = 1000


def _pyradiomics():
    """Import PyRadiomics with its logger silenced (it would otherwise write to stderr)."""
    import radiomics

    radiomics.setVerbosity(logging.CRITICAL + 10)  # its stderr handler: nothing passes
    logging.getLogger("radiomics").setLevel(logging.CRITICAL + 10)
    return radiomics


def load_params(params: str | os.PathLike | Mapping = DEFAULT_PARAMS) -> dict:
    """A PyRadiomics parameter set as a dict (``imageType``, ``featureClass``, ``setting``).

    Args:
        params: A YAML parameter file (default: the package's) or an already loaded dict (copied).

    Returns:
        A new dict that can be edited, e.g. ``p["setting"]["binWidth"] = 0.2``, and passed back
        to :func:`region_features`.
    """
    if isinstance(params, Mapping):
        return json.loads(json.dumps(params))  # deep copy of plain data
    path = Path(params)
    if not path.is_file():
        raise FileNotFoundError(f"PyRadiomics parameter file {path} does not exist")
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict) or "featureClass" not in loaded:
        raise ValueError(f"{path} is not a PyRadiomics parameter file (no 'featureClass' section)")
    loaded.setdefault("setting", {})
    loaded.setdefault("imageType", {"Original": {}})
    return loaded


def _extractor(params: dict, shape: bool = True):
    """A PyRadiomics feature extractor for a parameter dict (optionally without shape features)."""
    from radiomics import featureextractor

    _pyradiomics()
    p = load_params(params)
    if not shape:
        p["featureClass"].pop("shape", None)
        p["featureClass"].pop("shape2D", None)
    with warnings.catch_warnings():
        # pykwalify loads PyRadiomics' schema extension with the deprecated importlib load_module()
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return featureextractor.RadiomicsFeatureExtractor(p)


def _volume_array(image, what: str) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A nibabel image or array -> (array in voxel order, spacing from the header or None)."""
    image = _to_numpy(image)
    if isinstance(image, np.ndarray):
        return image, None
    if hasattr(image, "dataobj") and hasattr(image, "header"):
        data = np.asarray(image.dataobj)
        return data, tuple(float(z) for z in image.header.get_zooms()[: data.ndim])
    raise TypeError(f"{what} must be a NumPy array or a nibabel image, got {type(image).__name__}")


def _sitk(array: np.ndarray, spacing: Sequence[float]):
    """NumPy array in (x, y, z) voxel order -> SimpleITK image with that spacing (ITK wants (z, y, x) arrays)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def _crop(mask: np.ndarray, spacing: Sequence[float], settings: Mapping) -> tuple[slice, ...]:
    """Bounding box of the mask plus a margin wide enough for PyRadiomics' resampling and padding."""
    pad = float(settings.get("padDistance", 5))
    target = settings.get("resampledPixelSpacing") or spacing
    target = [t if t else s for t, s in zip(target, spacing)]
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    margin = [math.ceil((pad + 3) * t / s) + 2 for t, s in zip(target, spacing)]
    return tuple(slice(max(a - m, 0), min(b + m, n)) for a, b, m, n in zip(lo, hi, margin, mask.shape))


def _features_of(extractor, image: np.ndarray, mask: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    result = extractor.execute(_sitk(image, spacing), _sitk(mask.astype(np.uint8), spacing), label=1)
    return {k.removeprefix("original_"): float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


def _check_region(image: np.ndarray, mask: np.ndarray, spacing, params: dict, what: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Validate one image/mask pair; return the boolean mask and the spacing."""
    if image.ndim not in (2, 3):
        raise ValueError(f"{what}: image must be 2-D or 3-D, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"{what}: mask shape {mask.shape} differs from image shape {image.shape}; resample the mask onto the image")
    if spacing is None:
        raise ValueError(f"{what}: a NumPy image needs its voxel spacing in mm (spacing=...), or pass a nibabel image")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != image.ndim or min(spacing) <= 0:
        raise ValueError(f"{what}: spacing must be {image.ndim} positive numbers (mm), got {spacing}")
    region = np.asarray(mask) != 0
    if not region.any():
        raise ValueError(f"{what}: the mask is empty (no voxel of the region)")
    values = np.asarray(image)[region]
    if not np.isfinite(values).all():
        raise ValueError(f"{what}: the image holds NaN or infinite values inside the region")
    width = params.get("setting", {}).get("binWidth", 25)
    n_bins = (values.max() - values.min()) / width
    if "binCount" not in params.get("setting", {}) and n_bins > MAX_BINS:
        raise ValueError(
            f"{what}: binWidth {width} cuts the region's intensities ({values.min():.4g} to {values.max():.4g}) into "
            f"{n_bins:.0f} bins (> {MAX_BINS}); normalise the image first (normalise_intensities) or widen binWidth"
        )
    return region, spacing


def region_features(
    image, mask, params: str | os.PathLike | Mapping = DEFAULT_PARAMS, spacing: Sequence[float] | None = None
) -> dict[str, float]:
    """PyRadiomics features of one region of one image.

    The image is cropped to the region's bounding box plus a margin before PyRadiomics sees
    it, which changes no feature (PyRadiomics crops the same way) but saves reading whole
    volumes for small lesions.

    Args:
        image: 3-D (or 2-D) NumPy array in voxel order, or a nibabel image (spacing from its header).
            With the default parameters the intensities should be z-scored
            (:func:`normalise_intensities`).
        mask: Array (or nibabel image) of the same shape; non-zero voxels are the region.
        params: PyRadiomics parameter file or dict (default :data:`DEFAULT_PARAMS`).
        spacing: Voxel size in mm per array axis; required for NumPy images.

    Returns:
        ``{"<class>_<Feature>": value}``, e.g. ``shape_Sphericity``, ``firstorder_Mean``,
        ``glcm_Contrast`` (PyRadiomics names without the ``original_`` prefix).

    Raises:
        ValueError: shapes differ, empty mask, NaNs in the region, missing spacing, or a
            discretisation into more than :data:`MAX_BINS` bins.
    """
    params = load_params(params)
    img, header_spacing = _volume_array(image, "image")
    msk, _ = _volume_array(mask, "mask")
    region, spacing = _check_region(img, msk, spacing if spacing is not None else header_spacing, params, "region_features")
    if region.ndim == 3:
        box = _crop(region, spacing, params["setting"])
        img, region = img[box], region[box]
    return _features_of(_extractor(params), img.astype(np.float64), region, spacing)


def normalise_intensities(volume, reference: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """Z-score a volume within a reference region (default: its non-zero voxels, i.e. a skull-stripped brain).

    MRI intensities have no unit: the same tissue can read 300 in one scan and 1,200 in the
    next. After this, 0 is the mean of the reference region and 1 one standard deviation.
    (PyRadiomics' own ``normalize`` setting z-scores over the *whole* image, background
    included, which for a skull-stripped brain is dominated by the zeros around it.)

    Args:
        volume: NumPy array or nibabel image.
        reference: Boolean mask of the voxels that define mean and SD (same shape).
        scale: Multiply the z-scores by this (PyRadiomics' ``normalizeScale``).

    Returns:
        ``float32`` array, same shape; voxels outside the reference are transformed the same way.
    """
    data, _ = _volume_array(volume, "volume")
    data = data.astype(np.float32)
    ref = data != 0 if reference is None else np.asarray(reference, bool)
    if ref.shape != data.shape:
        raise ValueError(f"reference shape {ref.shape} differs from volume shape {data.shape}")
    values = data[ref]
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError("the reference region is empty or holds NaN/infinite values")
    sd = float(values.std())
    if sd == 0:
        raise ValueError("the reference region is constant: its intensities cannot be z-scored")
    return ((data - float(values.mean())) / sd * scale).astype(np.float32)


def regions_table(
    volumes: Mapping[str, object],
    labels,
    regions: Mapping[str, int | Sequence[int]],
    params: str | os.PathLike | Mapping = DEFAULT_PARAMS,
    spacing: Sequence[float] | None = None,
    normalise: bool = True,
) -> pd.DataFrame:
    """PyRadiomics features of several regions in several co-registered sequences: one row per (region, sequence).

    Shape features depend on the region only and are computed once per region (with the first
    sequence); first-order and texture features are computed for every sequence.

    Args:
        volumes: ``{sequence name: image}`` (NumPy arrays or nibabel images on one voxel grid).
        labels: Integer label map on the same grid (array or nibabel image).
        regions: ``{region name: label value or values}``, e.g. ``{"oedema": 2}`` or
            ``{"tumour core": (1, 4)}`` (see :func:`brats_regions`, :func:`lesion_components`).
        params: PyRadiomics parameter file or dict (default :data:`DEFAULT_PARAMS`).
        spacing: Voxel size in mm; default from the first nibabel image's header.
        normalise: Z-score each sequence within its non-zero voxels first
            (:func:`normalise_intensities`), as the default parameters expect.

    Returns:
        Columns ``region``, ``sequence``, then the features as in :func:`region_features`.
    """
    if not volumes:
        raise ValueError("volumes is empty: give at least one sequence, e.g. {'FLAIR': image}")
    if not regions:
        raise ValueError("regions is empty: nothing to measure")
    params = load_params(params)
    label_map, label_spacing = _volume_array(labels, "labels")
    arrays, spacings = {}, [label_spacing]
    for name, volume in volumes.items():
        arrays[name], s = _volume_array(volume, f"volume {name!r}")
        spacings.append(s)
        if arrays[name].shape != label_map.shape:
            raise ValueError(f"volume {name!r} has shape {arrays[name].shape}, the label map {label_map.shape}: resample first")
    known = [s for s in spacings if s is not None]
    if spacing is None and known:
        spacing = known[0]
    if spacing is not None and any(not np.allclose(s, spacing, atol=1e-4) for s in known):
        raise ValueError(f"the images have different voxel spacings {known}; resample them onto one grid first")
    if normalise:
        arrays = {name: normalise_intensities(a) for name, a in arrays.items()}
    with_shape, without_shape = _extractor(params), _extractor(params, shape=False)
    rows = []
    for region_name, values in regions.items():
        mask = np.isin(label_map, np.atleast_1d(values))
        what = f"region {region_name!r}"
        shape_row: dict[str, float] = {}
        for n, (sequence, array) in enumerate(arrays.items()):
            region, sp = _check_region(array, mask, spacing, params, f"{what}, {sequence}")
            box = _crop(region, sp, params["setting"]) if region.ndim == 3 else tuple(slice(None) for _ in region.shape)
            extractor = with_shape if n == 0 else without_shape
            feats = _features_of(extractor, array[box].astype(np.float64), region[box], sp)
            if n == 0:
                shape_row = {k: v for k, v in feats.items() if k.startswith("shape")}
            rows.append({"region": region_name, "sequence": sequence, **shape_row, **feats})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- regions

#: BraTS 2017-2021 label convention (BraTS 2020 data included): label 3 is unused.
BRATS_LABELS = {1: "necrotic core", 2: "oedema", 4: "enhancing tumour"}


def brats_regions(seg, composite: bool = False) -> dict[str, tuple[int, ...]]:
    """The BraTS tumour sub-regions present in a label map, after checking its label convention.

    Args:
        seg: BraTS label map (array or nibabel image): 0 background, 1 necrotic and
            non-enhancing tumour core, 2 peritumoral oedema, 4 GD-enhancing tumour.
        composite: Also return the evaluation regions of the challenge: ``tumour core`` (1, 4)
            and ``whole tumour`` (1, 2, 4).

    Returns:
        ``{region name: label values}`` for :func:`regions_table`, for the labels present.

    Raises:
        ValueError: the map holds values outside {0, 1, 2, 4} (e.g. BraTS 2023 uses 3 for the
            enhancing tumour), or no tumour label at all.
    """
    data, _ = _volume_array(seg, "seg")
    present = set(np.unique(data).tolist())
    unknown = sorted(present - {0, *BRATS_LABELS})
    if unknown:
        raise ValueError(
            f"label values {unknown} are not in the BraTS 2017-2021 convention {{0, 1, 2, 4}}; "
            "BraTS 2023 and later number the enhancing tumour 3: remap before using these names"
        )
    regions = {name: (value,) for value, name in BRATS_LABELS.items() if value in present}
    if not regions:
        raise ValueError("the label map holds no tumour label (1, 2 or 4)")
    if composite:
        if {1, 4} & present:
            regions["tumour core"] = tuple(v for v in (1, 4) if v in present)
        regions["whole tumour"] = tuple(v for v in (1, 2, 4) if v in present)
    return regions


#: Smallest lesion kept by :func:`lesion_components`, in mm³: about a sphere 2.7 mm across.
#: MS guidelines count lesions from about 3 mm in diameter (MAGNIMS 2016); smaller components of
#: a consensus mask are mostly single voxels at the edge of larger lesions, and a handful of
#: voxels carries no texture anyway.
MIN_LESION_MM3 = 10.0


@dataclass(frozen=True)
class LesionComponents:
    """The connected lesions of a binary mask.

    Attributes:
        labels: ``int32`` label map: lesion ``k`` (1 = largest) has value ``k``; dropped
            components and background are 0.
        regions: ``{"lesion k": k}`` for :func:`regions_table`.
        volumes_mm3: Volume of each kept lesion (largest first).
        n_found: Connected components before the size filter.
        n_dropped: Components smaller than the minimum volume.
        dropped_mm3: Their total volume.
    """

    labels: np.ndarray
    regions: dict[str, int]
    volumes_mm3: np.ndarray
    n_found: int
    n_dropped: int
    dropped_mm3: float


def lesion_components(
    mask, spacing: Sequence[float] | None = None, min_volume_mm3: float = MIN_LESION_MM3, connectivity: int = 3
) -> LesionComponents:
    """Split a lesion mask into connected lesions (:func:`scipy.ndimage.label`) and drop the tiny ones.

    Args:
        mask: Binary lesion mask (array or nibabel image; non-zero = lesion).
        spacing: Voxel size in mm (default: from the nibabel header; required for arrays).
        min_volume_mm3: Components smaller than this are dropped (:data:`MIN_LESION_MM3`).
        connectivity: 3 (default): voxels touching at a face, edge or corner belong to one
            lesion (26-neighbourhood in 3-D); 1: only at a face (6-neighbourhood). A smaller
            connectivity splits lesions more often, so the count depends on it.

    Returns:
        A :class:`LesionComponents`, lesions numbered by decreasing volume.
    """
    from scipy import ndimage

    data, header_spacing = _volume_array(mask, "mask")
    spacing = spacing if spacing is not None else header_spacing
    if spacing is None:
        raise ValueError("a NumPy mask needs its voxel spacing in mm (spacing=...), or pass a nibabel image")
    if not 1 <= connectivity <= data.ndim:
        raise ValueError(f"connectivity must be 1 to {data.ndim}, got {connectivity}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError("the mask holds NaN or infinite values")
    voxel_mm3 = float(np.prod(spacing))
    found, n = ndimage.label(data != 0, structure=ndimage.generate_binary_structure(data.ndim, connectivity))
    sizes = np.bincount(found.ravel(), minlength=n + 1)[1:] * voxel_mm3
    keep = np.flatnonzero(sizes >= min_volume_mm3)
    keep = keep[np.argsort(-sizes[keep], kind="stable")]
    lookup = np.zeros(n + 1, np.int32)
    lookup[keep + 1] = np.arange(1, len(keep) + 1)
    dropped = sizes[sizes < min_volume_mm3]
    return LesionComponents(
        labels=lookup[found],
        regions={f"lesion {k}": k for k in range(1, len(keep) + 1)},
        volumes_mm3=sizes[keep],
        n_found=int(n),
        n_dropped=int(len(dropped)),
        dropped_mm3=float(dropped.sum()),
    )


# --------------------------------------------------------------------------- PyRadiomics on patches

#: PyRadiomics settings for 8-bit patches: bins of 8 grey levels (as the fast features). A 2-D
#: image gets PyRadiomics' 2-D texture matrices (4 directions in the plane).
PATCH_SETTINGS = {"binWidth": FIRSTORDER_BIN_WIDTH}


def _pyradiomics_patches(channels: dict[str, np.ndarray], classes: Sequence[str]) -> list[dict[str, float]]:
    params = {"imageType": {"Original": {}}, "featureClass": {cls: None for cls in classes}, "setting": PATCH_SETTINGS}
    extractor = _extractor(params)
    rows = []
    n = len(next(iter(channels.values())))
    for i in range(n):
        row = {}
        for name, stack in channels.items():
            # PyRadiomics needs background in the mask: a one-pixel frame around the patch, outside the mask
            patch = np.pad(stack[i].astype(np.float64), 1, mode="edge")
            mask = np.pad(np.ones(stack[i].shape, np.uint8), 1)
            feats = _features_of(extractor, patch.T, mask.T, (1.0, 1.0))
            row.update({f"{name}_{k}": v for k, v in feats.items()})
        rows.append(row)
    return rows


def pyradiomics_patch_features(
    images: torch.Tensor | np.ndarray,
    classes: Sequence[str] = ("firstorder", "glcm", "glrlm", "glszm"),
    grey: bool = False,
    n_jobs: int | None = -1,
) -> pd.DataFrame:
    """PyRadiomics features of whole 2-D patches, from every channel (slow: for a few hundred patches).

    Every pixel of a patch is in the region (the mask is the whole patch). Intensities are
    discretised into bins of :data:`FIRSTORDER_BIN_WIDTH` grey levels, so first-order entropy
    and uniformity match :func:`patch_features` exactly.

    Args:
        images: ``(N, C, H, W)`` patches as for :func:`patch_features`.
        classes: PyRadiomics feature classes, e.g. ``("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")``.
        grey: Add a grey channel from RGB.
        n_jobs: Parallel worker processes (``-1``: every core).

    Returns:
        One row per patch, columns ``<channel>_<class>_<Feature>`` with PyRadiomics' feature
        names, e.g. ``red_glrlm_RunEntropy``.
    """
    x = _as_patches(images)
    channels = _channels(x, grey)
    size = 64
    chunks = [{k: v[s : s + size] for k, v in channels.items()} for s in range(0, len(x), size)]
    workers = _n_workers(n_jobs, len(chunks))
    if workers == 1:
        parts = [_pyradiomics_patches(c, classes) for c in chunks]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=workers)(delayed(_pyradiomics_patches)(c, classes) for c in chunks)
    return pd.DataFrame([row for part in parts for row in part])
