"""Figures used across the book. Every function returns a titled ``matplotlib`` Figure.

Figures are :class:`BookFigure` objects built with the object-oriented API, not ``pyplot``:
a notebook shows one only where it asks to (``display(fig)``, a cell ending in ``fig``, or
``myst_nb.glue``), as a PNG, whatever matplotlib backend is active.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, roc_auc_score, roc_curve

from dlmi.data import ImageSet

__all__ = ["BookFigure", "confusion", "embeddings", "filters", "learning_curves", "montage", "new_figure", "roc_curves"]


class BookFigure(Figure):
    """A matplotlib ``Figure`` that IPython displays as a PNG (no pyplot, no inline backend needed)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(**kwargs) -> BookFigure:
    """A new :class:`BookFigure` (constrained layout by default); ``kwargs`` go to ``Figure``."""
    kwargs.setdefault("layout", "constrained")
    return BookFigure(**kwargs)


def _image(x: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """One ``(C, H, W)`` image -> something ``imshow`` takes, and its colour map."""
    arr = x.detach().cpu().numpy()
    if arr.shape[0] == 1:
        return arr[0], "gray"
    return np.moveaxis(arr, 0, -1), None


def montage(data: ImageSet, per_class: int = 6, seed: int = 0, title: str | None = None) -> Figure:
    """A grid with ``per_class`` random images of every class, one row per class."""
    rng = np.random.default_rng(seed)
    k = data.n_classes
    fig = new_figure(figsize=(1.3 * per_class + 1.6, 1.3 * k + 0.6))
    axes = fig.subplots(k, per_class, squeeze=False)
    labels = data.labels.numpy()
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        chosen = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(chosen):
                img, cmap = _image(data.images[chosen[j]])
                ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
        axes[c, 0].set_ylabel(data.classes[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title or f"{data.name}: {per_class} random {data.split} images per class")
    return fig


def learning_curves(histories: Mapping[str, pd.DataFrame], metrics: Sequence[str] = ("loss", "acc"), title: str = "Learning curves") -> Figure:
    """Training (dashed) and validation (solid) curves of several runs, one panel per metric."""
    fig = new_figure(figsize=(5 * len(metrics), 3.6))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    colours = [f"C{i}" for i in range(len(histories))]
    for ax, metric in zip(axes, metrics):
        for colour, (name, h) in zip(colours, histories.items()):
            if f"train_{metric}" in h:
                # a run without validation is named on its training curve
                label = None if f"val_{metric}" in h else f"{name} (training)"
                ax.plot(h["epoch"], h[f"train_{metric}"], "--", color=colour, alpha=0.7, label=label)
            if f"val_{metric}" in h:
                ax.plot(h["epoch"], h[f"val_{metric}"], "-o", color=colour, ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(title="validation (solid), training (dashed)", fontsize=8, title_fontsize=8)
    fig.suptitle(title)
    return fig


def confusion(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray, classes: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Confusion matrix (counts) of the arg-max predictions."""
    y = np.asarray(labels)
    pred = np.asarray(probs).argmax(1)
    cm = confusion_matrix(y, pred, labels=np.arange(len(classes)))
    fig = new_figure(figsize=(1.0 * len(classes) + 2.5, 1.0 * len(classes) + 1.5))
    ax = fig.subplots()
    ConfusionMatrixDisplay(cm, display_labels=list(classes)).plot(ax=ax, colorbar=False, xticks_rotation=45, cmap="Blues")
    ax.set_title(title)
    return fig


def filters(weight: torch.Tensor, title: str = "First-layer filters") -> Figure:
    """The kernels of a convolution, ``weight`` of shape ``(out, in, k, k)``, one panel each.

    Greyscale for one input channel, RGB for three; each kernel is scaled to its own range.
    """
    w = weight.detach().cpu().float()
    n = w.shape[0]
    cols = min(8, n)
    rows = int(np.ceil(n / cols))
    fig = new_figure(figsize=(1.1 * cols, 1.1 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            k = w[i]
            k = (k - k.min()) / (k.max() - k.min() + 1e-8)
            img, cmap = _image(k)
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
    fig.suptitle(title)
    return fig


def embeddings(
    representations: Mapping[str, np.ndarray],
    labels: torch.Tensor | np.ndarray,
    classes: Sequence[str],
    method: str = "tsne",
    scores: Mapping[str, float] | None = None,
    seed: int = 0,
    title: str = "2-D projections of each layer's representation",
) -> Figure:
    """One scatter plot per representation, each projected to 2-D and coloured by class.

    Args:
        representations: ``{layer name: (N, D) array}``, in the order to plot.
        labels: Class index per row.
        classes: Class names.
        method: ``"tsne"`` or ``"pca"``.
        scores: Optional number per panel (e.g. a separability score) shown in its title.
    """
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    y = np.asarray(labels)
    n = len(representations)
    fig = new_figure(figsize=(3.4 * n, 3.9))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, feats) in zip(axes, representations.items()):
        x = PCA(n_components=min(50, *feats.shape), random_state=seed).fit_transform(feats)
        if method == "tsne":
            x = TSNE(n_components=2, init="pca", perplexity=30, random_state=seed).fit_transform(x)
        for c, cname in enumerate(classes):
            ax.scatter(x[y == c, 0], x[y == c, 1], s=4, alpha=0.7, label=cname, color=f"C{c}")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(name if scores is None else f"{name}\nsilhouette {scores[name]:.2f}", fontsize=10)
    axes[-1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    return fig



def roc_curves(
    labels: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
    scores: Mapping[str, np.ndarray],
    points: Mapping[str, float] | None = None,
    title: str = "ROC curves",
) -> Figure:
    """ROC curves of several binary classifiers (or one classifier on several splits), AUC in the legend.

    Args:
        labels: True labels ``(N,)``, 0 or 1, shared by every curve; or ``{curve: labels}`` when the
            curves are on different cases (e.g. validation and test split).
        scores: ``{curve: positive-class scores (N,)}``, in the order to draw.
        points: Optional ``{curve: threshold}``: the operating point of that threshold is marked.
        title: Figure title.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    def draw(ax, name: str, y: np.ndarray, s: np.ndarray, colour: str) -> None:
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=colour, lw=1.5, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        if points and name in points:
            pred = s >= points[name]
            ax.plot(pred[y == 0].mean(), pred[y == 1].mean(), "o", color=colour, ms=6, mec="k")

    def chance(ax) -> None:
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="chance (AUC 0.5)")

    fig, ax = _curves_figure(labels, scores, draw, title, first=chance)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.legend(fontsize=7.5, loc="lower right")
    return fig


def _curves_figure(labels, scores: Mapping[str, np.ndarray], draw, title: str, first=None) -> tuple[Figure, Axes]:
    """One square unit-range panel with a curve per entry of ``scores``, drawn by ``draw(ax, name, y, s, colour)``
    after ``first(ax)`` (e.g. a reference line)."""
    fig = new_figure(figsize=(5.6, 5.0))
    ax = fig.subplots()
    if first is not None:
        first(ax)
    for i, (name, s) in enumerate(scores.items()):
        y, s = np.asarray(labels[name] if isinstance(labels, Mapping) else labels), np.asarray(s)
        if s.shape != y.shape:
            raise ValueError(f"scores of {name!r} have shape {s.shape}, labels {y.shape}")
        draw(ax, name, y, s, f"C{i % 10}")
    ax.set_xlim(-0.01, 1.01), ax.set_ylim(-0.01, 1.01), ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig, ax


# --- io figures (dlmi.io helpers) ---

__all__ += ["dicom_montage", "label_resampling", "three_planes"]

# Colours of label values 1, 2, 3, ... in overlays (label 0 is background and not drawn).
LABEL_COLOURS = ("#e41a1c", "#4daf4a", "#ffd92f", "#377eb8", "#ff7f00", "#984ea3", "#a65628", "#f781bf")
INVALID_COLOUR, INVALID_WHOLE_COLOUR = "#ff00ff", "#00e5ff"


def _to_ras_arrays(img) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """A nibabel image -> (RAS+ array, voxel spacing in mm, RAS+ affine)."""
    import nibabel as nib

    can = nib.as_closest_canonical(img)
    data = np.asarray(can.dataobj)
    if data.ndim != 3:
        raise ValueError(f"expected a 3-D image, got shape {data.shape}")
    return data, tuple(float(z) for z in can.header.get_zooms()[:3]), can.affine


def _label_overlay(labels: np.ndarray, values: Sequence[int]) -> tuple[np.ma.MaskedArray, "ListedColormap"]:
    """Label slice -> colour-index array (background masked) and its colour map."""
    from matplotlib.colors import ListedColormap

    index = np.searchsorted(np.asarray(values), labels) + 1
    colours = [LABEL_COLOURS[i % len(LABEL_COLOURS)] for i in range(len(values))]
    return np.ma.masked_where(labels == 0, index), ListedColormap(colours)


def _direction_letters(ax, left: str, right: str, top: str, bottom: str) -> None:
    style = dict(transform=ax.transAxes, color="white", fontsize=9, fontweight="bold",
                 bbox=dict(boxstyle="round,pad=0.15", facecolor="black", alpha=0.6, linewidth=0))
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def three_planes(
    image,
    mask=None,
    point: Sequence[int] | None = None,
    label_names: Mapping[int, str] | None = None,
    title: str | None = None,
    radiological: bool = True,
    outline: bool = False,
) -> Figure:
    """Axial, coronal and sagittal slices through one point, with an optional label overlay.

    Both images are first reoriented to RAS+ (``nibabel.as_closest_canonical``), so any stored
    orientation is shown the same way: axial and coronal in radiological convention (the patient's
    right on the viewer's left; ``radiological=False`` for neurological), sagittal with anterior on
    the left. Each panel keeps the true physical aspect ratio (from the voxel spacing) and is
    labelled with the anatomical directions R/L, A/P, S/I.

    Args:
        image: A 3-D nibabel image (NIfTI).
        mask: Optional label map on the same voxel grid (0 = background), drawn in colour.
        point: ``(i, j, k)`` voxel of the RAS+-reoriented image where the planes cross. Default:
            for each axis the slice with most mask voxels, or the centre without a mask.
        label_names: Legend names per label value, e.g. ``{1: "lesion"}``.
        title: Figure title.
        radiological: Radiological (default) or neurological left-right convention.
        outline: Draw each label's outline instead of filling it (to see the intensities below).

    Raises:
        ValueError: not 3-D, or the mask is on another voxel grid.
    """
    from matplotlib.patches import Patch

    data, (sx, sy, sz), affine = _to_ras_arrays(image)
    labels = values = None
    if mask is not None:
        labels, _, mask_affine = _to_ras_arrays(mask)
        if labels.shape != data.shape or not np.allclose(mask_affine, affine, atol=1e-3):
            raise ValueError("mask and image are on different voxel grids; resample the mask onto the image (nearest neighbour)")
        values = [int(v) for v in np.unique(labels) if v != 0]
    if point is None:
        if labels is not None and values:
            fg = labels != 0
            point = tuple(int(fg.sum(axis=tuple(a for a in range(3) if a != ax)).argmax()) for ax in range(3))
        else:
            point = tuple(n // 2 for n in data.shape)
    i, j, k = (int(p) for p in point)
    if not all(0 <= p < n for p, n in zip((i, j, k), data.shape)):
        raise ValueError(f"point {point} lies outside the image of shape {data.shape}")
    body = data[np.isfinite(data) & (data != 0)]
    vmin, vmax = np.percentile(body, [0.5, 99.5]) if body.size else (0.0, 1.0)
    nx, ny, _ = data.shape
    lr = ("R", "L") if radiological else ("L", "R")

    def flip_x(a: np.ndarray) -> np.ndarray:  # columns run along x (towards R): flip for radiological
        return a[:, ::-1] if radiological else a

    x_col = nx - 1 - i if radiological else i
    planes = [  # name, slice index, image rows x cols, label slice, aspect, letters, crosshair (row, col)
        ("axial", k, flip_x(data[:, :, k].T), None if labels is None else flip_x(labels[:, :, k].T), sy / sx, (*lr, "A", "P"), (j, x_col)),
        ("coronal", j, flip_x(data[:, j, :].T), None if labels is None else flip_x(labels[:, j, :].T), sz / sx, (*lr, "S", "I"), (k, x_col)),
        ("sagittal", i, data[i, ::-1, :].T, None if labels is None else labels[i, ::-1, :].T, sz / sy, ("A", "P", "S", "I"), (k, ny - 1 - j)),
    ]
    fig = new_figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 3)
    for ax, (name, index, img, lab, aspect, letters, (row, col)) in zip(axes, planes):
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", aspect=aspect)
        if lab is not None and values and outline:
            # each label drawn thinner than the one before, so shared boundaries show both colours
            for n, (v, width) in enumerate(zip(values, np.linspace(2.8, 1.0, len(values)))):
                if (lab == v).any():
                    ax.contour(lab == v, levels=[0.5], colors=[LABEL_COLOURS[n % len(LABEL_COLOURS)]], linewidths=float(width))
            ax.set_xlim(-0.5, img.shape[1] - 0.5), ax.set_ylim(-0.5, img.shape[0] - 0.5)
        elif lab is not None and values:
            overlay, cmap = _label_overlay(lab, values)
            ax.imshow(overlay, cmap=cmap, vmin=0.5, vmax=len(values) + 0.5, origin="lower", aspect=aspect, alpha=0.65, interpolation="nearest")
        ax.axhline(row, color="#00bfff", lw=0.6, alpha=0.6)
        ax.axvline(col, color="#00bfff", lw=0.6, alpha=0.6)
        _direction_letters(ax, *letters)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{name} (slice {index})", fontsize=10)
    if values:
        names = label_names or {}
        handles = [Patch(color=LABEL_COLOURS[n % len(LABEL_COLOURS)], label=names.get(v, f"label {v}")) for n, v in enumerate(values)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    convention = "radiological" if radiological else "neurological"
    spacing = f"{sx:g} x {sy:g} x {sz:g} mm"
    fig.suptitle(title or f"Three planes through voxel ({i}, {j}, {k}), RAS+, {spacing} voxels, {convention} view")
    return fig


def _world_extent(shape: tuple[int, ...], affine: np.ndarray) -> list[float]:
    """imshow extent (x0, x1, y0, y1) in mm of an axial slice of an axis-aligned RAS+ grid."""
    (sx, sy), (ox, oy) = np.diag(affine)[:2], affine[:2, 3]
    return [ox - sx / 2, ox + (shape[0] - 0.5) * sx, oy - sy / 2, oy + (shape[1] - 0.5) * sy]


def _label_rgb(labels: np.ndarray, valid: Sequence[int]) -> np.ndarray:
    """Label slice -> RGB: valid labels in their colours, invalid values magenta (whole numbers cyan)."""
    from matplotlib.colors import to_rgb

    rgb = np.zeros(labels.shape + (3,))
    values = np.round(labels, 3)
    for n, v in enumerate(v for v in valid if v != 0):
        rgb[values == v] = to_rgb(LABEL_COLOURS[n % len(LABEL_COLOURS)])
    invalid = ~np.isin(values, valid)
    whole = invalid & (values == np.round(values))
    rgb[invalid & ~whole] = to_rgb(INVALID_COLOUR)
    rgb[whole] = to_rgb(INVALID_WHOLE_COLOUR)
    return rgb


def label_resampling(demo, label_names: Mapping[int, str] | None = None, title: str | None = None, margin_mm: float = 12.0) -> Figure:
    """A label map resampled with linear vs nearest-neighbour interpolation, invalid values highlighted.

    Three axial close-ups of the same region (the slice with most labelled voxels, radiological view)
    and a bar chart of the invalid values linear interpolation created in the whole volume:
    fractional values in magenta, whole numbers that are not labels (e.g. 3) in cyan.

    Args:
        demo: A :class:`dlmi.io.LabelResampling` (from :func:`dlmi.io.label_interpolation`).
        label_names: Legend names per label value.
        title: Figure title.
        margin_mm: Margin around the labelled region in the close-ups.
    """
    from matplotlib.patches import Patch

    near = np.asarray(demo.nearest.dataobj)
    z_out = int((near != 0).sum(axis=(0, 1)).argmax())
    world = demo.nearest.affine @ np.array([0.0, 0.0, z_out, 1.0])
    z_in = int(np.rint((np.linalg.inv(demo.original.affine) @ world)[2]))
    orig = np.asarray(demo.original.dataobj)
    panels = [
        ("original", orig[:, :, z_in], demo.original.affine),
        ("linear interpolation", np.asarray(demo.linear.dataobj)[:, :, z_out], demo.linear.affine),
        ("nearest neighbour", near[:, :, z_out], demo.nearest.affine),
    ]
    fig = new_figure(figsize=(13, 4.8))
    axes = fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.25])
    xs, ys = np.nonzero(orig[:, :, z_in])
    corners = demo.original.affine[:2, :2] @ np.array([[xs.min(), xs.max()], [ys.min(), ys.max()]]) + demo.original.affine[:2, 3:4]
    (x0, x1), (y0, y1) = np.sort(corners[0]), np.sort(corners[1])
    for ax, (name, sl, aff) in zip(axes, panels):
        ax.imshow(np.transpose(_label_rgb(sl, demo.valid), (1, 0, 2)), origin="lower", extent=_world_extent(sl.shape, aff), interpolation="nearest")
        ax.set_xlim(x1 + margin_mm, x0 - margin_mm)  # radiological: patient's right on the left
        ax.set_ylim(y0 - margin_mm, y1 + margin_mm)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{name}\n{abs(aff[0, 0]):g} mm voxels", fontsize=10)
        _direction_letters(ax, "R", "L", "A", "P")
    bars = fig.axes[3]
    whole = [v == round(v) for v in demo.invalid_values]
    bars.bar(range(len(demo.invalid_values)), demo.invalid_counts, color=[INVALID_WHOLE_COLOUR if w else INVALID_COLOUR for w in whole], edgecolor="black", linewidth=0.4)
    bars.set_xticks(range(len(demo.invalid_values)), [f"{v:g}" for v in demo.invalid_values], rotation=90, fontsize=8)
    bars.set_yscale("log")
    bars.set_xlabel("value after linear interpolation")
    bars.set_ylabel("voxels in the whole volume")
    bars.set_title(f"{demo.n_invalid:,} voxels hold no valid label\n(valid: {', '.join(str(v) for v in demo.valid)})", fontsize=10)
    names = label_names or {}
    handles = [Patch(color=LABEL_COLOURS[n % len(LABEL_COLOURS)], label=names.get(v, f"label {v}")) for n, v in enumerate(v for v in demo.valid if v != 0)]
    handles += [Patch(color=INVALID_COLOUR, label="invalid: fractional value"), Patch(color=INVALID_WHOLE_COLOUR, label="invalid: whole number that is no label")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title or "Resampling a label map: linear interpolation invents labels, nearest neighbour does not")
    return fig


def dicom_montage(images: Sequence, cols: int = 3, title: str = "DICOM images") -> Figure:
    """One panel per DICOM image, each titled with file name, modality, size and pixel spacing.

    Greyscale images use the display window from their header (else the 1st-99th percentile of
    their data pixels); colour images are shown as stored. The physical aspect ratio comes from
    the pixel spacing. A graphics overlay, if the file has one, is drawn in red.

    Args:
        images: :class:`dlmi.io.DicomImage` objects (from :func:`dlmi.io.read_dicom_image`).
        cols: Panels per row.
        title: Figure title.
    """
    from matplotlib.colors import ListedColormap

    rows = int(np.ceil(len(images) / cols))
    fig = new_figure(figsize=(3.6 * cols, 3.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image in zip(axes, images):
        aspect = image.spacing[0] / image.spacing[1] if image.spacing else 1.0
        if image.pixels.ndim == 3:
            ax.imshow(image.pixels, aspect=aspect)
        else:
            if image.window is not None:
                centre, width = image.window
                vmin, vmax = centre - width / 2, centre + width / 2
            else:
                keep = image.pixels if image.padding is None else image.pixels[~image.padding]
                vmin, vmax = np.percentile(keep, [1, 99])
            ax.imshow(image.pixels, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect)
        if image.overlay is not None and image.overlay.any():
            ax.imshow(np.ma.masked_where(~image.overlay, image.overlay), cmap=ListedColormap(["red"]), aspect=aspect, interpolation="nearest")
        h, w = image.pixels.shape[:2]
        spacing = f"{image.spacing[1]:.2f} mm pixels" if image.spacing else "no pixel spacing"
        ax.set_title(f"{image.name}\n{image.modality}, {w} x {h}, {spacing}", fontsize=9)
    fig.suptitle(title)
    return fig


# --- inspect figures (dlmi.inspect helpers) ---


__all__ += ["class_balance", "duplicate_pairs", "split_histograms", "statistics_by_class"]


def _wrap(text: str, width: int = 16) -> str:
    """Wrap a long class name onto several short lines."""
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def class_balance(balance: pd.DataFrame, title: str | None = None) -> Figure:
    """Share of every class in every split as grouped bars, with the uniform share 1/K as a line.

    Args:
        balance: A table from :func:`dlmi.inspect.class_balance` (columns split, class, count, share, uniform).
        title: Figure title (default: "Class balance per split").
    """
    need = {"split", "class", "count", "share", "uniform"}
    if not need <= set(balance.columns):
        raise ValueError(f"balance needs columns {sorted(need)}; pass a table from dlmi.inspect.class_balance")
    splits = list(dict.fromkeys(balance["split"]))
    classes = list(dict.fromkeys(balance["class"]))
    k, s = len(classes), len(splits)
    fig = new_figure(figsize=(min(11.0, max(5.0, 0.85 * k * max(s, 2) / 2 + 2.5)), 3.8))
    ax = fig.subplots()
    width = 0.8 / s
    x = np.arange(k)
    for p, split in enumerate(splits):
        rows = balance[balance["split"] == split].set_index("class").reindex(classes)
        pos = x + (p - (s - 1) / 2) * width
        ax.bar(pos, rows["share"], width=width, color=f"C{p}", label=f"{split} ({int(rows['count'].sum()):,} images)")
        if k <= 4:
            for xi, share, n in zip(pos, rows["share"], rows["count"]):
                ax.text(xi, share + 0.01, f"{int(n):,}", ha="center", va="bottom", fontsize=8)
    uniform = float(balance["uniform"].iloc[0])
    ax.axhline(uniform, color="k", ls="--", lw=1.2, label=f"uniform share (1/{k})")
    ax.set_xticks(x, [_wrap(c, 14) for c in classes], fontsize=8, rotation=0 if k <= 4 else 35, ha="center" if k <= 4 else "right")
    ax.set_ylabel("share of the split's images")
    ax.set_ylim(0, min(1.0, max(float(balance["share"].max()), uniform) * 1.25))
    ax.grid(alpha=0.3, axis="y")
    if k <= 4:
        ax.legend(fontsize=8, loc="upper left")
    else:  # many classes: keep the legend clear of the bars
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "Class balance per split")
    return fig


def duplicate_pairs(
    sets: Sequence[ImageSet], pairs: pd.DataFrame, n: int = 8, fmt: str = "distance {:.2g}", title: str | None = None
) -> Figure:
    """The first ``n`` pairs of a duplicate table side by side: image a above image b.

    Each image is captioned with its split, index and class; the distance is above each pair.
    Pairs whose labels disagree are framed and captioned in red.

    Args:
        sets: The splits the pairs refer to (matched by their ``split`` names).
        pairs: A table from :func:`dlmi.inspect.exact_duplicates` or ``near_duplicates`` (already filtered and sorted).
        n: Number of pairs (columns) to show.
        fmt: Format of the distance, e.g. ``"{:.0f} bits"`` for perceptual hashes.
        title: Figure title.
    """
    by_split = {s.split: s for s in sets}
    shown = pairs.head(n)
    missing = (set(shown["split_a"]) | set(shown["split_b"])) - set(by_split)
    if missing:
        raise ValueError(f"pairs refer to splits {sorted(missing)} that are not in sets {sorted(by_split)}")
    cols = max(len(shown), 1)
    fig = new_figure(figsize=(1.45 * cols + 0.4, 4.3))
    axes = fig.subplots(2, cols, squeeze=False)
    for c in range(cols):
        for r in range(2):
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
        if c >= len(shown):
            axes[0, c].set_axis_off(), axes[1, c].set_axis_off()
            axes[0, c].set_title("no pairs", fontsize=9)
            continue
        row = shown.iloc[c]
        colour = "k" if bool(row["same_label"]) else "red"
        for r, side in enumerate("ab"):
            data = by_split[row[f"split_{side}"]]
            index = int(row[f"index_{side}"])
            img, cmap = _image(data.images[index])
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
            label = row[f"label_{side}"]
            name = data.classes[label] if isinstance(label, (int, np.integer)) else str(label)
            caption = f"{row[f'split_{side}']} #{index}\n{_wrap(name, 14)}"
            if r == 0:
                distance = "identical" if bool(row["exact"]) else fmt.format(row["distance"])
                ax.set_title(f"{distance}\n\n{caption}", fontsize=7.5, color=colour)
            else:
                ax.set_xlabel(caption, fontsize=7.5, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour), spine.set_linewidth(2 if colour == "red" else 0.8)
    fig.suptitle(title or "Duplicate pairs (top: first image, bottom: its copy)")
    return fig


def statistics_by_class(
    stats: pd.DataFrame,
    labels: torch.Tensor | np.ndarray,
    classes: Sequence[str],
    features: Sequence[str] | None = None,
    scores: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Box plots of per-image statistics, one panel per statistic and one box per class.

    Boxes span the quartiles, the line is the median and whiskers reach 1.5 IQR (outliers not drawn).

    Args:
        stats: Per-image statistics, e.g. from :func:`dlmi.inspect.image_statistics`.
        labels: Class index per image.
        classes: Class names.
        features: Columns to show (default: all).
        scores: Optional text per feature (e.g. ``"AUC 0.76"``) added to the panel titles.
        title: Figure title.
    """
    features = list(features or stats.columns)
    unknown = sorted(set(features) - set(stats.columns))
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; available: {list(stats.columns)}")
    y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if len(y) != len(stats):
        raise ValueError(f"{len(stats)} rows of statistics but {len(y)} labels")
    ncols = min(4, len(features))
    nrows = int(np.ceil(len(features) / ncols))
    fig = new_figure(figsize=(2.6 * ncols + 1.6, 0.32 * len(classes) * nrows + 1.2 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    present = [c for c in range(len(classes)) if (y == c).any()]
    for p, ax in enumerate(axes.ravel()):
        if p >= len(features):
            ax.set_axis_off()
            continue
        f = features[p]
        v = stats[f].to_numpy()
        box = ax.boxplot([v[y == c] for c in present], positions=np.arange(len(present)), orientation="horizontal",
                         showfliers=False, patch_artist=True, widths=0.6, medianprops={"color": "k"})  # fmt: skip
        for c, patch in zip(present, box["boxes"]):
            patch.set_facecolor(f"C{c % 10}"), patch.set_alpha(0.6)
        ax.set_title(f if not scores or f not in scores else f"{f}\n{scores[f]}", fontsize=9)
        ax.tick_params(axis="both", labelsize=7.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.grid(alpha=0.3, axis="x")
    axes[0, 0].set_yticks(np.arange(len(present)), [classes[c] for c in present])
    axes[0, 0].invert_yaxis()
    fig.suptitle(title or "Per-image statistics by class")
    return fig


def split_histograms(sets: Sequence[ImageSet], bins: int = 32, label: int | None = None, title: str | None = None) -> Figure:
    """Distribution of pixel values per channel, one line per split (all images, or one class).

    Args:
        sets: The splits to compare (same number of channels).
        bins: Histogram bins over 0-255.
        label: If given, only the images of this class.
        title: Figure title.
    """
    from dlmi.inspect import channel_histograms

    if not sets:
        raise ValueError("no splits given: pass e.g. [train, val, test]")
    channels = {int(s.images.shape[1]) for s in sets}
    if len(channels) != 1:
        raise ValueError(f"all splits must have the same number of channels, got {sorted(channels)}")
    c = channels.pop()
    names = ("red", "green", "blue") if c == 3 else ("grey level",)
    fig = new_figure(figsize=(3.3 * c + 0.8, 3.0))
    axes = fig.subplots(1, c, squeeze=False, sharey=True)[0]
    edges = np.linspace(0, 256, bins + 1)
    styles = ["-", "--", ":", "-."]
    for p, s in enumerate(sets):
        images = s.images if label is None else s.images[s.labels == label]
        if len(images) == 0:
            continue
        hist = channel_histograms(images, bins=bins)
        for ch, ax in enumerate(axes):
            ax.stairs(hist[ch], edges, color=f"C{p}", ls=styles[p % 4], lw=1.6, label=f"{s.split} ({len(images):,})")
    for ax, name in zip(axes, names):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("pixel value")
        ax.set_xlim(0, 256)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of pixels")
    axes[-1].legend(fontsize=8, title="split (images)", title_fontsize=8)
    what = "all classes" if label is None else f"class {sets[0].classes[label]!r}"
    fig.suptitle(title or f"{sets[0].name}: pixel values per channel and split ({what})")
    return fig


# --- radiomics figures (tables of dlmi.radiomics.regions_table) ---

__all__ += ["lesion_features", "region_feature_bars"]


def _check_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the table; it has {list(table.columns)}")


def region_feature_bars(
    table: pd.DataFrame,
    features: Mapping[str, str],
    group: str = "region",
    hue: str = "sequence",
    title: str | None = None,
) -> Figure:
    """Grouped bars of a few features: one panel per feature, one group per region, one bar per sequence.

    Args:
        table: One row per (region, sequence), e.g. from :func:`dlmi.radiomics.regions_table`.
        features: ``{column: panel title}``, e.g. ``{"firstorder_Mean": "mean (z)"}``.
        group, hue: Columns that name the bar groups and the bars within a group (in table order).
        title: Figure title.
    """
    _check_columns(table, [group, hue, *features])
    groups, hues = list(dict.fromkeys(table[group])), list(dict.fromkeys(table[hue]))
    values = table.pivot_table(index=group, columns=hue, values=list(features), aggfunc="first")
    fig = new_figure(figsize=(3.4 * len(features) + 0.6, 3.4))
    axes = fig.subplots(1, len(features), squeeze=False)[0]
    width = 0.8 / len(hues)
    x = np.arange(len(groups))
    for ax, (column, label) in zip(axes, features.items()):
        for k, h in enumerate(hues):
            ax.bar(x + (k - (len(hues) - 1) / 2) * width, values[column][h].reindex(groups), width, color=f"C{k % 10}", label=str(h))
        ax.set_xticks(x, [_wrap(str(g), 12) for g in groups], fontsize=8.5)
        ax.set_title(label, fontsize=10)
        ax.axhline(0, color="k", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8, title=hue, title_fontsize=8)
    fig.suptitle(title or "Features per region and sequence")
    return fig


def lesion_features(
    table: pd.DataFrame,
    feature: str = "firstorder_Mean",
    feature_label: str = "mean intensity (z)",
    title: str | None = None,
) -> Figure:
    """Shape and intensity of many lesions: sphericity against volume, and one feature per sequence.

    Args:
        table: One row per (lesion, sequence) with ``shape_MeshVolume`` (mm³) and
            ``shape_Sphericity``, e.g. from :func:`dlmi.radiomics.regions_table`.
        feature: Column shown per sequence (right panel), one dot per lesion.
        feature_label: Its axis label.
        title: Figure title.
    """
    _check_columns(table, ["region", "sequence", "shape_MeshVolume", "shape_Sphericity", feature])
    shape = table.groupby("region", sort=False)[["shape_MeshVolume", "shape_Sphericity"]].first()
    sequences = list(dict.fromkeys(table["sequence"]))
    fig = new_figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.2])
    left.scatter(shape["shape_MeshVolume"] / 1000, shape["shape_Sphericity"], s=18, color="C3", alpha=0.7, edgecolor="k", lw=0.4)
    left.set_xscale("log")
    left.set_xlabel("volume (ml, log scale)")
    left.set_ylabel("sphericity (1 = sphere)")
    left.set_title(f"shape of {len(shape)} lesions", fontsize=10)
    left.grid(alpha=0.3)
    rng = np.random.default_rng(0)
    for k, s in enumerate(sequences):
        v = table.loc[table["sequence"] == s, feature].to_numpy()
        right.scatter(k + rng.uniform(-0.18, 0.18, len(v)), v, s=12, color=f"C{k % 10}", alpha=0.6)
        right.plot([k - 0.3, k + 0.3], [np.median(v)] * 2, color="k", lw=1.5)
    right.set_xticks(range(len(sequences)), sequences)
    right.axhline(0, color="0.5", lw=0.8, ls=":")
    right.set_ylabel(feature_label)
    right.set_title(f"{feature_label} per sequence (line: median)", fontsize=10)
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(title or "Lesion features")
    return fig

# --- evaluation figures (chapter 7: dlmi.metrics) ---

__all__ += ["image_grid", "pr_curves", "reliability_diagram", "robustness_curves", "score_histograms"]


def pr_curves(
    labels: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
    scores: Mapping[str, np.ndarray],
    title: str = "Precision-recall curves",
) -> Figure:
    """Precision-recall curves of binary classifiers, average precision (AP) in the legend.

    The dotted line is the prevalence: the precision of a classifier that ignores the image.

    Args:
        labels: True labels ``(N,)`` shared by every curve, or ``{curve: labels}``.
        scores: ``{curve: positive-class scores (N,)}``.
        title: Figure title.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    def draw(ax, name: str, y: np.ndarray, s: np.ndarray, colour: str) -> None:
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, color=colour, lw=1.5, label=f"{name} (AP {average_precision_score(y, s):.3f})")
        ax.axhline(y.mean(), color=colour, ls=":", lw=1)

    fig, ax = _curves_figure(labels, scores, draw, title)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (positive predictive value)")
    ax.legend(fontsize=7.5, loc="lower left")
    return fig


def score_histograms(labels: np.ndarray, scores: np.ndarray, classes: Sequence[str], thresholds: Mapping[str, float] | None = None,
                     title: str = "Scores by true class") -> Figure:
    """Histograms of a binary classifier's scores for each true class, with thresholds as vertical lines.

    Args:
        labels: True labels ``(N,)``, 0 or 1.
        scores: Positive-class scores ``(N,)`` in [0, 1].
        classes: Names of class 0 and class 1.
        thresholds: ``{name: threshold}`` to mark.
        title: Figure title.
    """
    y, s = np.asarray(labels), np.asarray(scores)
    fig = new_figure(figsize=(7.5, 3.4))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    for c, name in enumerate(classes):
        ax.hist(s[y == c], bins=bins, alpha=0.55, color=f"C{c}", label=f"true {name} (n={int((y == c).sum())})")
    for i, (name, t) in enumerate((thresholds or {}).items()):
        ax.axvline(t, color="k", ls=["--", ":", "-."][i % 3], lw=1.2, label=f"{name}: {t:.3f}")
    ax.set_xlabel(f"predicted probability of {classes[1]}")
    ax.set_ylabel("images")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def reliability_diagram(tables: Mapping[str, pd.DataFrame], title: str = "Reliability diagram") -> Figure:
    """Accuracy against confidence per bin (from :func:`dlmi.metrics.reliability_table`), one line per model.

    A calibrated model lies on the diagonal; below it, the model is over-confident. The lower
    panel shows how many cases fall in each bin (log scale).
    """
    fig = new_figure(figsize=(5.6, 6.2))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1, label="perfect calibration")
    width = 1.0 / max(1, max(len(t) for t in tables.values())) / (len(tables) + 1)
    for i, (name, t) in enumerate(tables.items()):
        top.plot(t["confidence"], t["accuracy"], "o-", color=f"C{i % 10}", ms=4, lw=1.5, label=name)
        centres = (t["bin_low"] + t["bin_high"]) / 2
        bottom.bar(centres + (i - (len(tables) - 1) / 2) * 0.02, t["count"], width=0.02, color=f"C{i % 10}", alpha=0.8)
    top.set_ylabel("accuracy in the bin")
    top.set_xlim(0, 1.01), top.set_ylim(0, 1.01)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.set_yscale("log")
    bottom.set_xlabel("confidence (largest predicted probability)")
    bottom.set_ylabel("cases")
    bottom.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def robustness_curves(table: pd.DataFrame, metric: str = "auc", units: Mapping[str, str] | None = None,
                      title: str = "Robustness to synthetic shifts") -> Figure:
    """A metric against the severity of each synthetic shift, mean over seeds with a band of ± 1 sd.

    Args:
        table: One row per (shift, severity, seed) with columns ``shift, severity, seed`` and ``metric``.
        metric: The column to plot.
        units: ``{shift: x-axis label}``.
        title: Figure title.
    """
    _check_columns(table, ["shift", "severity", "seed", metric])
    shifts = list(dict.fromkeys(table["shift"]))
    fig = new_figure(figsize=(3.0 * len(shifts), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(shifts), sharey=True))
    for ax, shift in zip(axes, shifts):
        stats = table[table["shift"] == shift].groupby("severity")[metric].agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], "o-", color="C0", ms=4)
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color="C0", alpha=0.25)
        ax.set_title(shift, fontsize=10)
        ax.set_xlabel((units or {}).get(shift, "severity"), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    fig.suptitle(title)
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str], cols: int = 8, title: str | None = None) -> Figure:
    """Images ``(N, C, H, W)`` in a grid, each with its own small title (e.g. label and prediction)."""
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    n = len(images)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = new_figure(figsize=(1.5 * cols, 1.75 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, text in zip(axes, images, titles):
        arr, cmap = _image(img)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=255)
        ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


# --- attribution figures (chapter 8: dlmi.interpret) ---

__all__ += ["attribution_overlays", "deletion_curves", "randomisation_cascade", "randomisation_similarity"]


def _unit_map(attribution: torch.Tensor | np.ndarray) -> np.ndarray:
    """One attribution ``(C, H, W)`` or ``(H, W)`` -> its magnitude (abs, summed over channels) scaled to [0, 1]."""
    a = np.abs(np.asarray(attribution.detach().cpu() if isinstance(attribution, torch.Tensor) else attribution, dtype=float))
    if a.ndim == 3:
        a = a.sum(0)
    top = a.max()
    return a / top if top > 0 else a


def _heat_rgba(unit: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """A [0, 1] map -> RGBA whose opacity grows with the value, so the image shows through weak regions."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](unit)
    rgba[..., 3] = 0.1 + 0.85 * unit
    return rgba


def _outline(ax, region: np.ndarray, color: str = "cyan") -> None:
    """Draw the bounding box of a boolean ``(H, W)`` region."""
    from matplotlib.patches import Rectangle

    rows, cols = np.nonzero(region)
    ax.add_patch(Rectangle((cols.min() - 0.5, rows.min() - 0.5), np.ptp(cols) + 1, np.ptp(rows) + 1,
                           fill=False, edgecolor=color, lw=1.2, ls="--"))


def attribution_overlays(
    images: torch.Tensor,
    attributions: Mapping[str, torch.Tensor],
    row_labels: Sequence[str] | None = None,
    region: np.ndarray | None = None,
    title: str = "Attribution maps",
) -> Figure:
    """A grid: one row per image, the image then one overlay per attribution method.

    Each map is the magnitude of the attributions (absolute values summed over channels),
    scaled to [0, 1] within its own image, drawn in the "inferno" colours with an opacity that
    grows with the value over the greyscale (or colour) image.

    Args:
        images: ``uint8`` images ``(N, C, H, W)``.
        attributions: ``{method: attributions (N, C, H, W)}``.
        row_labels: A label per image (e.g. true class and probability), shown left of each row.
        region: Optional boolean ``(H, W)`` region to outline on every panel (e.g. a marker).
        title: Figure title.
    """
    n = len(images)
    for name, a in attributions.items():
        if tuple(a.shape) != tuple(images.shape):
            raise ValueError(f"attributions of {name!r} have shape {tuple(a.shape)}, images {tuple(images.shape)}")
    if row_labels is not None and len(row_labels) != n:
        raise ValueError(f"{len(row_labels)} row labels for {n} images")
    cols = 1 + len(attributions)
    fig = new_figure(figsize=(1.75 * cols + 1.2, 1.75 * n + 0.7))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        img, cmap = _image(images[i])
        for j, ax in enumerate(axes[i]):
            ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if j > 0:
                ax.imshow(_heat_rgba(_unit_map(list(attributions.values())[j - 1][i])))
            if region is not None:
                _outline(ax, region)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
    for ax, name in zip(axes[0], ["image", *attributions]):
        ax.set_title(name, fontsize=9)
    fig.suptitle(title)
    return fig


def randomisation_cascade(
    image: torch.Tensor,
    steps: Mapping[str, Sequence[tuple[str, torch.Tensor]]],
    title: str = "Cascading randomisation of the weights",
) -> Figure:
    """The maps of one image as the network's blocks are randomised from the head down.

    Args:
        image: One ``uint8`` image ``(C, H, W)``.
        steps: ``{method: [(step label, attribution (C, H, W)), ...]}``, from
            :func:`dlmi.interpret.cascading_randomisation` (one image's slice); every method
            with the same step labels.
        title: Figure title.
    """
    labels = [label for label, _ in next(iter(steps.values()))]
    fig = new_figure(figsize=(1.45 * (len(labels) + 1) + 1.0, 1.55 * len(steps) + 0.9))
    axes = fig.subplots(len(steps), len(labels) + 1, squeeze=False)
    img, cmap = _image(image)
    for r, (method, seq) in enumerate(steps.items()):
        if [label for label, _ in seq] != labels:
            raise ValueError(f"method {method!r} has other steps than {labels}")
        axes[r, 0].imshow(img, cmap=cmap, vmin=0, vmax=255)
        axes[r, 0].set_ylabel(method, fontsize=9)
        for c, (_, a) in enumerate(seq, start=1):
            axes[r, c].imshow(_unit_map(a), cmap="inferno", vmin=0, vmax=1)
        for ax in axes[r]:
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    for c, label in enumerate(labels, start=1):
        axes[0, c].set_title(label if c == 1 else f"+ {label}", fontsize=9)
    fig.suptitle(title)
    return fig


def randomisation_similarity(table: pd.DataFrame, title: str = "Similarity to the trained model's maps") -> Figure:
    """Rank correlation and SSIM against the trained model's maps, step by step of the cascade.

    Args:
        table: One row per (method, step, image) with columns ``method``, ``step``,
            ``spearman`` and ``ssim``; steps in cascade order.
        title: Figure title.
    """
    missing = [c for c in ("method", "step", "spearman", "ssim") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    steps = list(dict.fromkeys(table["step"]))
    fig = new_figure(figsize=(10, 3.9))
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(steps))
    for ax, col, name in zip(axes, ("spearman", "ssim"), ("Spearman rank correlation", "SSIM")):
        for k, (method, part) in enumerate(table.groupby("method", sort=False)):
            g = part.groupby("step", sort=False)[col]
            mean, sd = g.mean().reindex(steps), g.std().reindex(steps).fillna(0)
            ax.plot(x, mean, "o-", color=f"C{k}", label=method, lw=1.5, ms=4)
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{k}", alpha=0.12)
        ax.axhline(0, color="0.4", lw=0.8, ls=":")
        ax.set_xticks(x, [s if i < 2 else f"+ {s}" for i, s in enumerate(steps)], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{name} (mean ± sd over images)", fontsize=10)
        ax.set_xlabel("blocks randomised, from the head down")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the trained model's map")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def deletion_curves(
    fractions: np.ndarray,
    curves: Mapping[str, Mapping[str, np.ndarray]],
    title: str = "Deletion and insertion curves",
) -> Figure:
    """Mean deletion/insertion curves, one panel per curve type, area under the curve in the legend.

    Args:
        fractions: ``(S,)`` fractions of pixels removed or inserted, 0 to 1.
        curves: ``{panel (e.g. "deletion"): {method: probabilities (N, S)}}``, from
            :func:`dlmi.interpret.deletion_curve`.
        title: Figure title.
    """
    fig = new_figure(figsize=(5.0 * len(curves), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(curves), sharey=True))
    for ax, (panel, by_method) in zip(axes, curves.items()):
        for k, (method, probs) in enumerate(by_method.items()):
            probs = np.asarray(probs)
            if probs.shape[-1] != len(fractions):
                raise ValueError(f"{panel}/{method}: {probs.shape[-1]} points for {len(fractions)} fractions")
            area = np.trapezoid(probs, fractions, axis=-1).mean()
            style = {"color": "0.3", "ls": "--"} if method.startswith("random") else {"color": f"C{k}"}
            ax.plot(fractions, probs.mean(0), lw=1.6, label=f"{method} (AUC {area:.3f})", **style)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("fraction of pixels, most attributed first")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("probability of the explained class (mean over images)")
    fig.suptitle(title)
    return fig


# --- segmentation figures (chapter 9: dlmi.segment) ---

__all__ += ["mask_overlays", "overlap_rgba", "score_distribution"]

#: Colours of agreement between a predicted and a reference mask.
OVERLAP_COLOURS = {"found (TP)": (1.0, 0.85, 0.0), "missed (FN)": (0.0, 0.9, 1.0), "false alarm (FP)": (1.0, 0.0, 1.0)}


def overlap_rgba(truth: np.ndarray, pred: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """An RGBA overlay ``(H, W, 4)``: true positives yellow, false negatives cyan, false positives magenta."""
    t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in shape: {t.shape} vs {p.shape}")
    out = np.zeros((*t.shape, 4))
    for region, colour in zip((t & p, t & ~p, ~t & p), OVERLAP_COLOURS.values()):
        out[region] = (*colour, alpha)
    return out


def mask_overlays(images: Sequence[np.ndarray], truths: Sequence[np.ndarray], preds: Sequence[np.ndarray], titles: Sequence[str],
                  title: str = "Predicted and reference masks") -> Figure:
    """One row per example: the image, and the image with the agreement of prediction and reference in colour.

    Args:
        images: ``uint8`` images ``(C, H, W)`` (C = 1 or 3).
        truths, preds: Binary masks ``(H, W)``.
        titles: One title per example (e.g. its Dice).
    """
    from matplotlib.patches import Patch

    if not len(images) == len(truths) == len(preds) == len(titles):
        raise ValueError("need as many masks, predictions and titles as images")
    fig = new_figure(figsize=(6.4, 3.0 * len(images) + 0.5))
    axes = fig.subplots(len(images), 2, squeeze=False)
    for row, image, truth, pred, text in zip(axes, images, truths, preds, titles):
        arr, cmap = _image(torch.tensor(np.asarray(image)))  # a copy: loaded images can be read-only
        for ax in row:
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
        row[1].imshow(overlap_rgba(truth, pred))
        row[0].set_title("image", fontsize=9)
        row[1].set_title(text, fontsize=9)
    fig.legend(handles=[Patch(color=c, label=k) for k, c in OVERLAP_COLOURS.items()], loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(title)
    return fig


def score_distribution(table: pd.DataFrame, column: str, by: str | None = None, title: str | None = None) -> Figure:
    """Per-image scores as a dot strip (one dot per image) with a box plot, optionally one strip per group."""
    if column not in table:
        raise ValueError(f"no column {column!r} in the table; it has {list(table.columns)}")
    groups = [("all", table)] if by is None else list(table.groupby(by, sort=True))
    fig = new_figure(figsize=(1.6 * len(groups) + 3.0, 3.6))
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    values = [g[column].dropna().to_numpy() for _, g in groups]
    ax.boxplot(values, widths=0.5, showfliers=False)
    for i, v in enumerate(values, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, len(v)), v, "o", ms=3, alpha=0.6, color="C0")
    ax.set_xticks(range(1, len(groups) + 1), [f"{name}\n(n={len(v)})" for (name, _), v in zip(groups, values)])
    ax.set_ylabel(column)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or f"{column} per image")
    return fig


# --- generative figures (chapter 10: dlmi.generative) ---

__all__ += ["distance_histograms", "image_rows", "sample_grids"]


def _tile(images: torch.Tensor, cols: int) -> tuple[np.ndarray, str | None]:
    """``uint8`` images ``(N, C, H, W)`` -> one mosaic array (rows of ``cols`` images, 1-pixel gaps) and its colour map."""
    n, c, h, w = images.shape
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1, c), dtype=np.uint8)
    for i, img in enumerate(images.cpu().numpy()):
        r, k = divmod(i, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, k * (w + 1) : k * (w + 1) + w] = np.moveaxis(img, 0, -1)
    return (canvas[..., 0], "gray") if c == 1 else (canvas, None)


def sample_grids(samples: Mapping[str, torch.Tensor], cols: int = 8, title: str = "Samples") -> Figure:
    """One mosaic panel per model (or set) of ``uint8`` images ``(N, C, H, W)``, side by side, titled by its key."""
    if not samples:
        raise ValueError("no sample sets to show")
    fig = new_figure(figsize=(3.2 * len(samples), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(samples)))
    for ax, (name, images) in zip(axes, samples.items()):
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"{name}: expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        arr, cmap = _tile(images, cols)
        ax.imshow(arr, cmap=cmap, vmin=0, vmax=255)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    return fig


def image_rows(rows: Mapping[str, torch.Tensor], col_titles: Sequence[str] | None = None, title: str = "Images",
               size: float = 1.3) -> Figure:
    """Rows of ``uint8`` images ``(K, C, H, W)``, one row per key (its label on the left), same ``K`` in every row.

    Used for reconstructions, latent traversals, interpolations, the noising process and
    image-to-image results; ``col_titles`` label the columns (e.g. a step or a distance).
    """
    if not rows:
        raise ValueError("no rows to show")
    counts = {len(v) for v in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"every row needs the same number of images, got {sorted(counts)}")
    k = counts.pop()
    if col_titles is not None and len(col_titles) != k:
        raise ValueError(f"{len(col_titles)} column titles for {k} columns")
    h, w = next(iter(rows.values())).shape[-2:]
    fig = new_figure(figsize=(size * k * max(w / h, 0.5) + 1.0, size * len(rows) + 0.5))
    axes = np.array(fig.subplots(len(rows), k, squeeze=False))
    for r, (name, images) in enumerate(rows.items()):
        for j, img in enumerate(images):
            ax = axes[r, j]
            arr, cmap = _image(img)
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[j], fontsize=8)
    fig.suptitle(title)
    return fig


def distance_histograms(distances: Mapping[str, np.ndarray], reference: str, bins: int = 30,
                        title: str = "Distance to the nearest training image") -> Figure:
    """Histograms of nearest-neighbour distances per set; ``reference`` (e.g. real test images) drawn as a grey area.

    Sets far to the left of the reference sit closer to training images than new real images
    do: a sign of copying (memorisation).
    """
    if reference not in distances:
        raise ValueError(f"reference {reference!r} is not among the sets {sorted(distances)}")
    fig = new_figure(figsize=(7, 3.6))
    ax = fig.subplots()
    values = np.concatenate([np.asarray(v, dtype=float) for v in distances.values()])
    edges = np.linspace(0, float(values.max()) * 1.02 + 1e-9, bins + 1)
    ax.hist(distances[reference], bins=edges, color="0.75", label=reference)
    for name, d in distances.items():
        if name != reference:
            ax.hist(d, bins=edges, histtype="step", linewidth=1.6, label=name)
    ax.set_xlabel("RMS pixel distance to the nearest training image (intensities in [0, 1])")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


# --- foundation-model figures (chapter 11) ---

__all__ += ["label_efficiency"]


def label_efficiency(table: pd.DataFrame, metric: str = "auc", title: str = "Test AUC against the number of labels") -> Figure:
    """Mean and spread (min to max over seeds) of a metric against the number of labelled images, one line per method.

    Args:
        table: One row per run, with columns ``method``, ``labels`` (number of labelled images),
            ``seed`` and ``metric``.
    """
    missing = {"method", "labels", metric} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}")
    fig = new_figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for i, (method, runs) in enumerate(table.groupby("method", sort=False)):
        stats = runs.groupby("labels")[metric].agg(["mean", "min", "max"])
        ax.plot(stats.index, stats["mean"], "-o", color=f"C{i}", label=method, ms=4)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images (log scale)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, title="mean; band: min to max over seeds", title_fontsize=8)
    ax.set_title(title)
    return fig
