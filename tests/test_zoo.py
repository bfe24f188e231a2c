"""Tests of dlmi.zoo: training recipes, their cache keys and the train-once cache, on tiny synthetic sets."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from dlmi import zoo
from dlmi.models import SmallCNN, SmallResNet
from dlmi.train import FitResult
from dlmi.zoo import Recipe, book_recipe, cache_key, train_recipe

TINY = Recipe(model="SmallCNN", model_kwargs={"widths": (4, 8)}, epochs=2, batch_size=16)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Identical state dicts (parameters and buffers)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# --------------------------------------------------------------------------- Recipe


@pytest.mark.parametrize(
    ("recipe", "cls"),
    [(TINY, SmallCNN), (Recipe(model="SmallResNet", model_kwargs={"widths": (4, 8), "blocks": (1, 1)}), SmallResNet)],
    ids=["cnn", "resnet"],
)
def test_build_model_is_seeded(recipe, cls):
    """The same recipe builds identical models; another seed gives other weights."""
    a, b = recipe.build_model(1, 3), recipe.build_model(1, 3)
    other = replace(recipe, seed=recipe.seed + 1).build_model(1, 3)
    assert type(a) is cls
    assert same_weights(a, b)
    assert not same_weights(a, other)
    assert a(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_build_model_passes_channels_and_kwargs():
    """Channels, classes and model_kwargs reach the model."""
    model = TINY.build_model(3, 5)
    assert model.features[0][0].in_channels == 3
    assert model.features[-1][0].out_channels == 8
    assert model.head[-1].out_features == 5


@pytest.mark.parametrize("name", ["ResNet18", "smallcnn", ""])
def test_build_model_unknown_name(name):
    """An unknown model name is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match="SmallCNN"):
        Recipe(model=name).build_model(1, 2)


def test_recipe_fit(toy):
    """Recipe.fit trains from scratch: a history with one row per epoch and a model in eval mode."""
    result = TINY.fit(toy(n=32), toy(n=32, seed=1, split="val"))
    assert isinstance(result, FitResult)
    assert result.history["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_auc", "lr"} <= set(result.history.columns)
    assert 1 <= result.best_epoch <= 2
    assert isinstance(result.model, SmallCNN) and not result.model.training


def test_recipe_fit_with_every_option(toy):
    """Schedule, warm-up, augmentation, class weighting and early stopping all pass through to fit."""
    recipe = replace(
        TINY,
        optimizer="adamw",
        weight_decay=1e-4,
        epochs=3,
        schedule="cosine",
        warmup_epochs=1,
        augment={"hflip": 0.5, "degrees": 5.0},
        class_weighting=True,
        monitor="val_loss",
        patience=5,
    )
    result = recipe.fit(toy(n=32), toy(n=32, seed=1, split="val"))
    assert len(result.history) == 3
    assert result.history["lr"].iloc[0] == pytest.approx(recipe.lr * 0.1), "warm-up starts at a tenth"


def test_recipe_fit_is_deterministic(toy):
    """Two fits of the same recipe give the same history and weights."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    a, b = TINY.fit(train, val), TINY.fit(train, val)
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))
    assert same_weights(a.model, b.model)


# --------------------------------------------------------------------------- cache key


def test_cache_key_is_stable(toy):
    """The same recipe and data give the same short hex key, also for equal copies of both."""
    key = cache_key(TINY, toy(), toy(seed=1, split="val"))
    again = cache_key(replace(TINY), toy(), toy(seed=1, split="val"))
    assert key == again
    assert len(key) == 16 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"lr": 2e-3},
        {"epochs": 3},
        {"seed": 1},
        {"model": "SmallResNet"},
        {"model_kwargs": {"widths": (4, 16)}},
        {"optimizer": "sgd"},
        {"batch_size": 8},
        {"schedule": "cosine"},
        {"warmup_epochs": 1},
        {"augment": {}},
        {"class_weighting": True},
        {"monitor": "val_loss"},
        {"patience": 3},
        {"init": "pretrained-0123"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_cache_key_changes_with_the_recipe(toy, change):
    """Changing any recipe field changes the key."""
    train, val = toy(), toy(seed=1, split="val")
    assert cache_key(replace(TINY, **change), train, val) != cache_key(TINY, train, val)


def shuffled_images(data):
    """The same pixels and labels, but images moved to other labels (the pixel sum is unchanged)."""
    return replace(data, images=data.images.roll(1, dims=0))


@pytest.mark.parametrize(
    ("which", "make"),
    [
        ("train", lambda toy: toy(seed=5)),
        ("train", lambda toy: toy(n=48)),
        ("train", lambda toy: toy().subset(32)),
        ("train", lambda toy: replace(toy(), note="another copy")),
        ("train", lambda toy: replace(toy(), name="other")),
        ("val", lambda toy: toy(seed=2, split="val")),
        ("val", lambda toy: toy(seed=1, split="test")),
        ("train", lambda toy: toy(flip=True)),
        ("train", lambda toy: shuffled_images(toy())),
    ],
    ids=["train-noise", "train-size", "train-subset", "note", "name", "val-noise", "split", "labels-flipped", "images-shuffled"],
)
def test_cache_key_changes_with_the_data(toy, which, make):
    """Other training or validation data (images, labels, size, split, provenance) change the key."""
    train, val = toy(), toy(seed=1, split="val")
    base = cache_key(TINY, train, val)
    changed = cache_key(TINY, make(toy), val) if which == "train" else cache_key(TINY, train, make(toy))
    assert changed != base


def test_cache_key_changes_with_the_profile(toy, monkeypatch):
    """The profile is part of the key (quick and full runs are not interchangeable)."""
    train, val = toy(), toy(seed=1, split="val")
    monkeypatch.setenv("DLMI_PROFILE", "quick")
    quick = cache_key(TINY, train, val)
    monkeypatch.setenv("DLMI_PROFILE", "full")
    assert cache_key(TINY, train, val) != quick


# --------------------------------------------------------------------------- train_recipe


def test_train_recipe_trains_once_then_loads(toy, isolated_env, monkeypatch):
    """The first call trains and stores; the second loads the same weights and history without training."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    first = train_recipe("tiny", TINY, train, val)
    stored = list((isolated_env / "zoo").glob("*.pt"))
    assert [p.name for p in stored] == [f"tiny-{cache_key(TINY, train, val)}.pt"]
    assert not list((isolated_env / "zoo").glob("*.part")), "no half-written file is left behind"

    def no_training(self, *args, **kwargs):
        raise AssertionError("train_recipe retrained a cached recipe")

    monkeypatch.setattr(Recipe, "fit", no_training)
    second = train_recipe("tiny", TINY, train, val)
    assert same_weights(first.model, second.model)
    pd.testing.assert_frame_equal(first.history, second.history)
    assert second.best_epoch == first.best_epoch
    assert isinstance(second.model, SmallCNN) and not second.model.training


def test_train_recipe_retrains_for_a_new_key(toy, monkeypatch):
    """A changed recipe is not served from the cache of another."""
    calls = []
    original = Recipe.fit

    def counting(self, train, val):
        calls.append(self)
        return original(self, train, val)

    monkeypatch.setattr(Recipe, "fit", counting)
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    train_recipe("tiny", TINY, train, val)
    train_recipe("tiny", TINY, train, val)
    train_recipe("tiny", replace(TINY, seed=3), train, val)
    assert [r.seed for r in calls] == [0, 3]


def test_train_recipe_loaded_model_predicts_like_the_trained_one(toy):
    """The cached model gives the same outputs as the freshly trained one."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    first = train_recipe("tiny", TINY, train, val)
    second = train_recipe("tiny", TINY, train, val)
    x = val.images.float() / 255
    with torch.no_grad():
        torch.testing.assert_close(second.model(x), first.model(x))


# --------------------------------------------------------------------------- book recipes


@pytest.mark.parametrize(("profile", "epochs", "widths"), [("quick", 8, (16, 32, 64)), ("full", 60, (64, 128, 256))])
def test_book_recipe_follows_the_profile(monkeypatch, profile, epochs, widths):
    """"final" is sized by DLMI_PROFILE: few epochs and narrow layers when quick."""
    monkeypatch.setenv("DLMI_PROFILE", profile)
    recipe = book_recipe("final")
    assert recipe.epochs == epochs
    assert tuple(recipe.model_kwargs["widths"]) == widths
    assert recipe.model in zoo.MODELS
    assert recipe.augment is not None and recipe.augment["hflip"] == 0.0, "no left-right flips of chest X-rays"


def test_book_recipe_profiles_differ(monkeypatch):
    """The quick and full versions of a recipe are different recipes."""
    monkeypatch.setenv("DLMI_PROFILE", "quick")
    quick = book_recipe("final")
    monkeypatch.setenv("DLMI_PROFILE", "full")
    full = book_recipe("final")
    assert quick != full and quick.epochs < full.epochs


def test_book_recipe_builds(monkeypatch):
    """The quick "final" recipe builds a model that maps 28 px images to logits."""
    monkeypatch.setenv("DLMI_PROFILE", "quick")
    model = book_recipe("final").build_model(1, 2).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 2)


def test_book_recipe_overrides(monkeypatch):
    """Keyword overrides replace fields and leave the rest as in the named recipe."""
    monkeypatch.setenv("DLMI_PROFILE", "quick")
    base = book_recipe("final")
    changed = book_recipe("final", epochs=3, seed=7)
    assert (changed.epochs, changed.seed) == (3, 7)
    assert replace(changed, epochs=base.epochs, seed=base.seed) == base


def test_book_recipe_unknown_override():
    """An override that is not a Recipe field is an error."""
    with pytest.raises(TypeError):
        book_recipe("final", epoch=3)


@pytest.mark.parametrize("name", ["nope", "Final", ""])
def test_book_recipe_unknown_name(name):
    """An unknown recipe name is a ValueError listing the known ones."""
    with pytest.raises(ValueError, match="final"):
        book_recipe(name)


# --------------------------------------------------------------------------- entries, init and load_weights


def test_entry_name_is_the_cache_file(toy, isolated_env):
    """entry_name is the stem of the file train_recipe writes, also without a validation split."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    train_recipe("tiny", TINY, train, val)
    assert (isolated_env / "zoo" / f"{zoo.entry_name('tiny', TINY, train, val)}.pt").is_file()
    assert zoo.entry_name("tiny", TINY, train) != zoo.entry_name("tiny", TINY, train, val)


def test_recipe_init_starts_from_a_cached_entry(toy):
    """A recipe with init copies the entry's weights before training (lr 0: they stay), the rest fresh."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    source = train_recipe("tiny", TINY, train, val).model
    entry = zoo.entry_name("tiny", TINY, train, val)
    tuned = replace(TINY, init=entry, lr=0.0, epochs=1, seed=7).fit(train, val).model
    torch.testing.assert_close(tuned.features[0][0].weight, source.features[0][0].weight)
    torch.testing.assert_close(tuned.head[-1].weight, source.head[-1].weight)  # same shapes: the head too
    fresh = replace(TINY, seed=7).build_model(1, 2)
    assert not torch.equal(fresh.features[0][0].weight, source.features[0][0].weight)


def test_recipe_trainable_freezes_the_rest(toy):
    """trainable=("head",): only the head changes in training; the convolutions keep their initial values."""
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    initial = TINY.build_model(1, 2)
    tuned = replace(TINY, trainable=("head",), epochs=2, lr=0.05).fit(train, val).model
    torch.testing.assert_close(tuned.features[0][0].weight, initial.features[0][0].weight)
    assert not torch.equal(tuned.head[-1].weight, initial.head[-1].weight)
    assert [n for n, p in tuned.named_parameters() if p.requires_grad] == ["head.1.weight", "head.1.bias"]


def test_load_weights_errors(toy):
    train, val = toy(n=32), toy(n=32, seed=1, split="val")
    with pytest.raises(FileNotFoundError, match="train it with dlmi.zoo.train_recipe"):
        zoo.load_weights(TINY.build_model(1, 2), "nothing-here")
    train_recipe("tiny", TINY, train, val)
    other = Recipe(model="SmallResNet", model_kwargs={"widths": (3,), "blocks": (1,)}).build_model(1, 3)
    with pytest.raises(ValueError, match="no tensor whose name and shape match"):
        zoo.load_weights(other, zoo.entry_name("tiny", TINY, train, val))
