"""Tests of dlmi.metrics on small hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sklearn.metrics import roc_auc_score

from dlmi.metrics import (
    bootstrap_ci,
    chance_accuracy,
    classification_report,
    operating_point,
    per_class_recall,
    threshold_for_sensitivity,
)


def test_perfect_binary():
    """Perfect predictions: every score is 1."""
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    assert classification_report(y, p) == {"acc": 1.0, "balanced_acc": 1.0, "macro_f1": 1.0, "auc": 1.0}


def test_binary_auc_by_hand():
    """AUC = fraction of (positive, negative) pairs ranked correctly.

    Positives score 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6), (0.8>0.2), (0.4<0.6), (0.4>0.2) -> 3/4.
    Arg-max at 0.5: predictions 1, 0, 1, 0 for labels 1, 1, 0, 0 -> accuracy 1/2.
    """
    y = np.array([1, 1, 0, 0])
    s = np.array([0.8, 0.4, 0.6, 0.2])
    out = classification_report(y, np.stack([1 - s, s], 1))
    assert out["auc"] == pytest.approx(0.75)
    assert out["acc"] == pytest.approx(0.5)
    assert out["balanced_acc"] == pytest.approx(0.5)


def test_ties_count_half():
    """A tied (positive, negative) pair counts 1/2: scores all equal give AUC 0.5."""
    y = np.array([0, 1, 0, 1])
    p = np.full((4, 2), 0.5)
    assert classification_report(y, p)["auc"] == pytest.approx(0.5)


def test_auc_uses_scores_not_argmax():
    """Two score sets with identical arg-max (same accuracy) but different ranking give different AUC."""
    y = np.array([0, 0, 1, 1])
    good = np.array([0.1, 0.3, 0.4, 0.45])  # every positive above every negative
    bad = np.array([0.1, 0.45, 0.3, 0.4])  # one negative above both positives
    a = classification_report(y, np.stack([1 - good, good], 1))
    b = classification_report(y, np.stack([1 - bad, bad], 1))
    assert a["acc"] == b["acc"] == 0.5  # everything predicted class 0
    assert a["auc"] == pytest.approx(1.0)
    assert b["auc"] == pytest.approx(0.5)


def test_multiclass_ovr_by_hand():
    """Three classes: AUC is the macro average of the one-vs-rest AUCs (ties count 1/2)."""
    y = np.array([0, 1, 2, 2])
    p = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],  # class 2, predicted 0
            [0.1, 0.1, 0.8],
        ]
    )
    # class 0: pos 0.6; neg 0.2, 0.5, 0.1 -> 3/3; class 1: pos 0.7; neg 0.3, 0.4, 0.1 -> 3/3;
    # class 2: pos 0.1, 0.8; neg 0.1, 0.1 -> (0.5 + 0.5 + 1 + 1) / 4 = 0.75
    out = classification_report(torch.tensor(y), torch.tensor(p))
    assert out["auc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert out["acc"] == pytest.approx(0.75)
    assert out["balanced_acc"] == pytest.approx((1 + 1 + 0.5) / 3)
    # F1: class 0: P=1/2, R=1 -> 2/3; class 1: 1; class 2: P=1, R=1/2 -> 2/3
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_macro_f1_counts_never_predicted_classes():
    """A class never predicted and never present still counts in the macro F1 (as 0)."""
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    assert classification_report(y, p)["macro_f1"] == pytest.approx(2 / 3)


def test_returns_python_floats():
    """All values are plain floats (they are glued into the book)."""
    out = classification_report(np.array([0, 1]), np.array([[0.7, 0.3], [0.4, 0.6]]))
    assert all(type(v) is float for v in out.values())


def test_nan_probs():
    """NaN probabilities (a diverged model) are a ValueError that says so."""
    p = np.array([[0.5, 0.5], [np.nan, np.nan]])
    with pytest.raises(ValueError, match="NaN"):
        classification_report(np.array([0, 1]), p)


@pytest.mark.parametrize(
    ("labels", "probs"),
    [
        (np.array([0, 1, 0]), np.array([[0.5, 0.5], [0.5, 0.5]])),  # N differs
        (np.array([0, 1]), np.array([0.3, 0.7])),  # 1-D scores
        (np.array([0, 1]), np.zeros((2, 2, 1))),  # 3-D
    ],
)
def test_wrong_shapes(labels, probs):
    """probs must be (N, K) with N = len(labels)."""
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        classification_report(labels, probs)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.parametrize("k", [2, 3])
def test_single_class_auc_is_nan(k):
    """AUC is undefined (NaN) when the labels hold a single class; the other metrics still work."""
    y = np.zeros(4, int)
    p = np.full((4, k), 1 / k)
    p[:, 0] += 0.1
    p[:, 1] -= 0.1
    out = classification_report(y, p)
    assert math.isnan(out["auc"])
    assert out["acc"] == 1.0


def test_chance_accuracy_by_hand():
    """Uniform guessing is 1/K; the majority baseline predicts the commonest training class."""
    train = np.array([0, 1, 1, 1, 2])  # majority class 1
    test = np.array([0, 1, 1, 2, 2, 2, 1, 0])  # class 1 is 3 of 8
    out = chance_accuracy(train, test)
    assert out["uniform"] == pytest.approx(1 / 3)
    assert out["majority"] == pytest.approx(3 / 8)


def test_chance_accuracy_uses_training_majority():
    """The majority class comes from the training labels, not the test labels."""
    out = chance_accuracy(torch.tensor([0, 0, 0, 1]), torch.tensor([1, 1, 1, 0]))
    assert out == {"uniform": 0.5, "majority": 0.25}


def test_per_class_recall_of_a_majority_predictor():
    """Always predicting the majority class: recall 1 for it, 0 for the other, despite 90% accuracy."""
    y = np.array([0] * 9 + [1])
    p = np.tile([0.8, 0.2], (10, 1))
    recall = per_class_recall(y, p)
    assert isinstance(recall, np.ndarray) and recall.shape == (2,)
    np.testing.assert_array_equal(recall, [1.0, 0.0])
    assert classification_report(y, p)["acc"] == pytest.approx(0.9)


def test_per_class_recall_by_hand():
    """Recall of class c = correct predictions of c / images of class c (arg-max predictions)."""
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    p = torch.tensor(
        [
            [0.7, 0.2, 0.1],  # 0 -> 0
            [0.1, 0.6, 0.3],  # 0 -> 1
            [0.2, 0.5, 0.3],  # 1 -> 1
            [0.1, 0.8, 0.1],  # 1 -> 1
            [0.3, 0.3, 0.4],  # 1 -> 2
            [0.1, 0.1, 0.8],  # 2 -> 2
        ]
    )
    np.testing.assert_allclose(per_class_recall(y, p), [1 / 2, 2 / 3, 1.0])


def test_per_class_recall_absent_class_is_zero():
    """A class with no images gets recall 0 (not NaN, no warning), so the result always has K entries."""
    y = np.array([0, 1, 1])
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    np.testing.assert_allclose(per_class_recall(y, p), [1.0, 0.5, 0.0])


def test_per_class_recall_mean_is_balanced_accuracy():
    """The mean of the per-class recalls is the balanced accuracy."""
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.eye(3)[[0, 1, 0, 1, 2, 2, 2, 0, 2]]
    assert per_class_recall(y, p).mean() == pytest.approx(classification_report(y, p)["balanced_acc"])


# ----------------------------------------------------------------- operating points and bootstrap

Y_OP = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
S_OP = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05])


@pytest.mark.parametrize(("target", "expected"), [(0.25, 0.9), (0.5, 0.8), (0.75, 0.6), (0.76, 0.3), (1.0, 0.3)])
def test_threshold_for_sensitivity_by_hand(target, expected):
    """Positives score 0.9, 0.8, 0.6, 0.3: detecting 3 of 4 needs a threshold of 0.6, all 4 one of 0.3."""
    t = threshold_for_sensitivity(Y_OP, S_OP, target)
    assert t == pytest.approx(expected)
    assert operating_point(Y_OP, S_OP, t)["sensitivity"] >= target
    assert operating_point(Y_OP, S_OP, t + 1e-6)["sensitivity"] < target, "not the highest such threshold"


def test_threshold_for_sensitivity_float_round_off():
    """0.95 of 20 positives is 19, not 20, although 0.95 * 20 is 19.000000000000004 in floating point."""
    y = np.r_[np.ones(20, int), np.zeros(5, int)]
    s = np.r_[np.linspace(1.0, 0.05, 20), np.zeros(5)]
    assert threshold_for_sensitivity(y, s, 0.95) == pytest.approx(s[18])


def test_operating_point_by_hand():
    """At 0.55: positives 0.9, 0.8, 0.6 called (3/4); negatives 0.7 called, five not (5/6)."""
    op = operating_point(Y_OP, torch.tensor(S_OP), 0.55)
    assert op["sensitivity"] == pytest.approx(0.75) and op["specificity"] == pytest.approx(5 / 6)
    assert op["balanced_acc"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert op["predicted_positive"] == pytest.approx(0.4) and op["threshold"] == 0.55


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        (np.array([0, 1]), np.array([0.1, 0.2, 0.3]), "shape"),
        (np.array([0, 2]), np.array([0.1, 0.2]), "0 \\(negative\\) or 1"),
        (np.array([0, 1]), np.array([0.1, np.nan]), "NaN"),
        (np.array([1, 1]), np.array([0.1, 0.2]), "single class"),
        (np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), "shape"),
    ],
)
def test_binary_helpers_reject_bad_input(labels, scores, message):
    """Mismatched shapes, non-binary labels, NaN and one-class data are clear ValueErrors."""
    for call in (lambda: threshold_for_sensitivity(labels, scores, 0.9), lambda: operating_point(labels, scores, 0.5),
                 lambda: bootstrap_ci(labels, scores, n_boot=5)):
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5])
def test_threshold_for_sensitivity_target_range(target):
    with pytest.raises(ValueError, match="sensitivity must be in"):
        threshold_for_sensitivity(Y_OP, S_OP, target)


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_more_data():
    """The AUC's interval brackets the AUC, is reproducible by seed, and shrinks with 16x the cases."""
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 2, n)
        return y, y + rng.normal(0, 1.2, n)

    y, s = sample(200)
    low, high = bootstrap_ci(y, s, n_boot=300, seed=1)
    assert low < roc_auc_score(y, s) < high
    assert bootstrap_ci(y, s, n_boot=300, seed=1) == (low, high)
    y_big, s_big = sample(3200)
    low_big, high_big = bootstrap_ci(y_big, s_big, n_boot=300, seed=1)
    assert (high_big - low_big) < 0.5 * (high - low)


def test_rank_auc_equals_scikit_learn_with_ties():
    """The bootstrap's default statistic is the AUC, ties included."""
    from dlmi.metrics import _auc

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(y + rng.normal(0, 1, 300), 1)  # rounding makes many ties
    assert _auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_bootstrap_ci_keeps_the_class_mix_and_takes_any_statistic():
    """Every resample has the original number of positives; a constant statistic gives a point interval."""
    y, s = Y_OP, S_OP
    assert bootstrap_ci(y, s, statistic=lambda yy, ss: yy.mean(), n_boot=50) == pytest.approx((0.4, 0.4))
    low, high = bootstrap_ci(y, s, statistic=lambda yy, ss: 1.0, n_boot=10)
    assert low == high == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [({"level": 1.0}, "level"), ({"level": 0.0}, "level"), ({"n_boot": 0}, "n_boot")])
def test_bootstrap_ci_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(Y_OP, S_OP, **kwargs)
