"""Self-supervised contrastive learning in the style of SimCLR (Chen et al. 2020).

Every training image is augmented twice; an encoder (one of the book's classifiers with its
head removed) and a small MLP *projector* map both views to vectors, and the NT-Xent loss
(:func:`nt_xent`) rewards the network for recognising which two views came from the same
image among all views of the batch. No labels are used. Pretraining runs through the book's
one training loop, :func:`dlmi.train.fit`, with :class:`SimCLRLoss` as its ``batch_loss``;
:class:`SimCLRRecipe` makes it a cached :mod:`dlmi.zoo` entry. Afterwards the encoder's
frozen features (:func:`encode`) feed a linear probe or a random forest, or the encoder is
fine-tuned as a classifier (:class:`dlmi.zoo.Recipe` with ``init``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlmi.augment import BatchAugment
from dlmi.config import seed_everything
from dlmi.data import ImageSet
from dlmi.interpret import layer_outputs
from dlmi.train import FitResult, fit, make_scheduler
from dlmi.zoo import MODELS

__all__ = ["HE_VIEWS", "SimCLR", "SimCLRLoss", "SimCLRRecipe", "encode", "nt_xent"]

# The two-view augmentation for 28 x 28 H&E patches (arguments of dlmi.augment.BatchAugment):
# a random crop of 40-100 % of the area resized to 28 px (zoom 1-1.6 with a shift), any rotation
# and flips (tissue has no up or down), and strong colour jitter, the ingredient SimCLR found
# essential: without it two crops of one patch share their colour histogram and the network
# can match them by colour alone. No blur: at 28 px it would erase the nuclei.
HE_VIEWS: dict = {
    "hflip": 0.5,
    "vflip": 0.5,
    "degrees": 180.0,
    "scale": (1.0, 1.6),
    "translate": 0.15,
    "brightness": 0.2,
    "contrast": 0.3,
    "saturation": 0.4,
    "hue": 0.05,
    "grayscale": 0.2,
}


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The NT-Xent loss (normalised temperature-scaled cross-entropy) of two views of a batch.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are the two views of image ``i``. All ``2B``
    vectors are scaled to unit length; for each one, the cosine similarities to the other
    ``2B - 1`` vectors divided by ``temperature`` are the logits of a ``2B - 1``-way
    classification whose right answer is its partner view. The loss is the mean cross-entropy
    over all ``2B`` vectors: ``log(2B - 1)`` when all vectors are equal, near 0 when partners
    coincide and all other pairs are far apart.

    Args:
        z1, z2: Projections ``(B, D)`` of the first and second views, ``B >= 2``.
        temperature: Positive scale of the similarities; smaller values sharpen the softmax.

    Returns:
        A scalar tensor (differentiable).

    Raises:
        ValueError: mismatched or non-2-D shapes, fewer than two images, a non-positive
            temperature, or non-finite inputs.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs at least 2 images per batch (negatives), got {z1.shape[0]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not (torch.isfinite(z1).all() and torch.isfinite(z2).all()):
        raise ValueError("z1 or z2 holds NaN or infinite values")
    b = z1.shape[0]
    # in float32 even under mixed precision: similarities near 1 divided by a small temperature
    # need more digits than bfloat16 has
    with torch.autocast(z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.T / temperature
        self_pairs = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_pairs, float("-inf"))  # a view is not its own partner
        partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
        return F.cross_entropy(logits, partner)


class SimCLR(nn.Module):
    """An encoder and a projector head: images -> representations ``h`` -> projections ``z``.

    The loss is computed on ``z``; downstream tasks use ``h`` (SimCLR found the representation
    *before* the projector transfers better, as the projector learns to discard what the
    augmentations change, e.g. colour).

    Args:
        encoder: Maps images ``(B, C, H, W)`` to features ``(B, feature_dim)``, e.g. a
            :class:`~dlmi.models.SmallCNN` whose ``head`` is ``nn.Identity()``.
        feature_dim: Size of the encoder's output.
        projection_dim: Size of ``z``.
        hidden_dim: Width of the projector's hidden layer (default ``feature_dim``).
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, projection_dim: int = 64, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or feature_dim
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> projections ``(B, projection_dim)``."""
        return self.projector(self.encoder(x))


class SimCLRLoss:
    """The pretraining objective as a ``batch_loss`` for :func:`dlmi.train.fit`.

    ``loss(model, x, y)`` augments every image of the float batch ``x`` twice (one call of
    ``augment`` on ``[x, x]``, so each view gets its own random draw), projects all ``2B``
    views in one forward pass and returns :func:`nt_xent` of the two halves. ``y`` is ignored.

    Args:
        augment: Per-image random augmentation of float batches (e.g. ``BatchAugment(**HE_VIEWS)``).
        temperature: NT-Xent temperature.
    """

    def __init__(self, augment: nn.Module, temperature: float = 0.5):
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.augment, self.temperature = augment, temperature

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views ``(B, C, H, W)`` each of a float batch."""
        both = self.augment(torch.cat([x, x]))
        return both[: len(x)], both[len(x) :]

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        v1, v2 = self.views(x)
        z = model(torch.cat([v1, v2])).float()
        return nt_xent(z[: len(x)], z[len(x) :], self.temperature)


@dataclass(frozen=True)
class SimCLRRecipe:
    """Everything that defines a SimCLR pretraining run, as plain values (cached by :func:`dlmi.zoo.train_recipe`).

    Attributes:
        backbone: ``"SmallCNN"`` or ``"SmallResNet"``; its head is removed to make the encoder.
        backbone_kwargs: Keyword arguments of the backbone (besides channels and classes).
        projection_dim: Size of the projector's output.
        temperature: NT-Xent temperature.
        views: Keyword arguments of :class:`~dlmi.augment.BatchAugment` for the two views.
        optimizer, lr, weight_decay: Optimiser settings.
        epochs, batch_size: Budget; each step sees ``2 * batch_size`` views.
        schedule, warmup_epochs: Learning-rate schedule (see :func:`dlmi.train.make_scheduler`).
        seed: Seed of initialisation, batch order and augmentation.
    """

    backbone: str = "SmallCNN"
    backbone_kwargs: dict = field(default_factory=dict)
    projection_dim: int = 64
    temperature: float = 0.5
    views: dict = field(default_factory=lambda: dict(HE_VIEWS))
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 10
    batch_size: int = 256
    schedule: str = "cosine"
    warmup_epochs: int = 1
    seed: int = 0

    def build_model(self, in_channels: int, n_classes: int | None = None) -> SimCLR:
        """A freshly initialised :class:`SimCLR` (``n_classes`` is ignored: there is no head)."""
        if self.backbone not in MODELS:
            raise ValueError(f"unknown backbone {self.backbone!r}; use one of {sorted(MODELS)}")
        seed_everything(self.seed)
        encoder = MODELS[self.backbone](in_channels, 1, **self.backbone_kwargs)
        feature_dim = encoder.head[-1].in_features
        encoder.head = nn.Identity()
        return SimCLR(encoder, feature_dim, self.projection_dim)

    def fit(self, train: ImageSet, val: ImageSet | None = None) -> FitResult:
        """Pretrain on ``train``'s images (labels unused) with :func:`dlmi.train.fit`; keeps the last epoch."""
        if val is not None:
            raise ValueError("SimCLR pretraining uses no validation split; pass val=None")
        if len(train) % self.batch_size == 1:
            raise ValueError(f"{len(train)} images in batches of {self.batch_size} leave a last batch of one image, "
                             "which has no negatives; change batch_size by one")
        model = self.build_model(train.images.shape[1])
        return fit(
            model,
            train,
            None,
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            scheduler=make_scheduler(self.schedule, self.epochs, self.warmup_epochs),
            batch_loss=SimCLRLoss(BatchAugment(**self.views), self.temperature),
            seed=self.seed,
        )


def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Frozen features of ``uint8`` images ``(N, C, H, W)``: the input of the head, ``(N, D)``.

    For a :class:`SimCLR` model the encoder's output (before the projector); for one of the
    book's classifiers (a ``pool`` submodule before its ``head``) the pooled features.
    """
    if isinstance(model, SimCLR):
        node = "encoder.pool"
    elif hasattr(model, "pool") and hasattr(model, "head"):
        node = "pool"
    else:
        raise TypeError(f"encode needs a SimCLR model or a classifier with 'pool' and 'head', got {type(model).__name__}")
    return layer_outputs(model, images, [node], batch_size)[node]
