"""Tests of dlmi.plots: every figure is titled, has the right panels and saves to PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from dlmi import plots
from dlmi.data import ImageSet


def title_of(fig: Figure) -> str:
    """The figure's suptitle, else the first axes' title."""
    if fig._suptitle is not None and fig._suptitle.get_text():
        return fig._suptitle.get_text()
    return fig.axes[0].get_title()


def saves(fig: Figure, path) -> bool:
    """Save as PNG; true if a non-empty PNG file was written."""
    fig.savefig(path, format="png", dpi=50)
    return path.stat().st_size > 0 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def image_set(channels: int, n_classes: int = 3, per_class: int = 5) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    n = n_classes * per_class
    images = torch.randint(0, 256, (n, channels, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % n_classes
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(n_classes)), "multi-class", "toyset", "val", "")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("n_classes", "per_class"), [(3, 4), (2, 6)])
def test_montage(tmp_path, channels, n_classes, per_class):
    """One row per class, per_class panels per row; the default title names the set and split."""
    fig = plots.montage(image_set(channels, n_classes), per_class=per_class)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_classes * per_class
    assert "toyset" in title_of(fig) and "val" in title_of(fig)
    assert [fig.axes[r * per_class].get_ylabel() for r in range(n_classes)] == [f"c{i}" for i in range(n_classes)]
    assert saves(fig, tmp_path / "m.png")


def test_montage_class_with_few_images(tmp_path):
    """A class with fewer images than per_class leaves the extra panels empty."""
    data = image_set(1, n_classes=2, per_class=2)  # 2 images per class
    fig = plots.montage(data, per_class=4, title="custom")
    assert title_of(fig) == "custom"
    assert len(fig.axes) == 8
    assert sum(len(ax.images) for ax in fig.axes) == 4
    assert saves(fig, tmp_path / "m.png")


def history(offset: float) -> pd.DataFrame:
    epochs = np.arange(1, 5)
    return pd.DataFrame(
        {"epoch": epochs, "train_loss": 1 / epochs + offset, "val_loss": 1.2 / epochs + offset,
         "train_acc": 0.5 + 0.1 * epochs, "val_acc": 0.45 + 0.1 * epochs, "val_auc": 0.6 + 0.05 * epochs}
    )  # fmt: skip


@pytest.mark.parametrize("metrics", [("loss", "acc"), ("loss",), ("loss", "acc", "auc")])
def test_learning_curves(tmp_path, metrics):
    """One panel per metric; dashed training and solid validation line for every run."""
    fig = plots.learning_curves({"a": history(0), "b": history(0.1)}, metrics=metrics, title="Curves")
    assert title_of(fig) == "Curves"
    assert len(fig.axes) == len(metrics)
    assert [ax.get_ylabel() for ax in fig.axes] == list(metrics)
    loss_ax = fig.axes[0]
    assert len(loss_ax.lines) == 4  # 2 runs x (train, val)
    assert [line.get_label() for line in loss_ax.lines if not line.get_label().startswith("_")] == ["a", "b"]
    if "auc" in metrics:
        assert len(fig.axes[2].lines) == 2  # no train_auc column: validation only
    assert saves(fig, tmp_path / "c.png")


def test_confusion(tmp_path):
    """Counts of arg-max predictions, one cell per (true, predicted) pair."""
    labels = np.array([0, 0, 1, 2, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 2, 2, 0]]
    fig = plots.confusion(labels, probs, ["a", "b", "c"], title="CM")
    assert title_of(fig) == "CM"
    ax = fig.axes[0]
    cm = ax.images[0].get_array()
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert saves(fig, tmp_path / "cm.png")


def test_confusion_with_absent_class(tmp_path):
    """A class absent from labels and predictions still gets its row and column."""
    fig = plots.confusion(torch.tensor([0, 1]), torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]), ["a", "b", "c"])
    assert fig.axes[0].images[0].get_array().shape == (3, 3)
    assert title_of(fig) == "Confusion matrix"
    assert saves(fig, tmp_path / "cm.png")


@pytest.mark.parametrize(("shape", "n_axes"), [((16, 1, 3, 3), 16), ((10, 3, 5, 5), 16), ((4, 1, 3, 3), 4)])
def test_filters(tmp_path, shape, n_axes):
    """Up to 8 kernels per row; panels beyond the kernels stay empty; grey or RGB by input channels."""
    torch.manual_seed(0)
    fig = plots.filters(torch.randn(shape))
    assert title_of(fig) == "First-layer filters"
    assert len(fig.axes) == n_axes
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == shape[0]
    assert all(a.min() >= 0 and a.max() <= 1 for a in shown)
    assert shown[0].shape == ((3, 3) if shape[1] == 1 else (5, 5, 3))
    assert saves(fig, tmp_path / "f.png")


def test_filters_of_a_conv_layer(tmp_path):
    """A trainable conv weight (requires_grad) is accepted."""
    conv = torch.nn.Conv2d(1, 8, 3)
    fig = plots.filters(conv.weight, title="conv1")
    assert title_of(fig) == "conv1" and len(fig.axes) == 8
    assert saves(fig, tmp_path / "f.png")


def blobs(n_per_class: int = 20, d: int = 10, k: int = 3):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(k), n_per_class)
    return rng.normal(size=(len(y), d)) + 4 * y[:, None], y


def test_embeddings_pca(tmp_path):
    """One scatter panel per representation, one point set per class, titled by name."""
    x, y = blobs()
    reps = {"input": x, "pool": x[:, :4]}
    fig = plots.embeddings(reps, y, ["a", "b", "c"], method="pca", title="Projections")
    assert title_of(fig) == "Projections"
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["input", "pool"]
    assert all(len(ax.collections) == 3 for ax in fig.axes)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == len(y)
    assert saves(fig, tmp_path / "e.png")


def test_embeddings_scores_in_titles():
    """Given scores, each panel title shows its score."""
    x, y = blobs()
    fig = plots.embeddings({"input": x}, y, ["a", "b", "c"], method="pca", scores={"input": 0.5})
    assert fig.axes[0].get_title() == "input\nsilhouette 0.50"
    assert title_of(fig)


@pytest.mark.slow
def test_embeddings_tsne(tmp_path):
    """t-SNE (the default) also gives one panel per representation."""
    x, y = blobs(n_per_class=15)
    fig = plots.embeddings({"input": x}, y, ["a", "b", "c"])
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 3
    assert saves(fig, tmp_path / "e.png")


def test_embeddings_unknown_method():
    """An unknown projection method is a ValueError, not a silent PCA."""
    x, y = blobs()
    with pytest.raises(ValueError, match="tsne"):
        plots.embeddings({"input": x}, y, ["a", "b", "c"], method="umap")


@pytest.fixture
def ipython_shell():
    """A plain IPython shell (no matplotlib backend activated), removed afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_figures_display_as_png_in_ipython(ipython_shell):
    """display(fig) of a dlmi.plots figure gives an image, not the text '<Figure size ...>'.

    The module promises that notebooks show these figures with display(fig) or glue. A bare
    ``matplotlib.figure.Figure`` has no PNG representation unless the inline backend was
    activated first (``%matplotlib inline`` or a pyplot figure), so a chapter that only uses
    dlmi.plots renders the text repr instead of the figure (seen in a real book build).
    """
    fig = plots.filters(torch.randn(4, 1, 3, 3))
    data, _ = ipython_shell.display_formatter.format(fig)
    assert "image/png" in data, f"only {sorted(data)}: display(fig) would show {data['text/plain']!r}"
