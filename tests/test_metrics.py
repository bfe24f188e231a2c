"""Tests of dlmi.metrics on small hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sklearn.metrics import roc_auc_score

from dlmi.metrics import (
    binary_metrics,
    bootstrap_ci,
    chance_accuracy,
    classification_report,
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


# --------------------------------------------------------------------------- binary metrics at a threshold


def test_binary_metrics_by_hand():
    """4 positives, 6 negatives at threshold 0.5: TP 3, FN 1, FP 2, TN 4."""
    from dlmi.metrics import binary_metrics

    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.5, 0.2, 0.7, 0.6, 0.4, 0.3, 0.1, 0.0])
    m = binary_metrics(y, s)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["balanced_acc"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert m["predicted_positive"] == pytest.approx(5 / 10)
    strict = binary_metrics(y, s, threshold=0.95)
    assert strict["sensitivity"] == 0 and strict["precision"] == 0 and strict["specificity"] == 1


def test_threshold_for_sensitivity():
    """The highest threshold that still detects the target share of positives."""
    from dlmi.metrics import binary_metrics, threshold_for_sensitivity

    y = np.array([1] * 10 + [0] * 5)
    s = np.concatenate([np.linspace(1.0, 0.1, 10), np.full(5, 0.5)])
    t = threshold_for_sensitivity(y, s, 0.9)
    assert t == pytest.approx(0.2)  # the 9th highest positive score
    assert binary_metrics(y, s, t)["sensitivity"] == pytest.approx(0.9)
    assert binary_metrics(y, s, t + 1e-6)["sensitivity"] < 0.9
    assert threshold_for_sensitivity(y, s, 1.0) == pytest.approx(0.1)
    assert threshold_for_sensitivity(y, s, 0.05) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("labels", "scores", "kwargs", "match"),
    [
        ([0, 1], [0.5], {}, "must be"),
        ([0, 1], [[0.5, 0.5], [0.1, 0.9]], {}, "must be"),
        ([0, 2], [0.5, 0.5], {}, "0 \\(negative\\) or 1"),
        ([0, 1], [float("nan"), 0.5], {}, "NaN"),
        ([0, 0], [0.1, 0.5], {"sensitivity": 0.9}, "no positive"),
        ([0, 1], [0.1, 0.5], {"sensitivity": 1.5}, "sensitivity"),
    ],
)
def test_binary_inputs_are_checked(labels, scores, kwargs, match):
    from dlmi.metrics import binary_metrics, threshold_for_sensitivity

    with pytest.raises(ValueError, match=match):
        if kwargs:
            threshold_for_sensitivity(np.array(labels), np.array(scores), **kwargs)
        else:
            binary_metrics(np.array(labels), np.array(scores))


# --------------------------------------------------------------------------- bootstrap confidence intervals


def _scored(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels and noisy scores (AUC about 0.8)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return y, y + rng.normal(0, 1.2, n)


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_n():
    from sklearn.metrics import roc_auc_score

    from dlmi.metrics import bootstrap_ci

    y, s = _scored(200)
    auc, low, high = bootstrap_ci(y, s, n_boot=300)
    assert auc == pytest.approx(roc_auc_score(y, s))
    assert low < auc < high and 0.5 < low and high < 1
    y_big, s_big = _scored(3200, seed=1)
    _, low_big, high_big = bootstrap_ci(y_big, s_big, n_boot=300)
    assert high_big - low_big < (high - low) / 2  # 16 times the cases: about a quarter of the width


def test_bootstrap_ci_is_deterministic_and_follows_alpha():
    from dlmi.metrics import bootstrap_ci

    y, s = _scored(120)
    assert bootstrap_ci(y, s, n_boot=200, seed=3) == bootstrap_ci(y, s, n_boot=200, seed=3)
    assert bootstrap_ci(y, s, n_boot=200, seed=3) != bootstrap_ci(y, s, n_boot=200, seed=4)
    _, low95, high95 = bootstrap_ci(y, s, n_boot=200, alpha=0.05)
    _, low50, high50 = bootstrap_ci(y, s, n_boot=200, alpha=0.5)
    assert low95 <= low50 <= high50 <= high95


def test_bootstrap_ci_perfect_scores_and_other_metrics():
    from sklearn.metrics import f1_score

    from dlmi.metrics import bootstrap_ci

    y = np.array([0, 0, 0, 1, 1, 1])
    assert bootstrap_ci(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), n_boot=50) == (1.0, 1.0, 1.0)
    # (N, 2) probabilities of a binary task: the second column is the score
    probs = np.stack([1 - np.linspace(0, 1, 6), np.linspace(0, 1, 6)], axis=1)
    assert bootstrap_ci(y, probs, n_boot=50)[0] == 1.0
    f1 = bootstrap_ci(y, np.array([0.1, 0.6, 0.3, 0.7, 0.8, 0.2]), metric=lambda t, p: f1_score(t, p >= 0.5), n_boot=50)
    assert f1[0] == pytest.approx(f1_score(y, [0, 1, 0, 1, 1, 0]))
    unstratified = bootstrap_ci(*_scored(100), n_boot=100, stratified=False)
    assert unstratified[1] < unstratified[0] < unstratified[2]


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([1, 1, 1], [0.2, 0.5, 0.9], "single class"),
        ([0, 1, 1], [0.2, float("nan"), 0.9], "NaN"),
        ([0.0, float("nan"), 1.0], [0.2, 0.5, 0.9], "NaN"),
        ([0, 1, 1], [0.2, 0.5], "scores must be"),
        ([[0, 1]], [0.2, 0.5], "labels must be"),
        ([0, 1, 1, 0], [0, 1, 1, 1], "hard predictions"),
    ],
)
def test_bootstrap_ci_errors(labels, scores, match):
    from dlmi.metrics import bootstrap_ci

    with pytest.raises(ValueError, match=match):
        bootstrap_ci(np.array(labels), np.array(scores), n_boot=10)


# ----------------------------------------------------------------- thresholds for a target sensitivity

Y_OP = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
S_OP = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05])


@pytest.mark.parametrize(("target", "expected"), [(0.25, 0.9), (0.5, 0.8), (0.75, 0.6), (0.76, 0.3), (1.0, 0.3)])
def test_threshold_for_sensitivity_by_hand(target, expected):
    """Positives score 0.9, 0.8, 0.6, 0.3: detecting 3 of 4 needs a threshold of 0.6, all 4 one of 0.3."""
    t = threshold_for_sensitivity(Y_OP, S_OP, target)
    assert t == pytest.approx(expected)
    assert binary_metrics(Y_OP, S_OP, t)["sensitivity"] >= target
    assert binary_metrics(Y_OP, S_OP, t + 1e-6)["sensitivity"] < target, "not the highest such threshold"


def test_threshold_for_sensitivity_float_round_off():
    """0.95 of 20 positives is 19, not 20, although 0.95 * 20 is 19.000000000000004 in floating point."""
    y = np.r_[np.ones(20, int), np.zeros(5, int)]
    s = np.r_[np.linspace(1.0, 0.05, 20), np.zeros(5)]
    assert threshold_for_sensitivity(y, s, 0.95) == pytest.approx(s[18])


# --------------------------------------------------------------------------- chapter 7 additions

from sklearn import metrics as skm  # noqa: E402

from dlmi.metrics import (  # noqa: E402
    agreement,
    expected_calibration_error,
    fit_temperature,
    per_class_table,
    reliability_table,
    worst_errors,
    youden_threshold,
)


@pytest.fixture
def three_class():
    """500 random labels and Dirichlet probabilities over three classes (seeded)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, 500), rng.dirichlet([2, 1, 1], 500)


def test_per_class_table_matches_sklearn(three_class):
    """Every cell equals scikit-learn's precision/recall/F1/support, including macro and weighted averages."""
    y, p = three_class
    table = per_class_table(y, p, ["a", "b", "c"])
    assert list(table.index) == ["a", "b", "c", "macro avg", "weighted avg"]
    pred = p.argmax(1)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    np.testing.assert_allclose(table.loc[["a", "b", "c"], "precision"], prec)
    np.testing.assert_allclose(table.loc[["a", "b", "c"], "recall"], rec)
    np.testing.assert_allclose(table.loc[["a", "b", "c"], "f1"], f1)
    assert table.loc[["a", "b", "c"], "support"].tolist() == sup.tolist()
    assert table.loc["macro avg", "f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert table.loc["weighted avg", "f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))


def test_per_class_table_wrong_names():
    with pytest.raises(ValueError, match="2 class names for 3 columns"):
        per_class_table([0, 1, 2], np.eye(3), ["a", "b"])


def test_macro_and_weighted_differ_when_the_rare_class_fails():
    """90 cases of class 0 all right, 10 of class 1 all wrong: weighted F1 follows the common class."""
    y = np.array([0] * 90 + [1] * 10)
    p = np.tile([0.8, 0.2], (100, 1))
    table = per_class_table(y, p, ["common", "rare"])
    assert table.loc["macro avg", "f1"] < 0.5 < table.loc["weighted avg", "f1"]


def test_agreement_matches_sklearn(three_class):
    y, p = three_class
    out = agreement(y, p)
    pred = p.argmax(1)
    assert out["kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert out["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_agreement_of_majority_model_is_zero():
    """A constant prediction: accuracy = majority share, but kappa = MCC = 0 and balanced accuracy 1/2."""
    y = np.array([0] * 83 + [1] * 17)
    out = agreement(y, np.tile([0.9, 0.1], (100, 1)))
    assert out["accuracy"] == pytest.approx(0.83)
    assert out["kappa"] == 0.0 and out["mcc"] == 0.0
    assert out["balanced_acc"] == pytest.approx(0.5)


def test_agreement_perfect():
    y = np.array([0, 1, 2, 1])
    out = agreement(y, np.eye(3)[y])
    assert out["kappa"] == pytest.approx(1.0) and out["mcc"] == pytest.approx(1.0)


def test_youden_threshold_by_hand():
    """Negatives 0.1, 0.2, 0.35; positives 0.3, 0.6, 0.9: J is largest (2/3) at threshold 0.6 (sens 2/3, spec 1)
    and also at 0.3 (sens 1, spec 2/3); sklearn's ROC order gives the higher threshold first."""
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.35, 0.3, 0.6, 0.9])
    t = youden_threshold(y, s)
    fpr, tpr, thr = skm.roc_curve(y, s)
    assert t == pytest.approx(thr[np.argmax(tpr - fpr)])
    m = binary_metrics(y, s, t)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(2 / 3)


def test_youden_perfect_separation():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.7, 0.8])
    m = binary_metrics(y, s, youden_threshold(y, s))
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0


def test_ece_perfectly_calibrated_is_near_zero():
    """Labels drawn with exactly the predicted probabilities: ECE is close to 0 (sampling noise only)."""
    rng = np.random.default_rng(0)
    n = 200_000
    p1 = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p1).astype(int)
    probs = np.stack([1 - p1, p1], 1)
    assert expected_calibration_error(y, probs) < 0.01
    # and a clearly over-confident model is far from 0: push every probability towards 0 or 1
    sharp = np.clip(np.round(p1), 0.001, 0.999)
    assert expected_calibration_error(y, np.stack([1 - sharp, sharp], 1)) > 0.2


def test_ece_by_hand():
    """Four cases, all with confidence 0.8 (one bin), three right: ECE = |0.75 - 0.8| = 0.05."""
    y = np.array([0, 0, 0, 1])
    p = np.tile([0.8, 0.2], (4, 1))
    assert expected_calibration_error(y, p) == pytest.approx(0.05, abs=1e-6)


def test_reliability_table_agrees_with_ece(three_class):
    """The count-weighted gap of the table's bins is torchmetrics' ECE with the same bins."""
    y, p = three_class
    table = reliability_table(y, p, n_bins=10)
    gap = (table["count"] * (table["accuracy"] - table["confidence"]).abs()).sum() / table["count"].sum()
    assert table["count"].sum() == len(y)
    assert gap == pytest.approx(expected_calibration_error(y, p, n_bins=10), abs=1e-6)


def test_reliability_table_all_correct():
    """All predictions right: accuracy 1 in every bin (the case calibration_curve cannot take)."""
    y = np.array([0, 1, 1])
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    table = reliability_table(y, p, n_bins=5)
    assert (table["accuracy"] == 1).all() and table["count"].sum() == 3


def test_fit_temperature_recovers_scaling():
    """Labels drawn from softmax(z); the model reports 3z (over-confident): the fitted T is close to 3."""
    gen = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(20_000, 3, generator=gen)
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=gen).squeeze(1)
    assert fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z / 2, y) == pytest.approx(0.5, rel=0.05)


def test_temperature_keeps_ranking_and_accuracy():
    """Dividing logits by T leaves arg-max and AUC unchanged."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(300, 2, generator=gen)
    y = (torch.rand(300, generator=gen) < torch.softmax(z, 1)[:, 1]).long()
    t = fit_temperature(5 * z, y)
    before, after = torch.softmax(5 * z, 1), torch.softmax(5 * z / t, 1)
    assert torch.equal(before.argmax(1), after.argmax(1))
    assert roc_auc_score(y, before[:, 1]) == pytest.approx(roc_auc_score(y, after[:, 1]))


def test_fit_temperature_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))


def test_worst_errors_order():
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.3, 0.7], [0.4, 0.6]])
    # wrong: 1 (conf 0.8), 2 (0.95), 4 (0.6); worst first
    assert worst_errors(y, p, 2).tolist() == [2, 1]
    assert worst_errors(y, p, 10).tolist() == [2, 1, 4]


def test_cluster_bootstrap_is_wider_for_correlated_cases():
    """Ten copies of each of 40 cases: resampling copies as independent gives a much narrower interval
    than resampling the 40 clusters, which is the honest one."""
    rng = np.random.default_rng(0)
    y0 = np.repeat([0, 1], 20)
    s0 = rng.normal(y0 * 0.8, 1.0)
    y, s, groups = np.repeat(y0, 10), np.repeat(s0, 10), np.repeat(np.arange(40), 10)
    _, lo_i, hi_i = bootstrap_ci(y, s, n_boot=300, seed=0)
    point, lo_c, hi_c = bootstrap_ci(y, s, n_boot=300, seed=0, groups=groups)
    assert point == pytest.approx(roc_auc_score(y0, s0))
    assert (hi_c - lo_c) > 2 * (hi_i - lo_i)


def test_cluster_bootstrap_bad_groups():
    with pytest.raises(ValueError, match="one cluster id per case"):
        bootstrap_ci(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), groups=np.array([0, 1]))
