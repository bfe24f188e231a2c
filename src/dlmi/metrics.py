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

__all__ = ["binary_metrics", "bootstrap_ci", "chance_accuracy", "classification_report", "per_class_recall", "threshold_for_sensitivity"]


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


def _binary_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = _np(labels).astype(int), _np(scores).astype(float)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores must be (N,) with N = len(labels) = {len(y)}, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    return y, s


def binary_metrics(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Threshold-dependent metrics of a binary classifier: positive means ``score >= threshold``.

    Args:
        labels: True labels ``(N,)``, 0 or 1.
        scores: Score of the positive class ``(N,)``, e.g. its predicted probability.
        threshold: Decision threshold.

    Returns:
        ``{"sensitivity", "specificity", "precision", "f1", "accuracy", "balanced_acc",
        "predicted_positive"}`` (sensitivity is the recall of class 1, precision its positive
        predictive value, 0 when nothing is predicted positive; ``predicted_positive`` the share
        of cases called positive).
    """
    y, s = _binary_inputs(labels, scores)
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    out = {"sensitivity": sens, "specificity": spec, "precision": prec, "f1": f1,
           "accuracy": (tp + tn) / len(y), "balanced_acc": (sens + spec) / 2, "predicted_positive": pred.mean()}
    return {k: float(v) for k, v in out.items()}


def threshold_for_sensitivity(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, sensitivity: float = 0.9) -> float:
    """The highest threshold at which ``score >= threshold`` detects at least ``sensitivity`` of the positives.

    Choose it on validation data and apply it unchanged to the test data: that is a
    pre-registered operating point (the test sensitivity may then differ from the target).

    Raises:
        ValueError: ``sensitivity`` outside (0, 1], or no positive case.
    """
    y, s = _binary_inputs(labels, scores)
    if not 0 < sensitivity <= 1:
        raise ValueError(f"sensitivity must lie in (0, 1], got {sensitivity}")
    positives = np.sort(s[y == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("no positive case: a sensitivity cannot be reached")
    k = int(np.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[k - 1])


RANKING_METRICS = (skm.roc_auc_score, skm.average_precision_score)


def bootstrap_ci(
    labels: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float] = skm.roc_auc_score,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """A metric on the test cases and its percentile-bootstrap confidence interval.

    The cases are resampled with replacement ``n_boot`` times, the metric is recomputed on each
    resample, and the ``alpha/2`` and ``1 - alpha/2`` quantiles of those values bound the
    interval: how much the number could move with another test set of the same size from the
    same population. It does not cover other sources of variation (another training seed,
    another hospital).

    Args:
        labels: True class indices ``(N,)``.
        scores: What ``metric`` takes as its second argument: for AUC (the default) continuous
            scores ``(N,)`` such as the predicted probability of class 1; ``(N, 2)``
            probabilities of a binary task are reduced to their second column.
        metric: ``metric(labels, scores) -> float``, e.g. :func:`sklearn.metrics.roc_auc_score`
            (default), :func:`~sklearn.metrics.average_precision_score`, or a wrapper that
            thresholds the scores first (e.g. F1 at 0.5).
        n_boot: Number of resamples.
        alpha: 0.05 for a 95 % interval.
        seed: Seed of the resampling (same seed, same interval).
        stratified: Resample within each class, keeping the class counts (every resample then
            has both classes, so AUC is always defined); otherwise resample all cases together
            and skip resamples with a single class.

    Returns:
        ``(point estimate on all cases, lower bound, upper bound)``.

    Raises:
        ValueError: shapes disagree, NaNs, a single class in ``labels``, hard 0/1 "scores" given
            to AUC or average precision (that AUC would be balanced accuracy in disguise), or
            ``n_boot``/``alpha`` out of range.
    """
    y, s = _np(labels), _np(scores).astype(float)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be one non-empty vector (N,), got shape {y.shape}")
    if s.shape[0] != len(y) or s.ndim not in (1, 2):
        raise ValueError(f"scores must be (N,) or (N, K) with N = len(labels) = {len(y)}, got shape {s.shape}")
    if np.isnan(y.astype(float)).any() or np.isnan(s).any():
        raise ValueError("labels or scores contain NaN: drop those cases or fix the model first")
    y = y.astype(int)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"labels hold a single class ({classes.tolist()}): a confidence interval needs both classes")
    if s.ndim == 2 and s.shape[1] == 2 and set(classes.tolist()) <= {0, 1}:
        s = s[:, 1]
    if metric in RANKING_METRICS and np.isin(s, (0.0, 1.0)).all():
        raise ValueError(
            f"{metric.__name__} needs continuous scores, got only 0 and 1 (hard predictions): pass the "
            "predicted probabilities, or use a threshold metric such as balanced accuracy"
        )
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"n_boot must be positive and alpha in (0, 1), got n_boot={n_boot}, alpha={alpha}")
    rng = np.random.default_rng(seed)
    if stratified:
        members = [np.flatnonzero(y == c) for c in classes]
        index = np.concatenate([m[rng.integers(0, len(m), size=(n_boot, len(m)))] for m in members], axis=1)
    else:
        index = rng.integers(0, len(y), size=(n_boot, len(y)))
        index = index[[len(np.unique(y[i])) > 1 for i in index]]
        if len(index) < n_boot / 2:
            raise ValueError(
                f"only {len(index)} of {n_boot} resamples hold both classes: too few cases of one class; use stratified=True"
            )
    values = np.array([metric(y[i], s[i]) for i in index], dtype=float)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(metric(y, s)), float(low), float(high)
