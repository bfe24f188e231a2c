"""Figures used across the book. Every function returns a titled ``matplotlib`` Figure.

Figures are :class:`BookFigure` objects built with the object-oriented API, not ``pyplot``:
a notebook shows one only where it asks to (``display(fig)``, a cell ending in ``fig``, or
``myst_nb.glue``), as a PNG, whatever matplotlib backend is active.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

from dlmi.data import ImageSet

__all__ = ["BookFigure", "confusion", "embeddings", "filters", "learning_curves", "montage", "new_figure"]


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
                ax.plot(h["epoch"], h[f"train_{metric}"], "--", color=colour, alpha=0.7)
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
