"""Classification metrics computed from scores, never from hard labels alone.

Thin wrappers around scikit-learn so that every chapter reports the same numbers the
same way. AUC always takes predicted probabilities: an "AUC" from 0/1 predictions is
just balanced accuracy in disguise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn import metrics as skm

__all__ = [
    "bootstrap_ci",
    "chance_accuracy",
    "classification_report",
    "operating_point",
    "per_class_recall",
    "threshold_for_sensitivity",
]


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


def _binary(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and one score per case, checked: same length, both classes present, no NaN."""
    y, s = _np(labels).astype(int), _np(scores).astype(float)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must both have shape (N,); got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if y.min() == y.max():
        raise ValueError("labels hold a single class; need positives and negatives")
    return y, s


def threshold_for_sensitivity(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose sensitivity reaches a target: a clinical operating point.

    Cases with ``score >= threshold`` are called positive. Choose the threshold on validation
    data, then apply it unchanged to the test data.

    Args:
        labels: 0/1 labels, shape ``(N,)``.
        scores: Score of the positive class (e.g. its predicted probability), shape ``(N,)``.
        sensitivity: Target fraction of positives to detect, in (0, 1].

    Returns:
        The threshold (one of the positives' scores).
    """
    if not 0 < sensitivity <= 1:
        raise ValueError(f"sensitivity must be in (0, 1], got {sensitivity}")
    y, s = _binary(labels, scores)
    positives = np.sort(s[y == 1])[::-1]
    k = int(np.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[max(k, 1) - 1])


def operating_point(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity and balanced accuracy when ``score >= threshold`` is called positive.

    Returns:
        ``{"threshold", "sensitivity", "specificity", "balanced_acc", "predicted_positive"}``
        (the last: fraction of all cases called positive).
    """
    y, s = _binary(labels, scores)
    called = s >= threshold
    sens, spec = float(called[y == 1].mean()), float((~called[y == 0]).mean())
    return {"threshold": float(threshold), "sensitivity": sens, "specificity": spec,
            "balanced_acc": (sens + spec) / 2, "predicted_positive": float(called.mean())}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """Binary AUC from ranks (Mann-Whitney U, ties count one half): the same value as scikit-learn's, faster."""
    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(
    labels: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic of binary labels and scores.

    Each resample draws, with replacement, as many positives and as many negatives as the data
    has (a stratified bootstrap: every resample keeps the class mix, so the AUC is always defined).

    Args:
        labels: 0/1 labels, shape ``(N,)``.
        scores: Score of the positive class, shape ``(N,)``.
        statistic: ``f(labels, scores) -> float``; default the AUC.
        n_boot: Number of resamples.
        level: Coverage of the interval, e.g. 0.95.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the statistic.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    y, s = _binary(labels, scores)
    statistic = statistic or _auc
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    values = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        values[b] = statistic(y[idx], s[idx])
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
