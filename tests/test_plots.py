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


def test_learning_curves_names_runs_without_validation(tmp_path):
    """A run trained without a validation split is named on its (dashed) training curve."""
    no_val = history(0)[["epoch", "train_loss"]]
    fig = plots.learning_curves({"with val": history(0), "no val": no_val}, metrics=("loss",))
    labels = [line.get_label() for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert labels == ["with val", "no val (training)"]
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


def test_roc_curves_per_curve_labels(tmp_path):
    """Curves on different cases (validation vs test) take one label vector each; a threshold marks its point."""
    y_val, y_test = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 0, 1])
    scores = {"val": np.array([0.1, 0.2, 0.8, 0.9]), "test": np.array([0.1, 0.6, 0.4, 0.9, 0.8])}
    fig = plots.roc_curves({"val": y_val, "test": torch.tensor(y_test)}, scores, points={"test": 0.5}, title="ROC")
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "val (AUC 1.000)" in labels and "test (AUC 0.500)" in labels
    # at 0.5 on test: positives 0.6, 0.8 called (2 of 3), negatives 0.9 called (1 of 2)
    marker = ax.lines[-1].get_xydata().tolist()
    assert marker == [[0.5, 2 / 3]]
    assert saves(fig, tmp_path / "roc.png")


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


# --- io figures (dlmi.io helpers) ---


def _volume_with_mask(codes: str = "LAS", zooms=(1.0, 1.0, 2.0)):
    """A 20 x 16 x 12 nibabel volume, a bright block on the patient's right, and its label map."""
    import nibabel as nib

    signs = {"R": 1.0, "L": -1.0, "A": 1.0, "P": -1.0, "S": 1.0, "I": -1.0}
    affine = np.diag([signs[c] * z for c, z in zip(codes, zooms)] + [1.0])
    data = np.full((20, 16, 12), 10.0, np.float32)
    labels = np.zeros(data.shape, np.uint8)
    # RAS+ world: x grows towards the patient's right, so with i towards the left ("L..") the right is at low i
    right = slice(0, 6) if codes[0] == "L" else slice(14, 20)
    data[right, 5:10, 4:8] = 100.0
    labels[right, 5:10, 4:8] = 2
    return nib.Nifti1Image(data, affine), nib.Nifti1Image(labels, affine)


@pytest.mark.parametrize("codes", ["LAS", "RAS", "LPS"])
def test_three_planes_radiological_orientation(tmp_path, codes):
    """Whatever the stored orientation, the patient's right is on the viewer's left in the axial panel."""
    image, mask = _volume_with_mask(codes)
    fig = plots.three_planes(image, mask, label_names={2: "lesion"}, title="t")
    assert title_of(fig) == "t"
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["axial", "coronal", "sagittal"]
    axial = fig.axes[0].images[0].get_array()
    half = axial.shape[1] // 2
    assert axial[:, :half].max() == 100.0 and axial[:, half:].max() == 10.0
    letters = {t.get_text() for t in fig.axes[0].texts}
    assert letters == {"R", "L", "A", "P"}
    assert [t.get_text() for t in fig.axes[0].texts[:2]] == ["R", "L"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["lesion"]
    assert saves(fig, tmp_path / "p.png")


def test_three_planes_neurological_and_aspect():
    """Neurological view puts the right on the right; the aspect follows the voxel spacing."""
    image, mask = _volume_with_mask("RAS", zooms=(1.0, 1.0, 2.0))
    fig = plots.three_planes(image, mask, radiological=False)
    axial = fig.axes[0].images[0].get_array()
    half = axial.shape[1] // 2
    assert axial[:, half:].max() == 100.0
    assert [t.get_text() for t in fig.axes[0].texts[:2]] == ["L", "R"]
    assert fig.axes[0].get_aspect() == 1.0 and fig.axes[1].get_aspect() == 2.0 and fig.axes[2].get_aspect() == 2.0
    assert "neurological" in title_of(fig)


def test_three_planes_default_point_and_outline(tmp_path):
    """Without a point the planes cross where the mask is; outline mode draws contours, not a fill."""
    image, mask = _volume_with_mask("RAS")
    fig = plots.three_planes(image, mask, outline=True)
    assert "slice 4" in fig.axes[0].get_title()  # k: mask in slices 4..7, the first maximum
    assert "slice 5" in fig.axes[1].get_title() and "slice 14" in fig.axes[2].get_title()
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert all(len(ax.collections) >= 1 for ax in fig.axes)
    assert saves(fig, tmp_path / "o.png")
    no_mask = plots.three_planes(image)
    assert all(len(ax.images) == 1 for ax in no_mask.axes) and not no_mask.legends


def test_three_planes_rejects_mismatched_mask():
    import nibabel as nib

    image, _ = _volume_with_mask("RAS")
    other = nib.Nifti1Image(np.zeros((10, 8, 6), np.uint8), image.affine)
    with pytest.raises(ValueError, match="different voxel grids"):
        plots.three_planes(image, other)
    with pytest.raises(ValueError, match="outside"):
        plots.three_planes(image, point=(50, 0, 0))


def test_label_resampling_figure(tmp_path):
    """Three close-ups and one bar per invalid value; whole-number invalid values in their own colour."""
    import nibabel as nib

    from dlmi import io

    labels = np.zeros((16, 14, 10), np.uint8)
    labels[3:8, 3:10, 2:8] = 2
    labels[8:13, 3:10, 2:8] = 4
    demo = io.label_interpolation(nib.Nifti1Image(labels, np.eye(4)), 1.5)
    fig = plots.label_resampling(demo, label_names={2: "oedema", 4: "enhancing"})
    assert len(fig.axes) == 4
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[:3]] == ["original", "linear interpolation", "nearest neighbour"]
    bars = fig.axes[3].patches
    assert len(bars) == len(demo.invalid_values)
    colours = {v: b.get_facecolor()[:3] for v, b in zip(demo.invalid_values, bars)}
    fractional = next(v for v in demo.invalid_values if v != round(v))
    assert 3.0 in colours and colours[3.0] != colours[fractional]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["oedema", "enhancing"] and len(legend) == 4
    # the linear panel shows the invalid colours, the nearest panel does not
    linear, nearest = fig.axes[1].images[0].get_array(), fig.axes[2].images[0].get_array()
    magenta = np.all(np.isclose(linear, [1.0, 0.0, 1.0]), axis=-1)
    assert magenta.any() and not np.all(np.isclose(nearest, [1.0, 0.0, 1.0]), axis=-1).any()
    assert saves(fig, tmp_path / "l.png")


def test_dicom_montage(tmp_path):
    """One titled panel per image; header window, colour images and missing spacing are handled."""
    from dlmi.io import DicomImage

    grey = DicomImage("ct.dcm", "CT", np.linspace(-1000, 1000, 64, dtype=np.float32).reshape(8, 8), (0.5, 0.5), (40.0, 400.0), None, None)
    colour = DicomImage("us.dcm", "US", np.zeros((6, 8, 3), np.uint8), None, None, None, None)
    overlay = np.zeros((8, 8), bool)
    overlay[2, 2] = True
    marked = DicomImage("mr.dcm", "MR", np.ones((8, 8), np.float32), (1.0, 2.0), None, overlay, np.zeros((8, 8), bool))
    fig = plots.dicom_montage([grey, colour, marked], cols=2, title="samples")
    assert title_of(fig) == "samples"
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title() == "ct.dcm\nCT, 8 x 8, 0.50 mm pixels"
    assert "no pixel spacing" in fig.axes[1].get_title()
    assert fig.axes[0].images[0].get_clim() == (-160.0, 240.0)
    assert len(fig.axes[2].images) == 2 and fig.axes[2].get_aspect() == 0.5
    assert not fig.axes[3].images
    assert saves(fig, tmp_path / "d.png")


# --- dlmi.inspect figures ---


def inspect_sets(channels: int = 1) -> list[ImageSet]:
    """train/val/test toy splits (3 classes) where val 1 copies train 2 and test 0 copies train 4 with another label."""
    g = torch.Generator().manual_seed(1)
    sets = []
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        images = torch.randint(0, 256, (n, channels, 8, 8), generator=g, dtype=torch.uint8)
        labels = torch.arange(n) % 3
        sets.append(ImageSet(images, labels, ("a", "b", "a very long class name"), "multi-class", "toyset", split, ""))
    sets[1].images[1] = sets[0].images[2]
    sets[1].labels[1] = sets[0].labels[2]
    sets[2].images[0] = sets[0].images[4]
    sets[2].labels[0] = (sets[0].labels[4] + 1) % 3
    return sets


def test_class_balance_plot(tmp_path):
    """One bar per (split, class), heights = shares; a dashed uniform line at 1/K."""
    from dlmi import inspect

    balance = inspect.class_balance(inspect_sets())
    fig = plots.class_balance(balance, title="Balance")
    ax = fig.axes[0]
    assert title_of(fig) == "Balance"
    assert len(ax.patches) == 3 * 3
    np.testing.assert_allclose(sorted(p.get_height() for p in ax.patches), sorted(balance["share"]))
    uniform = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(uniform) == 1 and uniform[0].get_ydata()[0] == pytest.approx(1 / 3)
    assert "uniform" in uniform[0].get_label()
    assert saves(fig, tmp_path / "b.png")
    with pytest.raises(ValueError, match="class_balance"):
        plots.class_balance(pd.DataFrame({"split": ["train"]}))


def test_duplicate_pairs_plot(tmp_path):
    """Pairs as columns (image a above image b), captioned with split, index and class; conflicts in red."""
    from dlmi import inspect

    sets = inspect_sets(channels=3)
    pairs = inspect.exact_duplicates(sets)
    assert len(pairs) == 2
    fig = plots.duplicate_pairs(sets, pairs, n=4)
    axes = np.array(fig.axes).reshape(2, 2)  # only two pairs exist: two columns
    assert title_of(fig).startswith("Duplicate pairs")
    assert all(len(ax.images) == 1 for ax in axes.ravel())
    captions = [axes[0, c].get_title() + axes[1, c].get_xlabel() for c in range(2)]
    assert any("val #1" in c and "train #2" in c for c in captions)
    conflict = next(c for c in range(2) if "test #0" in axes[1, c].get_xlabel())
    assert axes[1, conflict].xaxis.label.get_color() == "red"
    assert "identical" in axes[0, conflict].get_title()
    assert axes[0, 0].images[0].get_array().shape == (8, 8, 3)
    assert saves(fig, tmp_path / "d.png")
    with pytest.raises(ValueError, match="not in sets"):
        plots.duplicate_pairs(sets[:1], pairs)
    empty = plots.duplicate_pairs(sets, pairs.iloc[:0])
    assert empty.axes[0].get_title() == "no pairs" and not any(ax.images for ax in empty.axes)
    assert saves(empty, tmp_path / "e.png")


def test_duplicate_pairs_plot_distance_format(tmp_path):
    """Near-duplicate distances are printed with the given format."""
    from dlmi import inspect

    sets = inspect_sets()
    pairs = inspect.exact_duplicates(sets).assign(exact=False, distance=[2.0, 4.0])
    fig = plots.duplicate_pairs(sets, pairs, n=2, fmt="{:.0f} bits", title="Near")
    assert [fig.axes[c].get_title().split("\n")[0] for c in range(2)] == ["2 bits", "4 bits"]
    assert title_of(fig) == "Near"
    assert saves(fig, tmp_path / "d.png")


def test_statistics_by_class_plot(tmp_path):
    """One panel per statistic, one box per class, scores in the panel titles."""
    from dlmi import inspect

    data = inspect_sets(channels=3)[0]
    stats = inspect.image_statistics(data)
    fig = plots.statistics_by_class(stats, data.labels, data.classes, features=["intensity", "eosin", "sharpness"],
                                    scores={"eosin": "AUC 0.60"})  # fmt: skip
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(panels) == 3
    assert [ax.get_title() for ax in panels] == ["intensity", "eosin\nAUC 0.60", "sharpness"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(data.classes)
    assert title_of(fig) == "Per-image statistics by class"
    assert saves(fig, tmp_path / "s.png")
    with pytest.raises(ValueError, match="unknown statistics"):
        plots.statistics_by_class(stats, data.labels, data.classes, features=["nope"])


@pytest.mark.parametrize(("channels", "panels"), [(1, 1), (3, 3)])
def test_split_histograms_plot(tmp_path, channels, panels):
    """One panel per channel, one line per split (densities summing to 1); optionally one class only."""
    sets = inspect_sets(channels)
    fig = plots.split_histograms(sets, bins=16)
    assert len(fig.axes) == panels
    steps = fig.axes[0].patches
    assert len(steps) == 3
    heights = steps[0].get_data()[0]
    assert heights.sum() == pytest.approx(1.0)
    assert "toyset" in title_of(fig) and "all classes" in title_of(fig)
    one = plots.split_histograms(sets, label=2)
    assert "a very long class name" in title_of(one)
    assert [p.get_label() for p in one.axes[-1].patches] == ["train (4)", "val (3)", "test (3)"]
    assert saves(fig, tmp_path / "h.png")


def test_roc_curves(tmp_path):
    """One curve per method plus the chance line, AUCs in the legend, operating points marked."""
    y = np.array([0, 0, 0, 1, 1, 1])
    scores = {"perfect": np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), "reversed": np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])}
    fig = plots.roc_curves(y, scores, points={"perfect": 0.5}, title="two models")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["chance (AUC 0.5)", "perfect (AUC 1.000)", "reversed (AUC 0.000)"]
    marker = ax.lines[2]  # chance, perfect, its operating point, reversed
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (0.0, 1.0)  # threshold 0.5: no FP, all TP
    assert title_of(fig) == "two models" and saves(fig, tmp_path / "roc.png")
    with pytest.raises(ValueError, match="shape"):
        plots.roc_curves(y, {"short": np.array([0.1, 0.2])})


def _regions_frame() -> pd.DataFrame:
    rows = []
    for r, (volume, sphericity) in {"a": (5000.0, 0.9), "b": (80.0, 0.5), "c": (20.0, 0.7)}.items():
        for k, s in enumerate(("FLAIR", "T1")):
            rows.append({"region": r, "sequence": s, "shape_MeshVolume": volume, "shape_Sphericity": sphericity,
                         "firstorder_Mean": k - 0.5, "glcm_Contrast": 10.0 * (k + 1)})  # fmt: skip
    return pd.DataFrame(rows)


def test_region_feature_bars(tmp_path):
    """One panel per feature, one bar per (region, sequence) with the table's values."""
    table = _regions_frame()
    fig = plots.region_feature_bars(table, {"firstorder_Mean": "mean (z)", "glcm_Contrast": "GLCM contrast"}, title="bars")
    assert [ax.get_title() for ax in fig.axes] == ["mean (z)", "GLCM contrast"]
    heights = sorted(p.get_height() for p in fig.axes[1].patches)
    assert heights == [10.0] * 3 + [20.0] * 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["FLAIR", "T1"]
    assert title_of(fig) == "bars" and saves(fig, tmp_path / "bars.png")
    with pytest.raises(ValueError, match="not in the table"):
        plots.region_feature_bars(table, {"nope": "x"})


def test_lesion_features(tmp_path):
    """Left: one point per lesion (volume in ml against sphericity); right: one dot per lesion and sequence."""
    fig = plots.lesion_features(_regions_frame())
    left, right = fig.axes
    np.testing.assert_allclose(sorted(left.collections[0].get_offsets()[:, 0]), [0.02, 0.08, 5.0])
    assert len(right.collections) == 2 and all(len(c.get_offsets()) == 3 for c in right.collections)
    assert [t.get_text() for t in right.get_xticklabels()] == ["FLAIR", "T1"]
    assert saves(fig, tmp_path / "lesions.png")


# --------------------------------------------------------------------------- evaluation figures (chapter 7)


def test_pr_curves(tmp_path):
    """One curve per model with its AP in the legend, and the prevalence as a dotted line."""
    from sklearn.metrics import average_precision_score

    y = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    scores = {"a": np.array([0.1, 0.2, 0.6, 0.7, 0.8, 0.3, 0.4, 0.5]), "b": np.linspace(0, 1, 8)}
    fig = plots.pr_curves(y, scores, title="PR")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{k} (AP {average_precision_score(y, s):.3f})" for k, s in scores.items()]
    prevalence_lines = [ln for ln in ax.lines if ln.get_linestyle() == ":"]
    assert len(prevalence_lines) == 2 and prevalence_lines[0].get_ydata()[0] == pytest.approx(3 / 8)
    assert title_of(fig) == "PR" and saves(fig, tmp_path / "pr.png")
    with pytest.raises(ValueError, match="shape"):
        plots.pr_curves(y, {"short": np.array([0.1])})


def test_score_histograms_mark_thresholds(tmp_path):
    y = np.array([0, 0, 1, 1, 1])
    fig = plots.score_histograms(y, np.array([0.1, 0.4, 0.6, 0.9, 0.95]), ("normal", "pneumonia"), {"0.5": 0.5, "low": 0.2})
    ax = fig.axes[0]
    assert [ln.get_xdata()[0] for ln in ax.lines] == [0.5, 0.2]
    assert [t.get_text() for t in ax.get_legend().get_texts()][-2:] == ["0.5: 0.500", "low: 0.200"]
    assert saves(fig, tmp_path / "h.png")


def test_reliability_diagram(tmp_path):
    """One line per model (plus the diagonal) through the bins' (confidence, accuracy) points; counts below."""
    table = pd.DataFrame({"bin_low": [0.5, 0.9], "bin_high": [0.6, 1.0], "confidence": [0.55, 0.95],
                          "accuracy": [0.5, 0.9], "count": [4, 10]})
    fig = plots.reliability_diagram({"m": table}, title="R")
    top, bottom = fig.axes
    assert list(top.lines[1].get_xdata()) == [0.55, 0.95] and list(top.lines[1].get_ydata()) == [0.5, 0.9]
    assert [p.get_height() for p in bottom.patches] == [4, 10]
    assert title_of(fig) == "R" and saves(fig, tmp_path / "r.png")


def test_robustness_curves(tmp_path):
    """One panel per shift; the line is the mean over seeds at each severity."""
    table = pd.DataFrame({"shift": ["noise"] * 4 + ["blur"] * 2, "severity": [0, 0, 1, 1, 0, 2], "seed": [0, 1, 0, 1, 0, 0],
                          "auc": [0.9, 0.8, 0.6, 0.5, 0.85, 0.7]})
    fig = plots.robustness_curves(table, "auc", units={"noise": "sd"})
    noise, blur = fig.axes
    assert noise.get_title() == "noise" and noise.get_xlabel() == "sd" and blur.get_xlabel() == "severity"
    assert list(noise.lines[0].get_ydata()) == pytest.approx([0.85, 0.55])
    assert saves(fig, tmp_path / "rob.png")
    with pytest.raises(ValueError):
        plots.robustness_curves(table.drop(columns="seed"))


def test_image_grid(tmp_path):
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    fig = plots.image_grid(images, [f"t{i}" for i in range(5)], cols=3, title="grid")
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and [ax.get_title() for ax in shown] == [f"t{i}" for i in range(5)]
    assert title_of(fig) == "grid" and saves(fig, tmp_path / "g.png")
    with pytest.raises(ValueError, match="5 images but 4 titles"):
        plots.image_grid(images, ["a"] * 4)


# --- segmentation figures (chapter 9) ---


def test_overlap_rgba_colours_each_kind_of_pixel():
    truth = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    rgba = plots.overlap_rgba(truth, pred, alpha=0.5)
    colours = list(plots.OVERLAP_COLOURS.values())
    assert tuple(rgba[0, 0, :3]) == colours[0] and tuple(rgba[0, 1, :3]) == colours[1] and tuple(rgba[0, 2, :3]) == colours[2]
    assert rgba[0, 3, 3] == 0 and (rgba[0, :3, 3] == 0.5).all()  # background stays transparent
    with pytest.raises(ValueError, match="differ in shape"):
        plots.overlap_rgba(truth, pred[:, :3])


@pytest.mark.parametrize("channels", [1, 3])
def test_mask_overlays(tmp_path, channels):
    """Two panels per example (image, overlay), the given titles, and a legend of the three colours."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (channels, 20, 30), dtype=np.uint8) for _ in range(3)]
    truths = [rng.random((20, 30)) > 0.7 for _ in range(3)]
    preds = [rng.random((20, 30)) > 0.7 for _ in range(3)]
    fig = plots.mask_overlays(images, truths, preds, ["a", "b", "c"], title="Masks")
    assert title_of(fig) == "Masks" and len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[1::2]] == ["a", "b", "c"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(plots.OVERLAP_COLOURS)
    assert saves(fig, tmp_path / "m.png")
    with pytest.raises(ValueError, match="as many"):
        plots.mask_overlays(images, truths[:2], preds, ["a", "b", "c"])


def test_score_distribution(tmp_path):
    """One box and one dot per image in each group; group sizes in the tick labels."""
    table = pd.DataFrame({"dice": [0.1, 0.5, 0.9, 0.7, np.nan], "kind": ["a", "a", "b", "b", "b"]})
    fig = plots.score_distribution(table, "dice", by="kind", title="Dice")
    ax = fig.axes[0]
    assert title_of(fig) == "Dice"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\n(n=2)", "b\n(n=2)"]
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [len(line.get_xdata()) for line in dots] == [2, 2]
    assert saves(fig, tmp_path / "s.png")
    assert len(plots.score_distribution(table, "dice").axes[0].get_xticklabels()) == 1
    with pytest.raises(ValueError, match="no column"):
        plots.score_distribution(table, "iou")


# --- generative figures (chapter 10) ---


def test_sample_grids(tmp_path):
    samples = {"a": torch.randint(0, 256, (10, 1, 6, 6), dtype=torch.uint8), "b": torch.zeros(4, 3, 6, 6, dtype=torch.uint8)}
    fig = plots.sample_grids(samples, cols=4, title="S")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert fig.axes[0].images[0].get_array().shape == (3 * 7 - 1, 4 * 7 - 1)  # 3 rows of 4, 1-pixel gaps
    assert title_of(fig) == "S" and saves(fig, tmp_path / "s.png")
    with pytest.raises(ValueError):
        plots.sample_grids({"x": torch.rand(2, 1, 4, 4)})


def test_image_rows(tmp_path):
    rows = {"r1": torch.zeros(3, 1, 5, 5, dtype=torch.uint8), "r2": torch.full((3, 1, 5, 5), 255, dtype=torch.uint8)}
    fig = plots.image_rows(rows, ["c1", "c2", "c3"], title="Rows")
    assert len(fig.axes) == 6 and [ax.get_title() for ax in fig.axes[:3]] == ["c1", "c2", "c3"]
    assert fig.axes[0].get_ylabel() == "r1" and fig.axes[3].get_ylabel() == "r2"
    assert title_of(fig) == "Rows" and saves(fig, tmp_path / "rows.png")
    with pytest.raises(ValueError, match="same number"):
        plots.image_rows({"a": rows["r1"], "b": rows["r2"][:2]})
    with pytest.raises(ValueError, match="column titles"):
        plots.image_rows(rows, ["x"])


def test_distance_histograms(tmp_path):
    d = {"test": np.array([0.2, 0.25, 0.3]), "model": np.array([0.0, 0.05, 0.1])}
    fig = plots.distance_histograms(d, reference="test", bins=5, title="NN")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["test", "model"]
    assert title_of(fig) == "NN" and saves(fig, tmp_path / "nn.png")
    with pytest.raises(ValueError):
        plots.distance_histograms(d, reference="train")


# --- foundation-model figures (chapter 11) ---


def test_label_efficiency(tmp_path):
    """One line (with a min-max band) per method, log x axis, means at each number of labels."""
    table = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 4, "labels": [10, 10, 100, 100] * 2, "seed": [0, 1] * 4,
                          "auc": [0.6, 0.7, 0.8, 0.9, 0.5, 0.5, 0.7, 0.7]})
    fig = plots.label_efficiency(table, title="Labels")
    ax = fig.axes[0]
    assert title_of(fig) == "Labels" and ax.get_xscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.65, 0.85])
    assert saves(fig, tmp_path / "l.png")
    with pytest.raises(ValueError, match="lacks columns"):
        plots.label_efficiency(table.drop(columns="labels"))
