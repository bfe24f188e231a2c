"""Tests of dlmi.train: the training loop, prediction and evaluation, on tiny synthetic sets."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlmi.data import ImageSet
from dlmi.models import MLP, LogisticRegression
from dlmi.train import balanced_class_weights, evaluate, fit, make_optimizer, make_scheduler, predict, to_float

HISTORY_WITH_VAL = {
    "epoch", "train_loss", "train_acc", "lr", "val_loss", "val_acc", "val_balanced_acc", "val_macro_f1", "val_auc", "seconds",
}  # fmt: skip


def logreg(seed: int = 0) -> nn.Module:
    """A freshly initialised logistic regression for 1x8x8 images and 2 classes."""
    torch.manual_seed(seed)
    return LogisticRegression((1, 8, 8), 2)


def mlp(seed: int = 0, dropout: float = 0.0, hidden=(16,)) -> nn.Module:
    """A freshly initialised MLP for 1x8x8 images and 2 classes."""
    torch.manual_seed(seed)
    return MLP((1, 8, 8), 2, hidden=hidden, dropout=dropout)


# --------------------------------------------------------------------------- small helpers


def test_to_float():
    """uint8 [0, 255] -> float32 [0, 1], same shape."""
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    y = to_float(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y, torch.tensor([[0.0, 0.2, 1.0]]))
    assert x.dtype == torch.uint8 and x[0, 2] == 255, "the input is left unchanged"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.int16, torch.bool])
def test_to_float_rejects_non_uint8(dtype):
    """Anything but uint8 is a TypeError (already-scaled floats would be scaled twice)."""
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.zeros(2, 2, dtype=dtype))


@pytest.mark.parametrize(("name", "cls"), [("sgd", torch.optim.SGD), ("Adam", torch.optim.Adam), ("ADAMW", torch.optim.AdamW)])
def test_make_optimizer(name, cls):
    """Known names (any case) give the right optimiser with the given settings."""
    params = [nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(name, params, lr=0.1, weight_decay=0.01)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.01


def test_make_optimizer_momentum():
    """SGD takes the momentum."""
    opt = make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", ["rmsprop", "adamm", ""])
def test_make_optimizer_unknown(name):
    """An unknown optimiser is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match="'sgd', 'adam' or 'adamw'"):
        make_optimizer(name, [nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_predict(toy, batch_size):
    """Probabilities (N, K) on the CPU, rows summing to 1, independent of the batch size."""
    data = toy(n=20)
    model = mlp()
    probs = predict(model, data.images, batch_size=batch_size)
    assert probs.shape == (20, 2) and probs.device.type == "cpu"
    assert (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(20))
    with torch.no_grad():
        expected = torch.softmax(model(to_float(data.images)), 1)
    torch.testing.assert_close(probs, expected)
    assert not model.training, "predict puts the model in eval mode"


def test_evaluate_loss_is_over_the_whole_split(toy):
    """evaluate's loss is the cross-entropy over every image, not over one batch."""
    data = toy(n=30, seed=1)
    model = mlp(seed=2)
    out = evaluate(model, data, batch_size=7)
    with torch.no_grad():
        manual = F.cross_entropy(model(to_float(data.images)), data.labels).item()
    assert out["loss"] == pytest.approx(manual, rel=1e-5)
    assert set(out) == {"loss", "acc", "balanced_acc", "macro_f1", "auc"}


def test_evaluate_with_class_weights(toy):
    """A weighted loss changes the value, and equals the weighted cross-entropy."""
    data = toy(n=30, seed=1)
    model = mlp(seed=2)
    weight = torch.tensor([1.0, 5.0])
    plain = evaluate(model, data)["loss"]
    weighted = evaluate(model, data, nn.CrossEntropyLoss(weight=weight))["loss"]
    with torch.no_grad():
        manual = F.cross_entropy(model(to_float(data.images)), data.labels, weight=weight).item()
    assert weighted == pytest.approx(manual, rel=1e-5)
    assert weighted != pytest.approx(plain, rel=1e-3)


def test_evaluate_loss_of_confident_mistakes(toy):
    """Very confident wrong predictions: the loss is still the true cross-entropy of the logits.

    Probabilities underflow to 0 in float32 for logit gaps beyond ~100, so a loss computed
    from clamped probabilities saturates at -log(1e-12) = 27.6 instead of growing.
    """
    data = toy(n=4)
    model = LogisticRegression((1, 8, 8), 2)
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([100.0, -100.0]))  # always class 0, by a logit gap of 200
    with torch.no_grad():
        manual = F.cross_entropy(model(to_float(data.images)), data.labels).item()
    assert manual == pytest.approx(100.0)  # half the images (class 1) cost 200 each
    assert evaluate(model, data)["loss"] == pytest.approx(manual, rel=1e-4)


def scheduled_lrs(build, epochs: int, lr: float = 1.0) -> tuple[list[float], float]:
    """The learning rate of each of ``epochs`` epochs under ``build`` (stepped once per epoch, as fit does), and the final one."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs, opt.param_groups[0]["lr"]


@pytest.mark.parametrize(("epochs", "milestones"), [(4, [2, 3]), (8, [4, 6]), (20, [10, 15]), (100, [50, 75])])
def test_step_schedule_is_multistep_at_half_and_three_quarters(epochs, milestones):
    """"step" multiplies the rate by 0.1 after 50% and 75% of the epochs, exactly as MultiStepLR would."""
    lrs, _ = scheduled_lrs(make_scheduler("step", epochs), epochs, lr=0.01)
    reference, _ = scheduled_lrs(lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1), epochs, lr=0.01)
    assert lrs == pytest.approx(reference)
    half, three_quarters = milestones
    assert lrs[:half] == pytest.approx([0.01] * half)
    assert lrs[half:three_quarters] == pytest.approx([0.001] * (three_quarters - half))
    assert lrs[three_quarters:] == pytest.approx([0.0001] * (epochs - three_quarters))


def test_step_schedule_custom_milestones_and_gamma():
    """milestones and gamma are honoured."""
    lrs, _ = scheduled_lrs(make_scheduler("step", 10, milestones=(0.3,), gamma=0.5), 10)
    assert lrs == pytest.approx([1.0] * 3 + [0.5] * 7)


@pytest.mark.parametrize("epochs", [5, 10, 30])
def test_cosine_schedule_decays_to_zero(epochs):
    """"cosine" starts at the base rate, falls every epoch along a half cosine, and reaches ~0 after the last epoch."""
    lrs, final = scheduled_lrs(make_scheduler("cosine", epochs), epochs, lr=0.1)
    assert lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] < 0.1 * 0.1
    assert final == pytest.approx(0.0, abs=1e-9)
    assert lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * t / epochs)) for t in range(epochs)])


def test_constant_schedule():
    """"constant" keeps the base rate."""
    lrs, final = scheduled_lrs(make_scheduler("constant", 6), 6, lr=0.3)
    assert lrs == pytest.approx([0.3] * 6) and final == pytest.approx(0.3)


@pytest.mark.parametrize("kind", ["constant", "step", "cosine"])
@pytest.mark.parametrize("warmup", [1, 2, 3])
def test_warmup_starts_at_a_tenth_and_reaches_the_base_rate(kind, warmup):
    """Warm-up rises linearly from 0.1x over `warmup_epochs`; the next epoch runs at the full rate."""
    epochs = 12
    lrs, _ = scheduled_lrs(make_scheduler(kind, epochs, warmup_epochs=warmup), epochs, lr=0.5)
    assert lrs[0] == pytest.approx(0.05)
    expected = [0.5 * (0.1 + 0.9 * e / warmup) for e in range(warmup)]
    assert lrs[:warmup] == pytest.approx(expected)
    assert lrs[warmup] == pytest.approx(0.5)
    assert max(lrs) == pytest.approx(0.5)


def test_warmup_then_step_counts_the_remaining_epochs():
    """With warm-up, the step milestones are fractions of the epochs after it."""
    lrs, _ = scheduled_lrs(make_scheduler("step", 10, warmup_epochs=2), 10)
    # 8 epochs after warm-up: decays after 4 and 6 of them
    assert lrs[2:] == pytest.approx([1.0] * 4 + [0.1] * 2 + [0.01] * 2)


def test_warmup_then_cosine_ends_at_zero():
    """Cosine after warm-up still ends at ~0 after the planned epochs."""
    lrs, final = scheduled_lrs(make_scheduler("cosine", 10, warmup_epochs=3), 10)
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))
    assert final == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["linear", "Cosine", "multistep", ""])
def test_make_scheduler_unknown_kind(kind):
    """An unknown schedule is a ValueError at once (not when the optimiser arrives)."""
    with pytest.raises(ValueError, match="'constant', 'step' or 'cosine'"):
        make_scheduler(kind, 10)


def test_balanced_class_weights_by_hand():
    """Labels [0, 0, 0, 1]: w = N / (K N_c) = [4 / (2 * 3), 4 / (2 * 1)]."""
    w = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([4 / 6, 2.0]))


def test_balanced_class_weights_of_balanced_labels_are_one():
    """Equal class counts: every weight is 1."""
    torch.testing.assert_close(balanced_class_weights(torch.arange(12) % 3, 3), torch.ones(3))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 5])
def test_balanced_class_weights_mean_over_images_is_one(seed, k):
    """Averaged over the images (each taking its class's weight), the weight is 1; each class carries N / K in total."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(k), torch.randint(0, k, (50,), generator=g)])
    w = balanced_class_weights(labels, k)
    assert w[labels].mean().item() == pytest.approx(1.0)
    per_class = torch.zeros(k).index_add_(0, labels, w[labels])
    torch.testing.assert_close(per_class, torch.full((k,), len(labels) / k))


@pytest.mark.parametrize(("labels", "k", "missing"), [([0, 0, 1], 3, "[2]"), ([1, 1], 2, "[0]"), ([0, 3], 4, "[1, 2]")])
def test_balanced_class_weights_missing_class(labels, k, missing):
    """A class without examples is a ValueError naming it."""
    with pytest.raises(ValueError, match=re.escape(missing)):
        balanced_class_weights(torch.tensor(labels), k)


@pytest.mark.parametrize("labels", [[0, 1, 2], [0, 0, 1, 2, 3]])
def test_balanced_class_weights_label_out_of_range(labels):
    """A label >= n_classes is a ValueError, not a weight vector longer than n_classes."""
    with pytest.raises(ValueError):
        balanced_class_weights(torch.tensor(labels), 2)


# --------------------------------------------------------------------------- fit


def test_fit_learns(toy):
    """On a learnable pattern the training loss falls and the accuracy rises."""
    result = fit(logreg(), toy(), toy(seed=1, split="val"), epochs=10, batch_size=16, lr=0.05, seed=0)
    h = result.history
    assert h["train_loss"].iloc[-1] < 0.5 * h["train_loss"].iloc[0]
    assert h["train_acc"].iloc[-1] >= 0.95
    assert h["val_acc"].iloc[-1] >= 0.95
    assert not result.model.training


def test_history_with_validation(toy):
    """One row per epoch with training, validation and timing columns."""
    result = fit(logreg(), toy(), toy(seed=1), epochs=4, batch_size=16, seed=0)
    h = result.history
    assert isinstance(h, pd.DataFrame)
    assert set(h.columns) == HISTORY_WITH_VAL
    assert h["epoch"].tolist() == [1, 2, 3, 4]
    assert (h["seconds"] > 0).all()
    assert h[["train_acc", "val_acc", "val_auc"]].stack().between(0, 1).all()
    assert 1 <= result.best_epoch <= 4


def test_history_without_validation(toy):
    """Without a validation split: no val_* columns and the last epoch is kept."""
    result = fit(logreg(), toy(), None, epochs=3, batch_size=16, seed=0, patience=1)
    assert set(result.history.columns) == {"epoch", "train_loss", "train_acc", "lr", "seconds"}
    assert len(result.history) == 3
    assert result.best_epoch == 3


def test_fit_is_deterministic(toy):
    """Same seed: identical history (but timing) and identical weights; another seed differs."""
    runs = [fit(mlp(dropout=0.3), toy(), toy(seed=1), epochs=3, batch_size=8, seed=5) for _ in range(2)]
    other = fit(mlp(dropout=0.3), toy(), toy(seed=1), epochs=3, batch_size=8, seed=6)
    h0, h1 = (r.history.drop(columns="seconds") for r in runs)
    pd.testing.assert_frame_equal(h0, h1)
    s0, s1 = runs[0].model.state_dict(), runs[1].model.state_dict()
    assert s0.keys() == s1.keys()
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert runs[0].best_epoch == runs[1].best_epoch
    assert not other.history["train_loss"].equals(runs[0].history["train_loss"])


def test_seed_defaults_to_env(toy, monkeypatch):
    """seed=None takes DLMI_SEED."""
    monkeypatch.setenv("DLMI_SEED", "5")
    a = fit(mlp(dropout=0.3), toy(), None, epochs=2, batch_size=8)
    b = fit(mlp(dropout=0.3), toy(), None, epochs=2, batch_size=8, seed=5)
    pd.testing.assert_series_equal(a.history["train_loss"], b.history["train_loss"])


@pytest.mark.parametrize("monitor", ["val_loss", "val_auc"])
def test_early_stopping_when_nothing_changes(toy, monitor):
    """With lr=0 the validation metric never improves after epoch 1: stop after `patience` more epochs."""
    result = fit(logreg(), toy(), toy(seed=1), epochs=10, batch_size=16, lr=0.0, monitor=monitor, patience=2, seed=0)
    h = result.history
    assert h[monitor].nunique() == 1, "precondition: nothing changes with lr=0"
    assert len(h) == 3
    assert result.best_epoch == 1


def test_early_stopping_counts_from_last_improvement(toy):
    """A validation split that disagrees with training gets worse every epoch: stop at 1 + patience."""
    val = toy(seed=1, flip=True, split="val")
    result = fit(logreg(), toy(), val, epochs=20, batch_size=16, lr=0.05, monitor="val_loss", patience=3, seed=0)
    h = result.history
    assert h["val_loss"].is_monotonic_increasing, "precondition: validation loss only grows"
    assert len(h) == 4 < 20
    assert result.best_epoch == 1


def test_no_patience_runs_all_epochs(toy):
    """patience=None never stops early."""
    val = toy(seed=1, flip=True, split="val")
    result = fit(logreg(), toy(), val, epochs=6, batch_size=16, lr=0.05, monitor="val_loss", seed=0)
    assert len(result.history) == 6


@pytest.mark.parametrize("monitor", ["val_loss", "val_acc"])
def test_best_weights_are_restored(toy, monitor):
    """The returned model scores exactly the best epoch's validation value, not the last epoch's."""
    train, val = toy(), toy(seed=1, flip=True, split="val")
    result = fit(mlp(), train, val, epochs=6, batch_size=16, lr=0.003, monitor=monitor, seed=0)
    h = result.history
    values = h[monitor].to_numpy()
    best = int(values.argmin() if monitor == "val_loss" else values.argmax())  # first best, as fit keeps it
    assert result.best_epoch == best + 1
    assert result.best_epoch < len(h), "precondition: the last epoch is not the best"
    assert values[-1] != values[best]
    again = evaluate(result.model, val)[monitor.removeprefix("val_")]
    assert again == pytest.approx(values[best], rel=1e-6, abs=1e-9)
    assert again != pytest.approx(values[-1], rel=1e-6, abs=1e-9)


def test_checkpoint(toy, tmp_path):
    """The best weights are saved (folder created) and load with weights_only=True."""
    path = tmp_path / "models" / "best.pt"
    val = toy(seed=1, flip=True, split="val")
    result = fit(mlp(), toy(), val, epochs=4, batch_size=16, lr=0.05, monitor="val_loss", seed=0, checkpoint=path)
    assert path.is_file()
    state = torch.load(path, weights_only=True)
    model_state = result.model.state_dict()
    assert state.keys() == model_state.keys()
    assert all(torch.equal(state[k], model_state[k]) for k in state)
    fresh = mlp(seed=9)
    fresh.load_state_dict(state)
    assert evaluate(fresh, val)["loss"] == pytest.approx(result.history["val_loss"].iloc[result.best_epoch - 1], rel=1e-6)


def test_class_weights_change_the_training_loss(toy):
    """A class-weighted loss gives a different training loss from the same start."""
    train = toy()
    plain = fit(logreg(), train, None, epochs=1, batch_size=64, seed=0)
    weighted = fit(logreg(), train, None, epochs=1, batch_size=64, seed=0, loss_fn=nn.CrossEntropyLoss(weight=torch.tensor([1.0, 10.0])))
    assert weighted.history["train_loss"].iloc[0] != pytest.approx(plain.history["train_loss"].iloc[0], rel=1e-3)


def test_scheduler_is_stepped_per_epoch(toy):
    """The lr column shows the learning rate of each epoch under the scheduler."""
    sched = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    result = fit(logreg(), toy(), None, epochs=3, batch_size=16, lr=0.08, scheduler=sched, seed=0)
    assert result.history["lr"].tolist() == pytest.approx([0.08, 0.04, 0.02])


def test_augment_applies_to_training_batches_only(toy):
    """augment sees every training image once per epoch, as float [0, 1], and never validation images."""
    seen = []

    def augment(x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        seen.append(len(x))
        return x

    fit(logreg(), toy(n=40), toy(n=24, seed=1), epochs=2, batch_size=16, augment=augment, seed=0)
    assert seen == [16, 16, 8] * 2


@pytest.mark.parametrize("with_val", [False, True], ids=["no-val", "with-val"])
def test_divergence_is_a_floating_point_error(toy, with_val):
    """A learning rate that blows the loss up is a FloatingPointError that says to lower it.

    With one batch per epoch the weights become NaN in the last step of an epoch, so with
    a validation split the NaN is first seen by the validation pass: fit must still report
    it as divergence (FloatingPointError), not as a metrics ValueError.
    """
    val = toy(seed=1) if with_val else None
    with pytest.raises(FloatingPointError, match="learning rate") as err:
        fit(mlp(hidden=(32, 32, 32)), toy(), val, epochs=5, batch_size=64, optimizer="sgd", lr=1e6, seed=0)
    assert "lr=1000000.0" in str(err.value)


def test_divergence_within_an_epoch(toy):
    """Divergence inside an epoch (several batches) is caught by the training-loss check."""
    with pytest.raises(FloatingPointError, match=r"lower the learning rate \(lr=1000000.0\)"):
        fit(mlp(hidden=(32, 32, 32)), toy(), toy(seed=1), epochs=5, batch_size=16, optimizer="sgd", lr=1e6, seed=0)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_fit_amp_setting_on_cpu(toy, amp):
    """amp=False (and amp=True, bfloat16 autocast) train on the CPU and give finite results."""
    result = fit(logreg(), toy(), toy(seed=1), epochs=2, batch_size=16, lr=0.05, seed=0, amp=amp)
    h = result.history
    assert len(h) == 2
    assert h[["train_loss", "val_loss"]].notna().all().all()
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_fit_amp_false_matches_default_on_cpu(toy):
    """On the CPU the default is no mixed precision: amp=False gives the same run as amp=None."""
    a = fit(logreg(), toy(), toy(seed=1), epochs=2, batch_size=16, seed=0, amp=False)
    b = fit(logreg(), toy(), toy(seed=1), epochs=2, batch_size=16, seed=0)
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))


class CountingModel(nn.Module):
    """A logistic regression that counts its forward calls."""

    def __init__(self):
        super().__init__()
        self.inner = logreg()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Count, then delegate."""
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("monitor", ["val_recall", "auc", "train_loss", "val_AUC", ""])
def test_unknown_monitor_fails_before_training(toy, monitor):
    """An unknown monitor is a ValueError listing the choices, raised before any training step."""
    model = CountingModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="val_balanced_acc"):
        fit(model, toy(), toy(seed=1), epochs=2, batch_size=16, lr=0.05, monitor=monitor, seed=0)
    assert model.calls == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("monitor", ["val_loss", "val_acc", "val_balanced_acc", "val_macro_f1", "val_auc"])
def test_every_known_monitor_is_accepted(toy, monitor):
    """Every documented monitor works and picks a best epoch within the run."""
    result = fit(logreg(), toy(n=32), toy(n=32, seed=1), epochs=2, batch_size=16, monitor=monitor, seed=0)
    assert 1 <= result.best_epoch <= 2


def test_monitor_is_not_checked_without_validation(toy):
    """Without a validation split the monitor is unused, so any value is accepted."""
    result = fit(logreg(), toy(), None, epochs=1, batch_size=16, monitor="anything", seed=0)
    assert len(result.history) == 1


# --------------------------------------------------------------------------- batch_loss (other training objectives)


def test_batch_loss_cross_entropy_reproduces_the_default(toy):
    """A batch_loss that computes the default loss trains exactly like fit without it; no accuracy is logged."""
    plain = fit(mlp(dropout=0.3), toy(), None, epochs=3, batch_size=8, seed=2)
    custom = fit(mlp(dropout=0.3), toy(), None, epochs=3, batch_size=8, seed=2,
                 batch_loss=lambda model, x, y: F.cross_entropy(model(x), y))
    pd.testing.assert_series_equal(plain.history["train_loss"], custom.history["train_loss"])
    pd.testing.assert_series_equal(plain.history["lr"], custom.history["lr"])
    sp, sc = plain.model.state_dict(), custom.model.state_dict()
    assert all(torch.equal(sp[k], sc[k]) for k in sp)
    assert plain.history["train_acc"].notna().all() and custom.history["train_acc"].isna().all()
    assert custom.best_epoch == 3


def test_batch_loss_sees_augmented_batches_and_labels(toy):
    """batch_loss gets the model, the augmented float batch and its labels, every batch."""
    seen = []

    def loss(model, x, y):
        assert x.dtype == torch.float32 and torch.all(x == 0.5), "the augmented batch"
        seen.append((len(x), len(y)))
        return model(x).pow(2).mean()

    fit(logreg(), toy(n=40), None, epochs=1, batch_size=16, augment=lambda x: torch.full_like(x, 0.5), batch_loss=loss, seed=0)
    assert seen == [(16, 16), (16, 16), (8, 8)]


def test_batch_loss_without_labels_lowers_its_objective(toy):
    """An unsupervised objective (shrink the outputs) is minimised through fit."""
    result = fit(logreg(), toy(), None, epochs=5, batch_size=16, lr=0.05, seed=0,
                 batch_loss=lambda model, x, y: model(x).pow(2).mean())
    assert result.history["train_loss"].iloc[-1] < 0.5 * result.history["train_loss"].iloc[0]


def test_batch_loss_excludes_loss_fn(toy):
    """batch_loss replaces loss_fn(model(x), y): passing both is an error."""
    with pytest.raises(ValueError, match="batch_loss replaces"):
        fit(logreg(), toy(), None, epochs=1, batch_loss=lambda m, x, y: m(x).sum(), loss_fn=nn.CrossEntropyLoss())


def test_batch_loss_with_val_needs_an_evaluator(toy):
    """A batch_loss has no classification loss to score a validation split with: an evaluator must."""
    with pytest.raises(ValueError, match="needs an evaluator"):
        fit(logreg(), toy(), toy(seed=1), epochs=1, batch_loss=lambda m, x, y: m(x).sum())


# --------------------------------------------------------------------------- evaluator (other validation metrics)


def test_evaluator_columns_and_monitor(toy):
    """Every key the evaluator returns becomes a val_ column, and the monitor picks the best epoch by it."""
    calls = []

    def evaluator(model, data):
        calls.append(len(data))
        return {"loss": 1.0, "score": [0.2, 0.9, 0.5][len(calls) - 1]}

    val = toy(seed=1)
    result = fit(logreg(), toy(), val, epochs=3, batch_size=16, seed=0, evaluator=evaluator, monitor="val_score",
                 batch_loss=lambda m, x, y: F.cross_entropy(m(x), y))
    assert calls == [len(val)] * 3
    assert list(result.history["val_score"]) == [0.2, 0.9, 0.5]
    assert result.best_epoch == 2


def test_evaluator_without_the_monitored_key_fails(toy):
    """A monitor the evaluator does not return is a ValueError naming what it does return."""
    with pytest.raises(ValueError, match=r"not among the evaluator's outputs \['val_loss'\]"):
        fit(logreg(), toy(), toy(seed=1), epochs=1, evaluator=lambda m, d: {"loss": 0.0}, monitor="val_dice")


def test_dense_targets_train_without_accuracy():
    """Targets that are not class indices (e.g. masks) train with loss_fn; training accuracy is then NaN."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g)
    masks = (images > 128).float()
    data = ImageSet(images, masks, ("foreground",), "segmentation", "toy", "train", "toy masks")
    result = fit(nn.Conv2d(1, 1, 1), data, None, epochs=20, batch_size=8, lr=0.1, loss_fn=nn.BCEWithLogitsLoss(), seed=0)
    assert result.history["train_acc"].isna().all()
    assert result.history["train_loss"].iloc[-1] < 0.5 * result.history["train_loss"].iloc[0]
