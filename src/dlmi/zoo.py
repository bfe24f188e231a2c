"""Named training recipes, trained once and cached by a hash of everything that shapes them.

A :class:`Recipe` is plain data (model name and sizes, optimiser, schedule, augmentation,
epochs, seed, ...). :func:`train_recipe` trains it with :func:`dlmi.train.fit` and stores
the best weights and the history under ``DLMI_CACHE_DIR/zoo``, keyed by the recipe, the
data it saw, the profile and the library versions. A later chapter that asks for the same
recipe on the same data gets the stored model back instead of retraining it. Other recipe
types with the same two methods (``build_model``, ``fit``), such as
:class:`dlmi.ssl.SimCLRRecipe`, are cached the same way; a :class:`Recipe` can start from the
weights of such a cached entry (``init``), which is how a pretrained encoder is fine-tuned.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace

import pandas as pd
import torch
from torch import nn

import dlmi
from dlmi import models
from dlmi.augment import BatchAugment
from dlmi.config import get_settings, seed_everything
from dlmi.data import ImageSet, content_hash
from dlmi.pretrained import freeze_except
from dlmi.train import FitResult, balanced_class_weights, fit, make_scheduler

__all__ = ["Recipe", "book_recipe", "cache_key", "entry_name", "load_weights", "train_recipe"]

MODELS = {"SmallCNN": models.SmallCNN, "SmallResNet": models.SmallResNet}


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a training run, as plain values.

    Attributes:
        model: ``"SmallCNN"`` or ``"SmallResNet"``.
        model_kwargs: Keyword arguments of the model (besides channels and classes).
        optimizer, lr, momentum, weight_decay: Optimiser settings.
        epochs, batch_size: Budget.
        schedule, warmup_epochs: Learning-rate schedule (see :func:`dlmi.train.make_scheduler`).
        augment: Keyword arguments of :class:`dlmi.augment.BatchAugment`, or ``None``.
        class_weighting: Weight the cross-entropy by inverse class frequency.
        monitor, patience: Early stopping.
        seed: Seed of initialisation, batch order and augmentation.
        init: Name of a cached zoo entry (see :func:`entry_name`) whose weights initialise the
            model before training, wherever names and shapes match (e.g. a self-supervised
            encoder; the head stays freshly initialised). ``None``: train from scratch.
        trainable: Name prefixes of the only parameters to train (e.g. ``("features.2", "head")``:
            the last block and the head); the rest stays frozen at its initial (``init``) values,
            see :func:`dlmi.pretrained.freeze_except`. ``None``: train everything.
    """

    model: str = "SmallCNN"
    model_kwargs: dict = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 128
    schedule: str = "constant"
    warmup_epochs: int = 0
    augment: dict | None = None
    class_weighting: bool = False
    monitor: str = "val_auc"
    patience: int | None = None
    seed: int = 0
    init: str | None = None
    trainable: tuple[str, ...] | None = None

    def build_model(self, in_channels: int, n_classes: int) -> nn.Module:
        """A freshly initialised model (initialisation seeded by :attr:`seed`)."""
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; use one of {sorted(MODELS)}")
        seed_everything(self.seed)
        return MODELS[self.model](in_channels, n_classes, **self.model_kwargs)

    def fit(self, train: ImageSet, val: ImageSet) -> FitResult:
        """Train this recipe (no cache; from ``init``'s weights if given): see :func:`train_recipe` for the cached version."""
        model = self.build_model(train.images.shape[1], train.n_classes)
        if self.init is not None:
            load_weights(model, self.init)
        if self.trainable is not None:
            freeze_except(model, self.trainable)
        weights = balanced_class_weights(train.labels, train.n_classes) if self.class_weighting else None
        return fit(
            model,
            train,
            val,
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            loss_fn=nn.CrossEntropyLoss(weight=weights),
            scheduler=make_scheduler(self.schedule, self.epochs, self.warmup_epochs),
            augment=BatchAugment(**self.augment) if self.augment is not None else None,
            monitor=self.monitor,
            patience=self.patience,
            seed=self.seed,
        )


def _package_hash() -> str:
    """SHA-256 of the dlmi package's source: changed training code means a changed model."""
    digest = hashlib.sha256()
    for path in sorted(Path(dlmi.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def cache_key(recipe, train: ImageSet, val: ImageSet | None = None) -> str:
    """A short hash of the recipe (type and fields), the data (content), profile, device type, versions and the package source."""
    settings = get_settings()
    material = {
        "recipe": asdict(recipe),
        "recipe_type": type(recipe).__qualname__,
        "data": [(s.name, s.split, s.note, s.classes, content_hash(s)) for s in (train, val) if s is not None],
        "profile": settings.profile,
        "device": settings.device.type,
        "versions": [dlmi.__version__, torch.__version__, _package_hash()],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]


def entry_name(name: str, recipe, train: ImageSet, val: ImageSet | None = None) -> str:
    """The cache entry of a recipe trained on this data: ``<name>-<hash>`` (see :func:`cache_key`)."""
    return f"{name}-{cache_key(recipe, train, val)}"


def _entry_path(entry: str) -> Path:
    return get_settings().cache_dir / "zoo" / f"{entry}.pt"


def load_weights(model: nn.Module, entry: str) -> list[str]:
    """Copy the weights of a cached zoo entry into ``model`` wherever names and shapes match.

    Names are matched as they are or without a leading ``encoder.`` (how
    :class:`dlmi.ssl.SimCLR` stores its backbone), so a pretrained encoder initialises the same
    architecture's classifier; the rest of ``model`` (e.g. its head) keeps its values.

    Args:
        model: The model to initialise (changed in place).
        entry: Name of the entry, from :func:`entry_name`; it must have been trained already.

    Returns:
        The names of the tensors that were copied.

    Raises:
        FileNotFoundError: no such entry in the cache.
        ValueError: not a single tensor matches (another architecture or size).
    """
    path = _entry_path(entry)
    if not path.is_file():
        raise FileNotFoundError(f"no zoo entry {entry!r} in {path.parent}: train it with dlmi.zoo.train_recipe first")
    stored = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    matched = {}
    for key, value in stored.items():
        key = key.removeprefix("encoder.")
        if key in own and own[key].shape == value.shape:
            matched[key] = value
    if not matched:
        raise ValueError(f"zoo entry {entry!r} has no tensor whose name and shape match {type(model).__name__}'s")
    model.load_state_dict(matched, strict=False)
    return sorted(matched)


def train_recipe(name: str, recipe, train: ImageSet, val: ImageSet | None = None) -> FitResult:
    """Train ``recipe`` once; later calls with the same recipe and data load the stored result.

    Args:
        name: A readable name for the cache file (``<name>-<hash>.pt``, see :func:`entry_name`).
        recipe: What to train: a :class:`Recipe`, or any frozen dataclass with the same
            ``build_model(in_channels, n_classes)`` and ``fit(train, val)`` methods.
        train, val: The data (``val=None`` for recipes that train without one).

    Returns:
        The :class:`~dlmi.train.FitResult` (model in eval mode on the configured device).
    """
    settings = get_settings()
    path = _entry_path(entry_name(name, recipe, train, val))
    if path.is_file():
        stored = torch.load(path, map_location=settings.device, weights_only=True)
        model = recipe.build_model(train.images.shape[1], train.n_classes).to(settings.device)
        model.load_state_dict(stored["state_dict"])
        return FitResult(model.eval(), pd.DataFrame(stored["history"]), int(stored["best_epoch"]))
    result = recipe.fit(train, val)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    history = {col: result.history[col].tolist() for col in result.history.columns}
    torch.save({"state_dict": result.model.state_dict(), "history": history, "best_epoch": result.best_epoch}, tmp)
    tmp.replace(path)
    return result


def book_recipe(name: str, **overrides) -> Recipe:
    """The book's named recipes, sized for the active profile (quick on CPU, full on GPU).

    ``"final"`` is the recipe chapter 5 arrives at and later chapters reuse.
    """
    pick = get_settings().pick
    recipes = {
        "final": Recipe(
            model="SmallResNet",
            model_kwargs={
                "widths": pick(quick=(16, 32, 64), full=(64, 128, 256)),
                "blocks": pick(quick=(1, 1, 1), full=(2, 2, 2)),
            },
            optimizer="adamw",
            lr=2e-3,
            weight_decay=5e-4,
            epochs=pick(quick=8, full=60),
            batch_size=128,
            schedule="cosine",
            warmup_epochs=pick(quick=1, full=3),
            # no flips: a mirrored chest X-ray has its heart on the wrong side
            augment={"hflip": 0.0, "degrees": 10.0, "scale": (0.9, 1.1), "translate": 0.08},
            class_weighting=True,
            monitor="val_auc",
        ),
    }
    if name not in recipes:
        raise ValueError(f"unknown book recipe {name!r}; known: {sorted(recipes)}")
    return replace(recipes[name], **overrides)
