"""Classification metrics computed from scores, never from hard labels alone.

Thin wrappers around scikit-learn so that every chapter reports the same numbers the
same way. AUC always takes predicted probabilities: an "AUC" from 0/1 predictions is
just balanced accuracy in disguise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

__all__ = [
    "agreement",
    "binary_metrics",
    "bootstrap_ci",
    "chance_accuracy",
    "classification_report",
    "expected_calibration_error",
    "fit_temperature",
    "per_class_recall",
    "per_class_table",
    "reliability_table",
    "threshold_for_sensitivity",
    "worst_errors",
    "youden_threshold",
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


def _cluster_resamples(y: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Case indices of ``n_boot`` resamples of whole clusters, keeping those that hold both classes."""
    if groups.shape != y.shape:
        raise ValueError(f"groups must give one cluster id per case, shape {y.shape}, got {groups.shape}")
    _, cluster = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(cluster == c) for c in range(cluster.max() + 1)]
    picks = rng.integers(0, len(members), size=(n_boot, len(members)))
    index = [np.concatenate([members[c] for c in row]) for row in picks]
    index = [i for i in index if len(np.unique(y[i])) > 1]
    if len(index) < n_boot / 2:
        raise ValueError(f"only {len(index)} of {n_boot} cluster resamples hold both classes: too few clusters")
    return index


def bootstrap_ci(
    labels: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float] = skm.roc_auc_score,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    groups: np.ndarray | Sequence | None = None,
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
        groups: Optional cluster id per case ``(N,)``, e.g. the patient of each image. Whole
            clusters are then resampled (a *cluster bootstrap*, unstratified): cases of one
            patient are not independent, and resampling them one by one gives intervals that are
            too narrow.

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
    if groups is not None:
        index = _cluster_resamples(y, np.asarray(groups), n_boot, rng)
    elif stratified:
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


def _probs(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    y, p = _np(labels).astype(int), _np(probs).astype(float)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, K) with N = len(labels) = {len(y)}, got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError("probs contain NaN: the model diverged; lower the learning rate or check the inputs")
    return y, p


def per_class_table(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of every class, plus their macro and weighted averages.

    scikit-learn's ``classification_report`` as a table, for arg-max predictions. The *macro*
    average weights every class equally (a rare class counts as much as a common one); the
    *weighted* average weights each class by its support, so it follows the common classes.

    Args:
        labels: True class indices ``(N,)``.
        probs: Predicted probabilities ``(N, K)``.
        classes: The K class names.

    Returns:
        A DataFrame indexed by class name, then ``"macro avg"`` and ``"weighted avg"``, with
        columns ``precision, recall, f1, support``.
    """
    y, p = _probs(labels, probs)
    if len(classes) != p.shape[1]:
        raise ValueError(f"{len(classes)} class names for {p.shape[1]} columns of probs")
    report = skm.classification_report(
        y, p.argmax(1), labels=np.arange(p.shape[1]), target_names=list(classes), output_dict=True, zero_division=0
    )
    report.pop("accuracy", None)
    table = pd.DataFrame(report).T.rename(columns={"f1-score": "f1"})
    table["support"] = table["support"].astype(int)
    return table.loc[[*classes, "macro avg", "weighted avg"]]


def agreement(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Chance-corrected agreement of the arg-max predictions with the labels.

    Returns:
        ``{"accuracy", "balanced_acc", "kappa", "mcc", "macro_f1", "weighted_f1"}``: Cohen's kappa
        and the Matthews correlation coefficient are 0 for a model that ignores the image (such as
        one that always predicts the majority class) and 1 for perfect predictions, whatever the
        class balance; accuracy is not.
    """
    y, p = _probs(labels, probs)
    pred = p.argmax(1)
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_acc": skm.balanced_accuracy_score(y, pred),
        "kappa": skm.cohen_kappa_score(y, pred),
        "mcc": skm.matthews_corrcoef(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=np.arange(p.shape[1]), zero_division=0),
        "weighted_f1": skm.f1_score(y, pred, average="weighted", labels=np.arange(p.shape[1]), zero_division=0),
    }
    return {k: float(0.0 if np.isnan(v) else v) for k, v in out.items()}


def youden_threshold(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> float:
    """The threshold that maximises Youden's J = sensitivity + specificity - 1 on these cases.

    Computed from scikit-learn's ROC curve; choose it on validation data, then apply it to the
    test data unchanged (positive means ``score >= threshold``).
    """
    y, s = _binary_inputs(labels, scores)
    if len(np.unique(y)) < 2:
        raise ValueError("Youden's J needs both classes in labels")
    fpr, tpr, thresholds = skm.roc_curve(y, s)
    return float(min(thresholds[np.argmax(tpr - fpr)], 1.0))


def expected_calibration_error(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error (top-label, equal-width bins) from torchmetrics.

    The cases are binned by their confidence (the largest probability); ECE is the average over
    bins of ``|accuracy - mean confidence|``, weighted by the share of cases in the bin. 0 means
    that "90 % sure" is right 90 % of the time.

    Args:
        labels: True class indices ``(N,)``.
        probs: Predicted probabilities ``(N, K)``, K >= 2 (binary: both columns).
        n_bins: Number of confidence bins.
    """
    y, p = _probs(labels, probs)
    return float(multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y), num_classes=p.shape[1], n_bins=n_bins, norm="l1"))


def reliability_table(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """The data of a reliability diagram: per confidence bin, mean confidence, accuracy and count.

    Top-label calibration: the confidence of a case is its largest probability and it is
    "correct" if that class is the true one (scikit-learn's ``calibration_curve`` on those two).

    Returns:
        One row per non-empty bin: ``bin_low, bin_high, confidence, accuracy, count``. The
        count-weighted mean of ``|accuracy - confidence|`` is the expected calibration error.
    """
    from sklearn.calibration import calibration_curve

    y, p = _probs(labels, probs)
    confidence, correct = p.max(1), (p.argmax(1) == y).astype(int)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence)  # the binning calibration_curve uses
    counts = np.bincount(bins, minlength=n_bins)
    if correct.min() == correct.max():  # calibration_curve needs both outcomes; the table does not
        accuracy = np.full(n_bins, float(correct[0]))[counts > 0]
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins)[counts > 0] / counts[counts > 0]
    else:
        accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    keep = counts > 0
    return pd.DataFrame({"bin_low": edges[:-1][keep], "bin_high": edges[1:][keep], "confidence": mean_conf,
                         "accuracy": accuracy, "count": counts[keep]})


def fit_temperature(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, max_iter: int = 200) -> float:
    """Temperature scaling: the T > 0 that minimises the cross-entropy of ``softmax(logits / T)``.

    Fit it on validation logits and divide the test logits by it. One number changes the
    confidence of every prediction but never its ranking or arg-max, so AUC and accuracy stay
    the same; only calibration changes (T > 1 softens over-confident models).

    Args:
        logits: Raw model outputs ``(N, K)`` (not probabilities).
        labels: True class indices ``(N,)``.

    Returns:
        The temperature T.
    """
    z, y = torch.as_tensor(_np(logits), dtype=torch.float64), torch.as_tensor(_np(labels), dtype=torch.long)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"logits must be (N, K) with N = len(labels) = {len(y)}, got shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("logits contain NaN or infinite values")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def worst_errors(labels: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray, k: int = 8) -> np.ndarray:
    """Indices of the ``k`` most confident wrong predictions (largest probability of a wrong class), worst first."""
    y, p = _probs(labels, probs)
    wrong = np.flatnonzero(p.argmax(1) != y)
    confidence = p[wrong].max(1)
    return wrong[np.argsort(-confidence, kind="stable")[:k]]
