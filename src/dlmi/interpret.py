"""Looking inside trained networks: representations, attribution maps, and checks on those maps.

Chapter 1 reads out intermediate representations (:func:`layer_outputs`) and probes them
linearly (:func:`linear_probe`). Chapter 8 attributes a prediction to input pixels with captum
(:func:`attribute`: saliency, integrated gradients, Grad-CAM, occlusion), checks the maps
(:func:`cascading_randomisation`, :func:`deletion_curve`) and plants a shortcut to expose
(:func:`with_marker`, :func:`attribution_share`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from tqdm import TqdmExperimentalWarning, TqdmWarning
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from dlmi.config import get_settings
from dlmi.data import ImageSet
from dlmi.train import to_float

with warnings.catch_warnings():
    # captum imports tqdm.auto, which warns in a notebook without ipywidgets ("IProgress not
    # found"); we never show captum's progress bars, so that warning is noise.
    warnings.simplefilter("ignore", TqdmWarning)
    warnings.simplefilter("ignore", TqdmExperimentalWarning)
    from captum import attr as captum_attr

__all__ = ["layer_outputs", "linear_probe"]


@torch.no_grad()
def layer_outputs(model: nn.Module, images: torch.Tensor, nodes: Sequence[str], batch_size: int = 256) -> dict[str, np.ndarray]:
    """The activations of named layers for a batch of ``uint8`` images.

    Uses torchvision's ``create_feature_extractor``, so ``nodes`` are module paths such
    as ``"features.0"`` or ``"pool"`` (see ``torchvision.models.feature_extraction.get_graph_node_names``).

    Args:
        model: A trained network.
        images: ``uint8`` images ``(N, C, H, W)``.
        nodes: Names of the layers to read out.

    Returns:
        ``{node: float32 array (N, features)}``, each activation flattened per image,
        plus ``"input"``: the raw pixels, flattened.
    """
    device = get_settings().device
    extractor = create_feature_extractor(model.eval().to(device), return_nodes=list(nodes))
    chunks: dict[str, list[np.ndarray]] = {"input": [], **{n: [] for n in nodes}}
    for batch in images.split(batch_size):
        x = to_float(batch.to(device))
        chunks["input"].append(x.flatten(1).cpu().numpy())
        for name, act in extractor(x).items():
            chunks[name].append(act.flatten(1).cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray,
    test_labels: np.ndarray | torch.Tensor,
    n_components: int = 50,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear classifier trained on a frozen representation.

    Standardises, reduces to ``n_components`` principal components, then fits a
    logistic regression: a high score means the classes are *linearly* separable in
    that representation, i.e. the representation has made the task easy.

    Args:
        train_features, test_features: ``(N, D)`` arrays of the same representation.
        train_labels, test_labels: Class index per row.

    Returns:
        Accuracy on the test rows.
    """
    k = min(n_components, *train_features.shape)
    probe = make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), LogisticRegression(max_iter=2000))
    probe.fit(train_features, np.asarray(train_labels))
    return float(probe.score(test_features, np.asarray(test_labels)))


# --------------------------------------------------------------------------- attribution maps (chapter 8)

__all__ += [
    "ATTRIBUTION_METHODS",
    "attribute",
    "attribution_map",
    "attribution_share",
    "burn_marker",
    "cascade_blocks",
    "cascading_randomisation",
    "curve_auc",
    "deletion_curve",
    "map_similarity",
    "marker_region",
    "randomise_blocks",
    "rank_correlation",
    "ssim",
    "with_marker",
]

ATTRIBUTION_METHODS = ("saliency", "integrated_gradients", "grad_cam", "occlusion")

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    """One-line ValueErrors for what is not a batch of finite 2D images ``(N, C, H, W)``."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    if images.is_floating_point() and not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or infinite values")


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images -> [0, 1] floats; float images are taken as they are (already scaled)."""
    _check_images(images)
    return to_float(images) if images.dtype == torch.uint8 else images.float()


def _targets(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None) -> torch.Tensor:
    """The class index to explain per image: as given, or the model's prediction if ``None``."""
    if target is None:
        with torch.no_grad():
            return model(x).argmax(1)
    t = torch.as_tensor(target, dtype=torch.long, device=x.device)
    if t.ndim == 0:
        t = t.expand(len(x))
    if t.shape != (len(x),):
        raise ValueError(f"target must be one class index or one per image ({len(x)}), got shape {tuple(t.shape)}")
    return t


def default_layer(model: nn.Module) -> nn.Module:
    """The last block of ``model.features`` (the last convolutional stage of the book's CNNs), for Grad-CAM."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential) or len(features) == 0:
        raise ValueError(f"{type(model).__name__} has no 'features' stage; pass the Grad-CAM layer explicitly")
    return features[-1]


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    layer: nn.Module | None = None,
    baseline: float = 0.0,
    n_steps: int = 32,
    window: int = 4,
    stride: int = 2,
    batch_size: int = 64,
) -> torch.Tensor:
    """Attribute a classifier's output to the input pixels with one of captum's methods.

    Methods (all for the logit of ``target``):

    - ``"saliency"``: the gradient of the output with respect to the input (signed)
      :cite:p:`simonyan2014saliency`.
    - ``"integrated_gradients"``: the gradient averaged along the straight path from a
      constant ``baseline`` image to the input, times (input − baseline), with ``n_steps``
      steps; the attributions sum to the change in the output :cite:p:`sundararajan2017axiomatic`.
    - ``"grad_cam"``: channel-weighted activations of ``layer`` (default: the last stage of
      ``model.features``), ReLU, bilinearly upsampled to the input size and repeated over the
      input channels :cite:p:`selvaraju2017gradcam`.
    - ``"occlusion"``: the drop of the output when a ``window`` × ``window`` square (all
      channels) is set to ``baseline``, moved by ``stride`` pixels; averaged over the windows
      covering each pixel :cite:p:`zeiler2014visualizing`.

    Args:
        model: A classifier returning logits ``(N, K)``; used in eval mode on the configured device.
        images: ``uint8`` images ``(N, C, H, W)``, or floats already scaled to [0, 1].
        method: One of :data:`ATTRIBUTION_METHODS`.
        target: Class to explain: one index for all images, one per image, or ``None`` for
            the model's predicted class.
        layer: Grad-CAM's layer (ignored by the other methods).
        baseline: Pixel value (in [0, 1] units) of the reference image of integrated gradients
            and of the occluding patch.
        n_steps, window, stride: Settings of integrated gradients and occlusion.
        batch_size: Images per forward pass (integrated gradients: path points per pass).

    Returns:
        ``float32`` attributions on the CPU, the input's shape ``(N, C, H, W)``.

    Raises:
        ValueError: unknown method, images not ``(N, C, H, W)`` or not finite, bad target.
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; use one of {ATTRIBUTION_METHODS}")
    device = get_settings().device
    model = model.eval().to(device)
    x_all = _as_float(images)
    if target is not None:
        target = _targets(model, x_all, target)  # checked and expanded: one index per image
    parts = []
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size].to(device)
        t = _targets(model, x, None if target is None else target[start : start + batch_size])
        parts.append(_attribute_batch(model, x, method, t, layer, baseline, n_steps, window, stride, batch_size).detach().float().cpu())
    return torch.cat(parts)


def _attribute_batch(model, x, method, t, layer, baseline, n_steps, window, stride, batch_size) -> torch.Tensor:
    """One batch of :func:`attribute` (inputs already on the device)."""
    # captum warns when it has to switch on requires_grad itself: ask for it here instead
    x = x.clone().requires_grad_(True)
    if method == "saliency":
        return captum_attr.Saliency(model).attribute(x, target=t, abs=False)
    if method == "integrated_gradients":
        ig = captum_attr.IntegratedGradients(model)
        return ig.attribute(x, baselines=baseline, target=t, n_steps=n_steps, internal_batch_size=max(batch_size, len(x)))
    if method == "grad_cam":
        cam = captum_attr.LayerGradCam(model, layer if layer is not None else default_layer(model))
        small = cam.attribute(x, target=t, relu_attributions=True)
        up = captum_attr.LayerAttribution.interpolate(small, tuple(x.shape[2:]), interpolate_mode="bilinear")
        return up.expand_as(x)
    c = x.shape[1]
    occ = captum_attr.Occlusion(model)
    with torch.no_grad():
        return occ.attribute(
            x.detach(), sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
            baselines=baseline, target=t, perturbations_per_eval=16,
        )


def attribution_map(attributions: torch.Tensor) -> np.ndarray:
    """Per-pixel magnitude of attributions: absolute values summed over channels.

    Args:
        attributions: ``(N, C, H, W)``.

    Returns:
        ``float64`` array ``(N, H, W)``, non-negative.
    """
    _check_images(attributions, "attributions")
    return attributions.detach().abs().sum(1).double().cpu().numpy()


def _normalised(maps: np.ndarray) -> np.ndarray:
    """Each ``(H, W)`` map scaled to [0, 1] by its own min and max (constant maps -> 0)."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0)


def _paired_maps(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    ma, mb = attribution_map(a), attribution_map(b)
    if ma.shape != mb.shape:
        raise ValueError(f"attributions differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return ma, mb


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of two attributions' magnitudes (:func:`attribution_map`), image by image.

    Args:
        a, b: Attributions ``(N, C, H, W)`` of the same images.

    Returns:
        ``(N,)`` correlations in [-1, 1]; NaN where a map is constant (no ranking to compare).
    """
    ma, mb = _paired_maps(a, b)
    out = np.full(len(ma), np.nan)
    for i, (p, q) in enumerate(zip(ma.reshape(len(ma), -1), mb.reshape(len(mb), -1))):
        if np.ptp(p) > 0 and np.ptp(q) > 0:  # scipy warns on constant input: leave those NaN
            out[i] = spearmanr(p, q).statistic
    return out


def ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Structural similarity of two attributions' magnitudes, each map first scaled to [0, 1].

    Args:
        a, b: Attributions ``(N, C, H, W)`` of the same images (H, W >= 7).

    Returns:
        ``(N,)`` SSIM values (1: identical structure; about 0: unrelated).
    """
    ma, mb = _paired_maps(a, b)
    na, nb = _normalised(ma), _normalised(mb)
    return np.array([structural_similarity(p, q, data_range=1.0) for p, q in zip(na, nb)])


def map_similarity(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Mean :func:`rank_correlation` and :func:`ssim` of ``other`` against ``reference`` over images.

    Returns:
        ``{"spearman": ..., "ssim": ...}`` (means over the images where they are defined).
    """
    rho = rank_correlation(reference, other)
    return {"spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else float("nan"), "ssim": float(ssim(reference, other).mean())}


def cascade_blocks(model: nn.Module) -> list[str]:
    """Names of the model's parametrised blocks from the output back to the input.

    The children of ``model.features`` count one by one, other top-level children as a
    whole; children without parameters (pooling) are skipped. For a
    :class:`~dlmi.models.SmallResNet` with three stages: ``["head", "features.2",
    "features.1", "features.0", "stem"]``.
    """
    names = []
    for name, child in model.named_children():
        subs = child.named_children() if name == "features" and isinstance(child, nn.Sequential) else [("", child)]
        for sub, module in subs:
            if any(True for _ in module.parameters()):
                names.append(f"{name}.{sub}" if sub else name)
    return names[::-1]


def randomise_blocks(model: nn.Module, blocks: Sequence[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose named blocks are re-initialised (the original is left unchanged).

    Every submodule with a ``reset_parameters`` method (convolutions, linear layers, batch
    norm, whose running statistics are reset too) gets fresh default initial values, drawn
    from a generator seeded by ``seed``.

    Args:
        model: A trained network.
        blocks: Module names, e.g. from :func:`cascade_blocks`.
        seed: Seed of the new weights.

    Returns:
        The partly randomised copy, in eval mode.
    """
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    unknown = [b for b in blocks if b not in modules]
    if unknown:
        raise ValueError(f"no block(s) {unknown} in {type(model).__name__}; see cascade_blocks(model)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for block in blocks:
            for module in modules[block].modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    return clone.eval()


def cascading_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    method: str,
    seed: int = 0,
    **kwargs,
) -> list[tuple[str, torch.Tensor]]:
    """The model-parameter randomisation test of Adebayo et al. (2018), cascading from the head.

    Step 0 explains the trained model; step ``k`` re-initialises the ``k`` blocks nearest the
    output (:func:`cascade_blocks`) and explains again, always for the class the *trained*
    model predicted. A map that reflects what the network learned must change.

    Args:
        model: The trained classifier.
        images: ``uint8`` images ``(N, C, H, W)``.
        method: One of :data:`ATTRIBUTION_METHODS`.
        seed: Seed of the random weights.
        **kwargs: Passed to :func:`attribute` (Grad-CAM's ``layer`` is looked up by name in each copy).

    Returns:
        ``[("trained", attributions), ("head", ...), ("features.2", ...), ...]``: each label
        is the block randomised last; attributions ``(N, C, H, W)``.
    """
    device = get_settings().device
    x = _as_float(images).to(device)
    target = _targets(model.eval().to(device), x, None)
    blocks = cascade_blocks(model)
    layer = kwargs.pop("layer", None)
    layer_name = next((n for n, m in model.named_modules() if m is layer), None) if layer is not None else None
    steps = [("trained", model)] + [(b, randomise_blocks(model, blocks[: k + 1], seed)) for k, b in enumerate(blocks)]
    out = []
    for label, net in steps:
        net_layer = dict(net.named_modules())[layer_name] if layer_name else None
        out.append((label, attribute(net, x, method, target, layer=net_layer, **kwargs)))
    return out


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    attributions: torch.Tensor | None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    *,
    mode: str = "deletion",
    steps: int = 28,
    baseline: float | torch.Tensor = 0.0,
    seed: int = 0,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion or insertion curve: the class probability as pixels are removed or revealed, most-attributed first.

    Pixels are ranked by :func:`attribution_map` (all channels of a pixel together).
    ``"deletion"`` replaces the top-ranked fraction of pixels by ``baseline``: a faithful map
    makes the probability fall fast (small area under the curve). ``"insertion"`` starts from
    the baseline image and puts the top-ranked pixels back: the probability should rise fast
    (large area) :cite:p:`petsiuk2018rise`.

    Args:
        model: The classifier.
        images: ``uint8`` images ``(N, C, H, W)`` (or floats in [0, 1]).
        attributions: ``(N, C, H, W)`` attributions of these images, or ``None`` for a random
            pixel order (seeded by ``seed``), the reference a map must beat.
        target: Class whose probability is tracked; ``None``: the model's prediction on the intact image.
        mode: ``"deletion"`` or ``"insertion"``.
        steps: Number of equal steps from 0 to all pixels.
        baseline: Value of removed pixels in [0, 1] units, or a float tensor of the images' shape
            (e.g. blurred copies).
        seed: Seed of the random order.
        batch_size: Images per forward pass.

    Returns:
        ``(fractions, probs)``: ``(steps + 1,)`` fractions of pixels changed, from 0 to 1, and
        ``(N, steps + 1)`` probabilities of the target class. Deletion starts at the intact
        image and ends at the baseline; insertion the other way round.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = get_settings().device
    model = model.eval().to(device)
    x = _as_float(images).to(device)
    n, c, h, w = x.shape
    if attributions is None:
        g = torch.Generator().manual_seed(seed)
        scores = torch.rand(n, h * w, generator=g, dtype=torch.float64).numpy()
    else:
        if tuple(attributions.shape) != tuple(x.shape):
            raise ValueError(f"attributions {tuple(attributions.shape)} must have the images' shape {tuple(x.shape)}")
        scores = attribution_map(attributions).reshape(n, h * w)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=device)
    if base.ndim and tuple(base.shape) != tuple(x.shape):
        raise ValueError(f"baseline must be a number or have the images' shape {tuple(x.shape)}, got {tuple(base.shape)}")
    if not torch.isfinite(base).all():
        raise ValueError("baseline contains NaN or infinite values")
    base = base.expand_as(x)
    t = _targets(model, x, target)
    rank = np.empty_like(scores, dtype=np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    rank_t = torch.from_numpy(rank).to(device).view(n, 1, h, w)
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    probs = np.empty((n, steps + 1))
    with torch.no_grad():
        for k, count in enumerate(counts):
            changed = rank_t < int(count)  # (N, 1, H, W): the top-ranked `count` pixels
            keep_input = ~changed if mode == "deletion" else changed
            batch = torch.where(keep_input, x, base)
            logits = torch.cat([model(b) for b in batch.split(batch_size)])
            probs[:, k] = torch.softmax(logits.float(), 1).gather(1, t[:, None])[:, 0].cpu().numpy()
    return counts / (h * w), probs


def curve_auc(fractions: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Area under deletion/insertion curves (trapezoid rule over the fraction of pixels).

    Args:
        fractions: ``(S,)`` from 0 to 1.
        probs: ``(N, S)`` curves, one per image.

    Returns:
        ``(N,)`` areas in [0, 1].
    """
    return np.trapezoid(np.asarray(probs), np.asarray(fractions), axis=-1)


def marker_region(shape: tuple[int, int], size: int = 5, corner: str = "top-right", margin: int = 1) -> np.ndarray:
    """The square where :func:`burn_marker` writes its tag.

    Args:
        shape: Image ``(H, W)``.
        size: Side of the square in pixels.
        corner: One of ``"top-left"``, ``"top-right"``, ``"bottom-left"``, ``"bottom-right"``.
        margin: Pixels between the square and the image border.

    Returns:
        Boolean ``(H, W)`` mask, ``True`` inside the square.
    """
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    h, w = shape
    if size < 2 or size + margin > min(h, w):
        raise ValueError(f"a {size}-pixel marker with margin {margin} does not fit a {h}x{w} image")
    top = margin if corner.startswith("top") else h - margin - size
    left = margin if corner.endswith("left") else w - margin - size
    region = np.zeros((h, w), dtype=bool)
    region[top : top + size, left : left + size] = True
    return region


def _glyph(size: int) -> np.ndarray:
    """An "L" (like a radiograph's laterality tag) filling a ``size`` × ``size`` square."""
    g = np.zeros((size, size), dtype=bool)
    g[:, : max(1, size // 3)] = True
    g[-max(1, size // 3) :, :] = True
    return g


def burn_marker(images: torch.Tensor, where: torch.Tensor | np.ndarray | None = None, *, size: int = 5,
                corner: str = "top-right", margin: int = 1, value: int = 255) -> torch.Tensor:
    """Burn a bright "L" tag into a corner of some images, as a scanner burns in a laterality letter.

    Args:
        images: ``uint8`` images ``(N, C, H, W)``.
        where: Boolean ``(N,)``: which images get the tag (default: all).
        size, corner, margin: Placement, see :func:`marker_region`.
        value: Pixel value of the tag (all channels).

    Returns:
        A ``uint8`` copy; images not selected are unchanged.
    """
    _check_images(images)
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    n, _, h, w = images.shape
    sel = torch.ones(n, dtype=torch.bool) if where is None else torch.as_tensor(where, dtype=torch.bool).cpu()
    if sel.shape != (n,):
        raise ValueError(f"where must be a boolean vector of length {n}, got shape {tuple(sel.shape)}")
    region = marker_region((h, w), size, corner, margin)
    mask = np.zeros((h, w), dtype=bool)
    mask[region] = _glyph(size).ravel()
    out = images.clone()
    pixels = torch.from_numpy(mask).to(images.device)
    out[sel.to(images.device)] = torch.where(pixels, torch.tensor(value, dtype=torch.uint8, device=images.device), out[sel.to(images.device)])
    return out


def with_marker(data: ImageSet, rates: Sequence[float], seed: int = 0, **marker) -> tuple[ImageSet, torch.Tensor]:
    """A copy of a split in which a class-dependent share of images carries the marker.

    Args:
        data: A single-label split.
        rates: Per class, the probability that an image of that class gets the tag
            (e.g. ``(0.1, 0.9)``: one normal image in ten, nine pneumonias in ten).
        seed: Seed of the draw.
        **marker: ``size``, ``corner``, ``margin``, ``value`` of :func:`burn_marker`.

    Returns:
        ``(marked split, (N,) boolean: which images carry the tag)``.
    """
    if len(rates) != data.n_classes or not all(0.0 <= r <= 1.0 for r in rates):
        raise ValueError(f"rates must be {data.n_classes} probabilities (one per class), got {tuple(rates)}")
    if data.labels.ndim != 1:
        raise ValueError("with_marker needs single-label data")
    g = torch.Generator().manual_seed(seed)
    draw = torch.rand(len(data), generator=g)
    tagged = draw < torch.tensor(rates, dtype=torch.float32)[data.labels]
    rate_text = ", ".join(f"{name} {r:.0%}" for name, r in zip(data.classes, rates))
    note = f"{data.note}; corner tag burnt into {rate_text} of images (seed {seed})"
    return replace(data, images=burn_marker(data.images, tagged, **marker), note=note), tagged


def attribution_share(attributions: torch.Tensor, region: np.ndarray) -> np.ndarray:
    """Share of each image's attribution magnitude that falls inside ``region``.

    Compare it with ``region.mean()``, the share of the image area: a map that ignores the
    region gives it about its area share or less.

    Args:
        attributions: ``(N, C, H, W)``.
        region: Boolean ``(H, W)`` mask, e.g. from :func:`marker_region`.

    Returns:
        ``(N,)`` shares in [0, 1] (NaN for an all-zero map).
    """
    maps = attribution_map(attributions)
    region = np.asarray(region, dtype=bool)
    if region.shape != maps.shape[1:]:
        raise ValueError(f"region {region.shape} must have the images' height and width {maps.shape[1:]}")
    total = maps.sum(axis=(1, 2))
    inside = maps[:, region].sum(axis=1)
    return np.divide(inside, total, out=np.full(len(maps), np.nan), where=total > 0)
