"""Tests of dlmi.models: output shapes and parameter counts."""

from __future__ import annotations

import pytest
import torch

from dlmi.models import MLP, LogisticRegression, SmallCNN, SmallResNet, count_parameters


def small_cnn_parameters(in_channels: int, n_classes: int, widths) -> int:
    """Hand count: per block a bias-free 3x3 conv and a BatchNorm (weight + bias); then a linear head."""
    chans = [in_channels, *widths]
    convs = sum(a * b * 9 + 2 * b for a, b in zip(chans[:-1], chans[1:]))
    return convs + chans[-1] * n_classes + n_classes


def small_resnet_parameters(in_channels: int, n_classes: int, widths, blocks) -> int:
    """Hand count: a 3x3 stem; BasicBlocks of two 3x3 convs + BNs; a 1x1 conv + BN shortcut where shape changes."""
    total = in_channels * widths[0] * 9 + 2 * widths[0]
    width = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            total += width * w * 9 + 2 * w + w * w * 9 + 2 * w
            if j == 0 and (i > 0 or width != w):
                total += width * w + 2 * w
            width = w
    return total + width * n_classes + n_classes


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (2, 3, 28, 28)])
@pytest.mark.parametrize("n_classes", [2, 6])
@pytest.mark.parametrize(
    "build",
    [
        lambda c, h, k: LogisticRegression((c, h, h), k),
        lambda c, h, k: MLP((c, h, h), k),
        lambda c, h, k: MLP((c, h, h), k, hidden=(8,), dropout=0.5),
        lambda c, h, k: SmallCNN(c, k),
        lambda c, h, k: SmallCNN(c, k, widths=(4, 8), dropout=0.2),
        lambda c, h, k: SmallResNet(c, k, widths=(4, 8, 16)),
        lambda c, h, k: SmallResNet(c, k, widths=(4, 8), blocks=(2, 1), dropout=0.2),
    ],
    ids=["logreg", "mlp", "mlp-dropout", "cnn", "cnn-narrow", "resnet", "resnet-2stage"],
)
def test_output_shape(build, shape, n_classes):
    """Every model maps (N, C, H, W) floats to finite (N, n_classes) logits."""
    n, c, h, _ = shape
    model = build(c, h, n_classes).eval()
    out = model(torch.rand(shape))
    assert out.shape == (n, n_classes)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_cnn_accepts_any_image_size():
    """Global average pooling makes SmallCNN independent of the image size."""
    model = SmallCNN(1, 3).eval()
    assert model(torch.rand(1, 1, 40, 56)).shape == (1, 3)


def test_logistic_regression_is_one_linear_layer():
    """LogisticRegression is flatten + one Linear: logits are W x + b on the raw pixels."""
    model = LogisticRegression((1, 4, 4), 3)
    x = torch.rand(5, 1, 4, 4)
    linear = model[1]
    torch.testing.assert_close(model(x), x.flatten(1) @ linear.weight.T + linear.bias)


def test_count_logistic_regression():
    """(1, 64, 64) pixels to 6 classes: 4096 * 6 weights + 6 biases."""
    assert count_parameters(LogisticRegression((1, 64, 64), 6)) == 4096 * 6 + 6


def test_count_mlp():
    """MLP (3, 28, 28) -> 256 -> 128 -> 9, counted by hand."""
    d = 3 * 28 * 28
    assert count_parameters(MLP((3, 28, 28), 9)) == (d * 256 + 256) + (256 * 128 + 128) + (128 * 9 + 9)


@pytest.mark.parametrize(("in_channels", "n_classes", "widths"), [(1, 6, (16, 32, 64)), (3, 9, (8, 16)), (1, 2, (5,))])
def test_count_small_cnn(in_channels, n_classes, widths):
    """SmallCNN's count matches the formula (BatchNorm running stats are buffers, not parameters)."""
    model = SmallCNN(in_channels, n_classes, widths)
    assert count_parameters(model) == small_cnn_parameters(in_channels, n_classes, widths)


def test_count_trainable_only():
    """Frozen parameters are left out unless trainable_only=False."""
    model = SmallCNN(1, 6)
    total = count_parameters(model)
    for p in model.features.parameters():
        p.requires_grad_(False)
    head = 64 * 6 + 6
    assert count_parameters(model) == head
    assert count_parameters(model, trainable_only=False) == total


def test_small_cnn_exposes_named_parts():
    """features.0.. are the conv blocks and pool gives one vector per image (used by dlmi.interpret)."""
    model = SmallCNN(1, 4, widths=(4, 8, 16)).eval()
    assert len(model.features) == 3
    x = torch.rand(2, 1, 32, 32)
    assert model.features[0](x).shape == (2, 4, 16, 16)
    assert model.pool(model.features(x)).shape == (2, 16)


# --------------------------------------------------------------------------- SmallResNet


@pytest.mark.parametrize(("widths", "blocks"), [((8, 16), (1,)), ((8,), (1, 1)), ((8, 16, 32), (2, 2)), ((), (1,))])
def test_small_resnet_rejects_mismatched_lengths(widths, blocks):
    """widths and blocks of different lengths are a ValueError naming both."""
    with pytest.raises(ValueError, match="same length"):
        SmallResNet(1, 2, widths=widths, blocks=blocks)


@pytest.mark.parametrize(
    ("widths", "size", "side"),
    [((8,), 28, 28), ((8, 16), 28, 14), ((4, 8, 16), 28, 7), ((4, 8, 16), 64, 16), ((4, 8, 16, 32), 64, 8)],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_small_resnet_stages_halve_the_size(widths, size, side, channels):
    """The stem keeps H and W; every stage after the first halves them: H / 2**(len(widths) - 1)."""
    model = SmallResNet(channels, 3, widths=widths, blocks=(1,) * len(widths)).eval()
    x = torch.rand(2, channels, size, size)
    stem = model.stem(x)
    assert stem.shape == (2, widths[0], size, size)
    assert model.features(stem).shape == (2, widths[-1], side, side)
    assert side == size // 2 ** (len(widths) - 1)
    assert model.pool(model.features(stem)).shape == (2, widths[-1])


def test_small_resnet_default_and_resnet18_layout():
    """The default model and the ResNet-18 layout of the MedMNIST v2 baselines give (N, K) logits at 28 px."""
    x = torch.rand(2, 3, 28, 28)
    assert SmallResNet(3, 9).eval()(x).shape == (2, 9)
    resnet18 = SmallResNet(3, 9, (64, 128, 256, 512), (2, 2, 2, 2))
    assert count_parameters(resnet18) == small_resnet_parameters(3, 9, (64, 128, 256, 512), (2, 2, 2, 2))
    assert len(resnet18.features) == 4 and all(len(stage) == 2 for stage in resnet18.features)


@pytest.mark.parametrize(
    ("in_channels", "n_classes", "widths", "blocks"),
    [(1, 2, (8,), (1,)), (1, 2, (8, 8), (1, 1)), (3, 6, (4, 8, 16), (1, 2, 1)), (1, 4, (16, 32, 64), (2, 2, 2))],
)
def test_count_small_resnet(in_channels, n_classes, widths, blocks):
    """SmallResNet's count matches the hand formula (shortcut convs only where the shape changes)."""
    model = SmallResNet(in_channels, n_classes, widths, blocks)
    assert count_parameters(model) == small_resnet_parameters(in_channels, n_classes, widths, blocks)


def test_small_resnet_parameters_grow_with_blocks():
    """More residual blocks per stage, more parameters (same widths)."""
    counts = [count_parameters(SmallResNet(1, 2, (8, 16, 32), (n, n, n))) for n in (1, 2, 3)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] - counts[1] == counts[1] - counts[0], "each extra block per stage adds the same amount"


def test_small_resnet_is_residual():
    """Zeroing every block's last BatchNorm turns each block into ReLU(shortcut): the stage output is the shortcut."""
    model = SmallResNet(1, 2, widths=(4,), blocks=(1,)).eval()
    block = model.features[0][0]
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    h = model.stem(torch.rand(2, 1, 8, 8))
    torch.testing.assert_close(block(h), torch.relu(h))
