"""Published pretrained weights: where they come from, how they are checked, and how a model is adapted.

Weights trained by others (on ImageNet, or on large medical collections) are files like any
data set: an official address, a checksum, a licence. :func:`load_state_dict` finds the file
in ``DLMI_CACHE_DIR/weights`` (or downloads it when online, as ``torch.hub`` does), checks the
SHA-256 prefix that ``torch.hub`` file names carry, and loads it with ``weights_only=True``,
so a file can only hold tensors, never code. :func:`freeze_except` prepares the cheapest kind
of adaptation: train only the named parts (the head, or the last block) of a pretrained model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dlmi.config import get_settings
from dlmi.data import ChecksumError

__all__ = ["PUBLISHED", "PublishedWeights", "WeightsNotFoundError", "build", "freeze_except", "load_state_dict", "publish", "weights_file"]


class WeightsNotFoundError(FileNotFoundError):
    """A weights file is not in the cache and cannot be downloaded (offline)."""


@dataclass(frozen=True)
class PublishedWeights:
    """One published set of weights.

    Attributes:
        name: The book's short name.
        url: Official download address; its file name ends in ``-<sha256 prefix>.<ext>``
            (the ``torch.hub`` convention), which is what the check compares.
        architecture: How to build the network the weights belong to, e.g.
            ``"torchvision.models.resnet18"`` (a callable taking ``weights=None``).
        source: Where the weights are documented.
        licence: Terms of use.
    """

    name: str
    url: str
    architecture: str
    source: str
    licence: str

    @property
    def filename(self) -> str:
        """The file's name (the last part of :attr:`url`)."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        """The leading hex digits of the file's SHA-256, taken from its name."""
        match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", self.filename)
        if match is None:
            raise ValueError(f"{self.filename!r} carries no SHA-256 prefix (expected '<name>-<hex>.pth')")
        return match.group(1)


#: Published weights the book knows. Online readers can fetch them; here they are tested on
#: weights saved locally through the same path.
PUBLISHED: dict[str, PublishedWeights] = {
    "resnet18-imagenet": PublishedWeights(
        name="resnet18-imagenet",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        architecture="torchvision.models.resnet18",
        source="torchvision ResNet18_Weights.IMAGENET1K_V1 (He et al. 2016, trained on ImageNet-1k)",
        licence="BSD-3-Clause (torchvision code); ImageNet-trained weights, for research and teaching",
    ),
    "resnet50-imagenet": PublishedWeights(
        name="resnet50-imagenet",
        url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        architecture="torchvision.models.resnet50",
        source="torchvision ResNet50_Weights.IMAGENET1K_V2",
        licence="BSD-3-Clause (torchvision code); ImageNet-trained weights, for research and teaching",
    ),
}


def _spec(weights: str | PublishedWeights) -> PublishedWeights:
    if isinstance(weights, PublishedWeights):
        return weights
    if weights not in PUBLISHED:
        raise KeyError(f"unknown published weights {weights!r}; known: {sorted(PUBLISHED)}")
    return PUBLISHED[weights]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_file(weights: str | PublishedWeights) -> Path:
    """The checked local file of published weights, downloaded first if missing and online.

    Raises:
        WeightsNotFoundError: not in ``DLMI_CACHE_DIR/weights`` and offline (or the download failed).
        ChecksumError: the file's SHA-256 does not start with the prefix in its official name.
    """
    spec = _spec(weights)
    settings = get_settings()
    path = settings.cache_dir / "weights" / spec.filename
    if not path.is_file():
        if settings.offline:
            raise WeightsNotFoundError(
                f"{spec.name}: {path} not found and DLMI_OFFLINE is set; download {spec.url} into {path.parent} "
                f"on a machine that is online")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(spec.url, str(path), hash_prefix=spec.sha256_prefix, progress=False)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a hash mismatch a RuntimeError
            path.unlink(missing_ok=True)
            raise WeightsNotFoundError(f"{spec.name}: downloading {spec.url} failed ({err}); "
                                       f"download it by hand into {path.parent}") from None
    actual = _sha256(path)
    if not actual.startswith(spec.sha256_prefix):
        raise ChecksumError(f"{path} has SHA-256 {actual[:16]}..., expected it to start with {spec.sha256_prefix}: "
                            f"the file is corrupt or not {spec.name}; delete it and download {spec.url} again")
    return path


def publish(state_dict: dict[str, torch.Tensor], name: str, base_url: str, architecture: str, source: str = "", licence: str = "") -> PublishedWeights:
    """Save weights the way they are published, and describe them: the file is named ``<name>-<sha256 prefix>.pth``.

    The file is written where :func:`weights_file` looks for downloads (``DLMI_CACHE_DIR/weights``),
    so the returned entry loads through exactly the path that published weights take. Upload the
    file to ``base_url`` to share it.

    Returns:
        The :class:`PublishedWeights` entry (URL ``<base_url>/<file name>``).
    """
    folder = get_settings().cache_dir / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.pth.part"
    torch.save(state_dict, tmp)
    path = folder / f"{name}-{_sha256(tmp)[:8]}.pth"
    tmp.replace(path)
    return PublishedWeights(name, f"{base_url.rstrip('/')}/{path.name}", architecture, source, licence)


def load_state_dict(weights: str | PublishedWeights) -> dict[str, torch.Tensor]:
    """The tensors of published weights, checked (:func:`weights_file`) and loaded with ``weights_only=True``."""
    return torch.load(weights_file(weights), map_location="cpu", weights_only=True)


def _architecture(path: str) -> Callable[..., nn.Module]:
    import importlib

    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def build(weights: str | PublishedWeights, n_classes: int | None = None) -> nn.Module:
    """The network of published weights with the weights loaded; optionally a new head for ``n_classes``.

    The new head (``fc`` of torchvision's ResNets) is freshly initialised: the pretrained one
    answers the pretraining task's classes, not ours.
    """
    spec = _spec(weights)
    model = _architecture(spec.architecture)(weights=None)
    model.load_state_dict(load_state_dict(spec))
    if n_classes is not None:
        if not isinstance(getattr(model, "fc", None), nn.Linear):
            raise ValueError(f"{spec.architecture} has no linear head `fc` to replace")
        model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model


def freeze_except(model: nn.Module, trainable: Sequence[str]) -> dict[str, int]:
    """Freeze every parameter except those whose names start with one of ``trainable`` (in place).

    Args:
        model: The (pretrained) model.
        trainable: Name prefixes to keep trainable, e.g. ``("fc",)`` for a linear probe on a
            ResNet, or ``("layer4", "fc")`` to also adapt the last block.

    Returns:
        ``{"trainable": n, "total": n}`` parameter counts.

    Raises:
        ValueError: a prefix matches no parameter (a typo would otherwise freeze everything).
    """
    names = [name for name, _ in model.named_parameters()]
    unmatched = [t for t in trainable if not any(n.startswith(t) for n in names)]
    if unmatched:
        raise ValueError(f"no parameter name starts with {unmatched}; the top-level names are {sorted({n.split('.')[0] for n in names})}")
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(t) for t in trainable))
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters())}
