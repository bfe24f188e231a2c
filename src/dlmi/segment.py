"""Segmentation: a U-Net written from scratch, MONAI's for comparison, and the metrics that judge masks.

Voxel-level overlap (Dice, IoU) and boundary distance (Hausdorff) come from MONAI's metrics;
object-level counts (how many lesions or nuclei were found, how many predictions were false
alarms) are computed here from connected components, because they are what a clinician
counts and voxel overlap hides them: one large lesion found and ten small ones missed can
still give a good Dice.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from torch import nn

from dlmi.config import get_settings, seed_everything
from dlmi.data import ImageSet
from dlmi.train import fit, make_scheduler, to_float

__all__ = [
    "SegRecipe",
    "axial_slices",
    "predict_volume",
    "SegmentationLoss",
    "UNet",
    "evaluate_patches",
    "image_scores",
    "lesion_metrics",
    "match_instances",
    "monai_unet",
    "normalise_in_mask",
    "overlap_metrics",
    "patch_set",
    "receptive_field",
    "sample_patches",
    "sliding_window_predict",
    "to_grey",
    "to_uint8",
]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU; the spatial size is kept."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A 2D U-Net (Ronneberger et al. 2015), small enough to read in one screen.

    The **encoder** applies a double convolution per level and halves the image between levels
    (max pooling), doubling what each feature "sees"; the **decoder** doubles the size again
    with transposed convolutions. **Skip connections** hand every encoder level's features to
    the decoder level of the same size, so the fine detail lost by pooling is available when
    the mask is drawn: either concatenated to the up-sampled features (``merge="concat"``, the
    original design) or added to them (``merge="add"``, fewer parameters).

    Args:
        in_channels: Image channels.
        out_channels: Output channels: 1 logit for a binary mask, or one per class.
        widths: Channels per level, from the top (full resolution) down; ``len(widths) - 1``
            poolings, so height and width must be divisible by ``2 ** (len(widths) - 1)``.
        merge: ``"concat"`` or ``"add"``.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (16, 32, 64, 128), merge: str = "concat"):
        super().__init__()
        if merge not in ("concat", "add"):
            raise ValueError(f"merge must be 'concat' or 'add', got {merge!r}")
        if len(widths) < 2:
            raise ValueError(f"a U-Net needs at least two levels, got widths={tuple(widths)}")
        self.merge, self.widths = merge, tuple(widths)
        self.down = nn.ModuleList(_double_conv(a, b) for a, b in zip((in_channels, *widths[:-1]), widths))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        factor = 2 if merge == "concat" else 1
        self.decode = nn.ModuleList(_double_conv(factor * a, a) for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, out_channels, H, W)``."""
        step = 2 ** (len(self.widths) - 1)
        if x.ndim != 4 or x.shape[-1] % step or x.shape[-2] % step:
            raise ValueError(
                f"UNet with {len(self.widths)} levels needs input (N, C, H, W) with H and W divisible by {step}, "
                f"got shape {tuple(x.shape)}; pad the image or use sliding-window inference"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, decode in zip(reversed(self.up), reversed(self.decode)):
            x, skip = up(x), skips.pop()
            x = decode(torch.cat([skip, x], dim=1) if self.merge == "concat" else skip + x)
        return self.head(x)


def monai_unet(in_channels: int, out_channels: int, widths: Sequence[int] = (16, 32, 64, 128), spatial_dims: int = 2) -> nn.Module:
    """MONAI's U-Net with the same widths (strided convolutions instead of pooling, residual units)."""
    from monai.networks.nets import UNet as MonaiUNet

    return MonaiUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, channels=tuple(widths),
                     strides=(2,) * (len(widths) - 1), num_res_units=2)


def receptive_field(model: nn.Module, in_channels: int = 1, size: int = 128, trials: int = 2, seed: int = 0) -> int:
    """The side, in pixels, of the input region that one output pixel (in the image centre) depends on.

    Measured, not derived: the gradient of the centre output with respect to the input is nonzero
    exactly where the input can change that output. Random inputs (``trials``, seeded) and the
    model in eval mode, on a copy; the result is the larger of the region's height and width.

    Args:
        model: A fully convolutional network ``(1, C, size, size) -> (1, K, size, size)``.
        in_channels: Input channels C.
        size: Side of the test input (larger than the field, or the field is cut off at ``size``).
    """
    import copy

    net = copy.deepcopy(model).float().eval()
    g = torch.Generator().manual_seed(seed)
    reach = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(trials):
        x = torch.randn(1, in_channels, size, size, generator=g, requires_grad=True)
        out = net(x)
        out[0, :, size // 2, size // 2].sum().backward()
        reach |= (x.grad[0].abs().sum(0) > 0)
    rows, cols = np.flatnonzero(reach.any(1).numpy()), np.flatnonzero(reach.any(0).numpy())
    return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)) if len(rows) else 0


def _masks(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    t = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction and target masks differ in shape: {p.shape} vs {t.shape}")
    return p, t


def overlap_metrics(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, hausdorff: bool = True) -> dict[str, float]:
    """Voxel-level agreement of one binary mask with its reference, from MONAI's metrics.

    Args:
        pred, target: Binary masks of the same shape, 2D ``(H, W)`` or 3D ``(D, H, W)``.
        hausdorff: Also compute the 95th-percentile Hausdorff distance (in pixels/voxels).

    Returns:
        ``{"dice", "iou", "accuracy", "hd95"}``; Dice and IoU are 1 when both masks are empty,
        hd95 is NaN when either mask is empty.
    """
    from monai.metrics import compute_hausdorff_distance, compute_iou, compute_dice

    p, t = _masks(pred, target)
    p, t = torch.as_tensor(p > 0)[None, None].float(), torch.as_tensor(t > 0)[None, None].float()
    both_empty = p.sum() == 0 and t.sum() == 0
    out = {
        "dice": 1.0 if both_empty else float(compute_dice(p, t, include_background=True)),
        "iou": 1.0 if both_empty else float(compute_iou(p, t, include_background=True)),
        "accuracy": float((p == t).float().mean()),
    }
    if hausdorff:
        empty = p.sum() == 0 or t.sum() == 0
        with warnings.catch_warnings():
            # MONAI 1.6 passes a deprecated argument to its own get_mask_edges (FutureWarning); nothing we pass
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
            out["hd95"] = float("nan") if empty else float(
                compute_hausdorff_distance(p, t, include_background=True, percentile=95))
    return out


def lesion_metrics(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, min_size: int = 1) -> dict[str, float]:
    """Lesion-wise detection counts from connected components (face-connected, 2D or 3D).

    A reference lesion counts as **detected** if any predicted voxel overlaps it; a predicted
    component is a **false positive** if it overlaps no reference lesion.

    Args:
        pred, target: Binary masks of the same shape.
        min_size: Ignore predicted components smaller than this many voxels (speckle).

    Returns:
        ``{"n_lesions", "n_predicted", "detected", "missed", "false_positives", "sensitivity",
        "precision", "f1"}``; sensitivity is NaN without reference lesions, precision NaN without
        predicted components.
    """
    p, t = _masks(pred, target)
    true_labels, n_true = ndimage.label(t > 0)
    pred_labels, n_pred = ndimage.label(p > 0)
    if min_size > 1 and n_pred:
        sizes = np.bincount(pred_labels.ravel())
        small = np.flatnonzero(sizes < min_size)
        pred_labels[np.isin(pred_labels, small[small > 0])] = 0
        pred_labels, n_pred = ndimage.label(pred_labels > 0)
    detected = len(np.setdiff1d(np.unique(true_labels[pred_labels > 0]), [0]))
    hits = len(np.setdiff1d(np.unique(pred_labels[true_labels > 0]), [0]))
    sens = detected / n_true if n_true else float("nan")
    prec = hits / n_pred if n_pred else float("nan")
    f1 = float("nan")
    if n_true and n_pred:
        f1 = 2 * sens * prec / (sens + prec) if sens + prec else 0.0
    return {"n_lesions": float(n_true), "n_predicted": float(n_pred), "detected": float(detected), "missed": float(n_true - detected),
            "false_positives": float(n_pred - hits), "sensitivity": sens, "precision": prec, "f1": f1}


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level detection: match predicted to reference instances one-to-one by IoU.

    Pairs are chosen to maximise the total IoU (Hungarian assignment); a pair counts as a true
    positive if its IoU is at least ``iou_threshold`` (0.5, as in the 2018 Data Science Bowl).

    Args:
        pred_labels, true_labels: Instance label maps of the same shape (0 = background, each
            object its own positive integer), e.g. ``scipy.ndimage.label`` of a binary mask.
        iou_threshold: Minimum IoU of a match.

    Returns:
        ``{"tp", "fp", "fn", "precision", "recall", "f1", "mean_matched_iou"}``.
    """
    p, t = _masks(pred_labels, true_labels)
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
    p_ids, p_inv = np.unique(p.ravel(), return_inverse=True)
    t_ids, t_inv = np.unique(t.ravel(), return_inverse=True)
    inter = np.zeros((len(p_ids), len(t_ids)))
    np.add.at(inter, (p_inv, t_inv), 1)
    pi, ti = p_ids != 0, t_ids != 0
    inter = inter[np.ix_(pi, ti)]
    p_area, t_area = np.bincount(p_inv)[pi], np.bincount(t_inv)[ti]
    union = p_area[:, None] + t_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    rows, cols = linear_sum_assignment(-iou) if iou.size else (np.array([], int), np.array([], int))
    matched = iou[rows, cols] >= iou_threshold
    tp = int(matched.sum())
    fp, fn = int(pi.sum()) - tp, int(ti.sum()) - tp
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    mean_iou = float(iou[rows, cols][matched].mean()) if tp else float("nan")
    return {"tp": float(tp), "fp": float(fp), "fn": float(fn), "precision": precision, "recall": recall, "f1": f1,
            "mean_matched_iou": mean_iou}


def normalise_in_mask(volume: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Standardise intensities with the statistics of the voxels inside ``mask`` (e.g. the brain).

    MRI intensities have no fixed unit; z-scoring inside the brain (not the whole field of
    view, which is mostly background) makes scans comparable. Voxels outside the mask become 0.

    Args:
        volume: An image or volume of any shape.
        mask: Boolean mask of the same shape; default ``volume > 0`` (skull-stripped images).

    Returns:
        ``float32`` array of the same shape: mean 0 and standard deviation 1 inside the mask.
    """
    v = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("volume contains NaN or infinite values; fix or mask them before normalising")
    m = v > 0 if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != v.shape:
        raise ValueError(f"mask shape {m.shape} differs from volume shape {v.shape}")
    if m.sum() < 2:
        raise ValueError("the mask holds fewer than 2 voxels: nothing to compute statistics from")
    inside = v[m]
    std = inside.std()
    if std == 0:
        raise ValueError("the volume is constant inside the mask: it cannot be standardised")
    return np.where(m, (v - inside.mean()) / std, 0.0).astype(np.float32)


def sample_patches(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int, n: int, pos_fraction: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random square patches of images and their masks, a share of them centred on foreground.

    Training on patches instead of whole images lets one batch mix many images of any size, and
    centring a chosen share of patches on the foreground counters the imbalance of small
    structures (lesions, nuclei) against a large background.

    Args:
        images: Images ``(C, H, W)``, sizes may differ between images.
        masks: Binary masks ``(H, W)`` of the same sizes.
        size: Side of the square patch; smaller images are zero-padded.
        n: Number of patches.
        pos_fraction: Share of patches centred on a random foreground pixel (images without
            foreground give a uniformly placed patch instead).
        seed: Seed of the sampling.

    Returns:
        ``(patches (n, C, size, size), mask patches (n, 1, size, size))`` with the dtypes of the inputs.
    """
    if len(images) != len(masks) or not images:
        raise ValueError(f"need as many masks as images (and at least one), got {len(images)} and {len(masks)}")
    if not 0 <= pos_fraction <= 1:
        raise ValueError(f"pos_fraction must lie in [0, 1], got {pos_fraction}")
    rng = np.random.default_rng(seed)
    half = size // 2
    foreground: dict[int, np.ndarray] = {}
    out_x, out_y = [], []
    for k in rng.integers(0, len(images), n):
        x, y = np.asarray(images[k]), np.asarray(masks[k])
        if x.ndim != 3 or x.shape[1:] != y.shape:
            raise ValueError(f"image {k}: expected (C, H, W) with a mask (H, W) of the same size, got {x.shape} and {y.shape}")
        h, w = y.shape
        if k not in foreground:
            foreground[k] = np.argwhere(y > 0)
        fg = foreground[k]
        if rng.random() < pos_fraction and len(fg):
            cy, cx = fg[rng.integers(len(fg))]
        else:
            cy, cx = rng.integers(0, h), rng.integers(0, w)
        # the patch spans [cy - half, cy - half + size); zero outside the image
        top, left = cy - half, cx - half
        ys, xs = slice(max(top, 0), min(top + size, h)), slice(max(left, 0), min(left + size, w))
        pad = ((max(-top, 0), size - (ys.stop - top)), (max(-left, 0), size - (xs.stop - left)))
        out_x.append(np.pad(x[:, ys, xs], ((0, 0), *pad)))
        out_y.append(np.pad(y[ys, xs], pad)[None])
    return torch.from_numpy(np.stack(out_x)), torch.from_numpy(np.stack(out_y))


@torch.no_grad()
def sliding_window_predict(model: nn.Module, image: np.ndarray | torch.Tensor, roi: int, overlap: float = 0.5, batch_size: int = 8) -> torch.Tensor:
    """Sigmoid probabilities of a whole image of any size, from overlapping windows (MONAI).

    The image is covered by ``roi`` x ``roi`` windows that overlap by ``overlap``; every pixel's
    output is the average over the windows that contain it, which hides the seams where one
    window ends.

    Args:
        model: Maps float images ``(B, C, roi, roi)`` in [0, 1] to logits ``(B, K, roi, roi)``.
        image: ``uint8`` image ``(C, H, W)``.
        roi: Window side (a size the model accepts).
        overlap: Overlap of neighbouring windows, in [0, 1).
        batch_size: Windows per forward pass.

    Returns:
        ``float32`` probabilities ``(K, H, W)`` on the CPU.
    """
    from monai.inferers import sliding_window_inference


    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if x.dtype != torch.uint8 or x.ndim != 3:
        raise ValueError(f"expected one uint8 image (C, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    device = get_settings().device
    model = model.eval().to(device)
    logits = sliding_window_inference(x[None].float().div(255).to(device), roi_size=(roi, roi), sw_batch_size=batch_size,
                                      predictor=model, overlap=overlap, mode="constant")
    return torch.sigmoid(logits[0]).float().cpu()


# --------------------------------------------------------------------------- preparing images


def to_grey(image: np.ndarray) -> np.ndarray:
    """A ``uint8`` image ``(C, H, W)`` with C = 1 or 3 -> ``(1, H, W)`` grey (channel mean), so mixed sets share one input."""
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (C, H, W) with 1 or 3 channels, got shape {x.shape}")
    return x if x.shape[0] == 1 else np.round(x.mean(0, keepdims=True)).astype(np.uint8)


def to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly to 0..255 (values outside are clipped), e.g. standardised MRI to 8 bits."""
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    v = np.asarray(values, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or infinite entries; fix them before converting to 8 bits")
    return np.round(np.clip((v - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)


def patch_set(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], size: int, n: int, pos_fraction: float = 0.5,
              seed: int = 0, name: str = "patches", split: str = "train") -> ImageSet:
    """:func:`sample_patches` as an :class:`~dlmi.data.ImageSet` for :func:`dlmi.train.fit`.

    Returns:
        images ``uint8 (n, C, size, size)``; labels are the binary masks ``uint8 (n, 1, size, size)``;
        task ``"segmentation"``, one class ``"foreground"``.
    """
    x, y = sample_patches(images, [np.asarray(m) > 0 for m in masks], size, n, pos_fraction, seed)
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (see to_uint8), got {x.dtype}")
    note = f"{n} patches of {size}x{size} from {len(images)} images, {pos_fraction:.0%} centred on foreground (seed {seed})"
    return ImageSet(x, y.to(torch.uint8), ("foreground",), "segmentation", name, split, note)


# --------------------------------------------------------------------------- training


class SegmentationLoss:
    """Dice + binary cross-entropy (MONAI's ``DiceCELoss``) after random flips and 90-degree rotations.

    A ``batch_loss`` for :func:`dlmi.train.fit`: image and mask must be transformed *together*,
    which an image-only augmentation cannot do. Cross-entropy gives smooth gradients on every
    pixel; the Dice term weighs the small foreground as much as the large background.

    Args:
        augment: Apply a random flip and rotation by a multiple of 90 degrees to each batch.
    """

    def __init__(self, augment: bool = True):
        from monai.losses import DiceCELoss

        self.augment = augment
        self.loss = DiceCELoss(sigmoid=True)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x``: float images ``(B, C, H, W)``; ``y``: masks ``(B, 1, H, W)``; returns the scalar loss."""
        y = y.float()
        if self.augment:
            k = int(torch.randint(4, (1,)))
            x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
            if torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
        return self.loss(model(x).float(), y)


@torch.no_grad()
def evaluate_patches(model: nn.Module, data: ImageSet, batch_size: int = 64) -> dict[str, float]:
    """Loss (:class:`SegmentationLoss` without augmentation) and Dice over a whole patch split.

    Dice is pooled over all pixels of all patches, ``2 |P & T| / (|P| + |T|)`` with the mask
    predicted at probability 0.5, so patches without foreground count too.

    Returns:
        ``{"loss", "dice"}``, an ``evaluator`` for :func:`dlmi.train.fit`.
    """

    device = get_settings().device
    model.eval().to(device)
    loss_fn = SegmentationLoss(augment=False).loss
    total, inter, sizes = 0.0, 0.0, 0.0
    for x, y in zip(data.images.split(batch_size), data.labels.split(batch_size)):
        logits = model(to_float(x.to(device))).float()
        if not torch.isfinite(logits).all():
            raise FloatingPointError("the model's outputs are NaN or infinite: it diverged; lower the learning rate")
        y = y.to(device).float()
        total += loss_fn(logits, y).item() * len(x)
        pred = (logits > 0).float()
        inter += (pred * y).sum().item()
        sizes += (pred.sum() + y.sum()).item()
    return {"loss": total / len(data), "dice": 2 * inter / sizes if sizes else 1.0}


@dataclass(frozen=True)
class SegRecipe:
    """A segmentation training run as plain values, cached by :func:`dlmi.zoo.train_recipe` like any recipe.

    Attributes:
        model: ``"UNet"`` (this module's, from scratch) or ``"MONAI"`` (:func:`monai_unet`).
        widths: Channels per level.
        merge: Skip connections of the from-scratch U-Net, ``"concat"`` or ``"add"``.
        epochs, batch_size, lr, weight_decay: Budget and AdamW settings (cosine schedule).
        augment: Random flips and 90-degree rotations of patches and masks.
        seed: Seed of initialisation, batch order and augmentation.
    """

    model: str = "UNet"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    merge: str = "concat"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0

    def build_model(self, in_channels: int, n_classes: int) -> nn.Module:
        """A freshly initialised network with ``n_classes`` output channels (1 for a binary mask)."""

        seed_everything(self.seed)
        if self.model == "UNet":
            return UNet(in_channels, n_classes, self.widths, self.merge)
        if self.model == "MONAI":
            return monai_unet(in_channels, n_classes, self.widths)
        raise ValueError(f"unknown segmentation model {self.model!r}; use 'UNet' or 'MONAI'")

    def fit(self, train: ImageSet, val: ImageSet):
        """Train on patch splits with :func:`dlmi.train.fit`, keeping the epoch of best validation Dice."""

        model = self.build_model(train.images.shape[1], train.n_classes)
        return fit(model, train, val, epochs=self.epochs, batch_size=self.batch_size, optimizer="adamw", lr=self.lr,
                   weight_decay=self.weight_decay, scheduler=make_scheduler("cosine", self.epochs),
                   batch_loss=SegmentationLoss(self.augment), evaluator=evaluate_patches, monitor="val_dice", seed=self.seed)


# --------------------------------------------------------------------------- scoring whole images


def image_scores(prob: np.ndarray | torch.Tensor, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every score of one predicted image against its instance labels.

    The probability map is thresholded; the mask is split into objects by connected components
    and matched to the reference objects (:func:`match_instances`).

    Args:
        prob: Foreground probabilities ``(H, W)`` (or ``(1, H, W)``).
        labels: Reference instance label map ``(H, W)`` (0 = background).
        threshold: Probability above which a pixel is foreground.

    Returns:
        :func:`overlap_metrics` (dice, iou, accuracy, hd95), the object-level counts and rates
        ``tp, fp, fn, precision, recall, f1`` (prefixed ``object_``; pool the counts over images
        for a data-set F1) and the numbers of objects ``n_true, n_pred``.
    """
    p = np.asarray(prob.cpu() if isinstance(prob, torch.Tensor) else prob).squeeze()
    pred = p > threshold
    out = overlap_metrics(pred, labels > 0)
    pred_labels, _ = ndimage.label(pred)
    inst = match_instances(pred_labels, labels)
    out.update({f"object_{k}": inst[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")})
    out.update({"n_true": inst["tp"] + inst["fn"], "n_pred": inst["tp"] + inst["fp"]})
    return out


# --------------------------------------------------------------------------- volumes slice by slice


def axial_slices(volume: np.ndarray, mask: np.ndarray, keep: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The slices of a volume along its last axis (axial in RAS/MNI voxel order) as 2D training images.

    Args:
        volume: ``uint8`` volume ``(X, Y, Z)``.
        mask: Label volume of the same shape.
        keep: Boolean volume (e.g. the brain); only slices where it has a voxel are returned.
            Default: every slice.

    Returns:
        ``(images, masks, index)``: images ``(1, X, Y)``, masks ``(X, Y)`` and the slice indices ``(n,)``.
    """
    v, m = np.asarray(volume), np.asarray(mask)
    if v.ndim != 3 or v.shape != m.shape:
        raise ValueError(f"expected a 3D volume and a mask of the same shape, got {v.shape} and {m.shape}")
    index = np.arange(v.shape[2]) if keep is None else np.flatnonzero(np.asarray(keep).any(axis=(0, 1)))
    return [v[None, :, :, k] for k in index], [m[:, :, k] for k in index], index


def predict_volume(model: nn.Module, volume: np.ndarray, roi: int, overlap: float = 0.25, keep: np.ndarray | None = None) -> np.ndarray:
    """Foreground probabilities of a whole volume from a 2D model, slice by slice (:func:`sliding_window_predict`).

    Args:
        model: A 2D segmentation network with one output channel.
        volume: ``uint8`` volume ``(X, Y, Z)``; slices are taken along the last axis.
        roi, overlap: Sliding-window settings.
        keep: Boolean volume; slices where it is empty are not predicted (probability 0).

    Returns:
        ``float32`` probabilities ``(X, Y, Z)``.
    """
    images, _, index = axial_slices(volume, np.zeros_like(volume), keep)
    prob = np.zeros(np.shape(volume), np.float32)
    for k, image in zip(index, images):
        prob[:, :, k] = sliding_window_predict(model, image, roi, overlap)[0].numpy()
    return prob
