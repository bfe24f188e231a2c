"""The book's networks: from logistic regression to small CNNs.

All take ``(N, C, H, W)`` float inputs and return class logits ``(N, n_classes)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

__all__ = ["MLP", "LogisticRegression", "SmallCNN", "SmallResNet", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class LogisticRegression(nn.Sequential):
    """Multinomial logistic regression on raw pixels: flatten, then one linear layer.

    Args:
        in_shape: Shape of one image, e.g. ``(1, 64, 64)``.
        n_classes: Number of classes.
    """

    def __init__(self, in_shape: Sequence[int], n_classes: int):
        super().__init__(nn.Flatten(), nn.Linear(math.prod(in_shape), n_classes))


class MLP(nn.Sequential):
    """A multilayer perceptron: fully connected layers with ReLU between them.

    Args:
        in_shape: Shape of one image, e.g. ``(1, 64, 64)``.
        n_classes: Number of classes.
        hidden: Widths of the hidden layers.
        dropout: Dropout probability after each hidden layer.
    """

    def __init__(self, in_shape: Sequence[int], n_classes: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        super().__init__(*layers)


def conv_block(in_channels: int, out_channels: int, spatial_dims: int = 2) -> nn.Sequential:
    """3x3 (or 3x3x3) convolution, batch norm, ReLU, then max pooling that halves every side."""
    conv, norm, pool = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d), 3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)}[spatial_dims]
    return nn.Sequential(
        conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(),
        pool(2),
    )


class SmallCNN(nn.Module):
    """A small convolutional network: conv blocks, global average pooling, a linear head.

    Submodules ``features.0``, ``features.1``, ... are the blocks and ``pool`` the pooled
    representation, so that chapters can look inside (see :func:`dlmi.interpret.layer_outputs`).

    Args:
        in_channels: Image channels (1 for greyscale, 3 for RGB).
        n_classes: Number of classes.
        widths: Output channels of each conv block.
        dropout: Dropout probability before the head.
        spatial_dims: 2 for images ``(N, C, H, W)``, 3 for volumes ``(N, C, D, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: Sequence[int] = (16, 32, 64),
        dropout: float = 0.0,
        spatial_dims: int = 2,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        chans = [in_channels, *widths]
        self.features = nn.Sequential(*(conv_block(a, b, spatial_dims) for a, b in zip(chans[:-1], chans[1:])))
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.pool = nn.Sequential(pool, nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(chans[-1], n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` or ``(N, C, D, H, W)`` -> logits ``(N, n_classes)``."""
        return self.head(self.pool(self.features(x)))


class SmallResNet(nn.Module):
    """A residual network for small images (28x28 to 64x64), built from torchvision's ``BasicBlock``.

    A 3x3 stem without down-sampling (large-image ResNets shrink 224 px inputs 4x at once,
    which would leave nothing of a 28 px image), then one stage per entry of ``widths``:
    ``blocks[i]`` residual blocks, the first of each stage after the first halving H and W.
    Global average pooling and a linear head follow. ``SmallResNet(c, k, (64, 128, 256, 512),
    (2, 2, 2, 2))`` is the ResNet-18 layout used by the MedMNIST v2 baselines at 28 px.

    Args:
        in_channels: Image channels.
        n_classes: Number of classes.
        widths: Channels of each stage.
        blocks: Residual blocks per stage.
        dropout: Dropout probability before the head.
        input_norm: Standardise every channel of every image on its own (instance norm without
            learned parameters) before the stem: removes per-image brightness and colour casts,
            such as the staining differences between pathology centres.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        dropout: float = 0.0,
        input_norm: bool = False,
    ):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must have the same length")
        self.stem = nn.Sequential(
            nn.InstanceNorm2d(in_channels) if input_norm else nn.Identity(),
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages, width = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or width != w):
                    down = nn.Sequential(nn.Conv2d(width, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
                layers.append(BasicBlock(width, w, stride=stride if j == 0 else 1, downsample=down))
                width = w
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, n_classes)``."""
        return self.head(self.pool(self.features(self.stem(x))))
