"""Looking inside trained networks: intermediate representations and how linearly separable they are."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from dlmi.config import get_settings
from dlmi.train import to_float

__all__ = ["layer_outputs", "linear_probe"]


@torch.no_grad()
def layer_outputs(model: nn.Module, images: torch.Tensor, nodes: Sequence[str], batch_size: int = 256) -> dict[str, np.ndarray]:
    """The activations of named layers for a batch of ``uint8`` images.

    Uses torchvision's ``create_feature_extractor``, so ``nodes`` are module paths such
    as ``"features.0"`` or ``"pool"`` (see ``torchvision.models.feature_extraction.get_graph_node_names``).

    Args:
        model: A trained network.
        images: ``uint8`` images ``(N, C, H, W)``.
        nodes: Names of the layers to read out.

    Returns:
        ``{node: float32 array (N, features)}``, each activation flattened per image,
        plus ``"input"``: the raw pixels, flattened.
    """
    device = get_settings().device
    extractor = create_feature_extractor(model.eval().to(device), return_nodes=list(nodes))
    chunks: dict[str, list[np.ndarray]] = {"input": [], **{n: [] for n in nodes}}
    for batch in images.split(batch_size):
        x = to_float(batch.to(device))
        chunks["input"].append(x.flatten(1).cpu().numpy())
        for name, act in extractor(x).items():
            chunks[name].append(act.flatten(1).cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray,
    test_labels: np.ndarray | torch.Tensor,
    n_components: int = 50,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear classifier trained on a frozen representation.

    Standardises, reduces to ``n_components`` principal components, then fits a
    logistic regression: a high score means the classes are *linearly* separable in
    that representation, i.e. the representation has made the task easy.

    Args:
        train_features, test_features: ``(N, D)`` arrays of the same representation.
        train_labels, test_labels: Class index per row.

    Returns:
        Accuracy on the test rows.
    """
    k = min(n_components, *train_features.shape)
    probe = make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed), LogisticRegression(max_iter=2000))
    probe.fit(train_features, np.asarray(train_labels))
    return float(probe.score(test_features, np.asarray(test_labels)))
