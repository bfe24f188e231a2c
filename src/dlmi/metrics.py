"""Classification metrics computed from scores, never from hard labels alone.

Thin wrappers around scikit-learn so that every chapter reports the same numbers the
same way. AUC always takes predicted probabilities: an "AUC" from 0/1 predictions is
just balanced accuracy in disguise.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

__all__ = ["chance_accuracy", "classification_report", "per_class_recall"]


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def classification_report(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and AUC of class probabilities.

    Args:
        labels: True class indices, shape ``(N,)``.
        probs: Predicted probabilities, shape ``(N, K)``; rows sum to 1.

    Returns:
        ``{"acc", "balanced_acc", "macro_f1", "auc"}``. AUC is one-vs-rest, macro-averaged
        for K > 2, and NaN if the labels hold a single class.

    Raises:
        ValueError: if shapes disagree or ``probs`` holds NaNs.
    """
    y, p = _np(labels).astype(int), _np(probs).astype(float)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, K) with N = len(labels) = {len(y)}, got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError("probs contain NaN: the model diverged; lower the learning rate or check the inputs")
    pred = p.argmax(1)
    out = {
        "acc": skm.accuracy_score(y, pred),
        "balanced_acc": skm.balanced_accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=np.arange(p.shape[1]), zero_division=0),
    }
    if len(np.unique(y)) < 2:
        out["auc"] = float("nan")
    elif p.shape[1] == 2:
        out["auc"] = skm.roc_auc_score(y, p[:, 1])
    else:
        out["auc"] = skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=np.arange(p.shape[1]))
    return {k: float(v) for k, v in out.items()}


def chance_accuracy(
    train_labels: torch.Tensor | np.ndarray, test_labels: torch.Tensor | np.ndarray, n_classes: int | None = None
) -> dict[str, float]:
    """Accuracy of two baselines that ignore the image.

    Args:
        train_labels, test_labels: Class indices.
        n_classes: Number of classes (default: largest label seen + 1).

    Returns:
        ``{"uniform": 1/K expected accuracy of guessing, "majority": accuracy of always
        predicting the most common training class}`` on ``test_labels``.
    """
    train, test = _np(train_labels).astype(int), _np(test_labels).astype(int)
    k = int(n_classes or max(train.max(), test.max()) + 1)
    majority = np.bincount(train, minlength=k).argmax()
    return {"uniform": 1.0 / k, "majority": float((test == majority).mean())}


def per_class_recall(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Recall (sensitivity) of every class for arg-max predictions, shape ``(K,)``.

    A model that predicts only the majority class has recall 1 for it and 0 for all others,
    whatever its accuracy.
    """
    y, p = _np(labels).astype(int), _np(probs)
    return skm.recall_score(y, p.argmax(1), average=None, labels=np.arange(p.shape[1]), zero_division=0)
