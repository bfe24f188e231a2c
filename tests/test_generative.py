"""Tests of dlmi.generative: shapes, the ELBO, the noise schedule, samplers, GAN steps and sample judges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlmi import generative as g
from dlmi import zoo
from dlmi.data import ImageSet
from dlmi.train import fit


def tiny_set(n: int = 32, size: int = 8, channels: int = 1, n_classes: int = 2, seed: int = 0) -> ImageSet:
    """Random uint8 images with class-dependent brightness (a learnable structure)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    base = (labels.float() * 120 + 60)[:, None, None, None]
    images = (base + 30 * torch.randn(n, channels, size, size, generator=gen)).clamp(0, 255).to(torch.uint8)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(n_classes)), "multi-class", "tiny", "train", "synthetic")


# --------------------------------------------------------------------------- autoencoder and VAE


def test_autoencoder_and_vae_shapes():
    x = torch.rand(5, 1, 8, 8)
    ae = g.AutoEncoder(1, latent_dim=3, widths=(4, 8), image_size=8)
    assert ae.encode(x).shape == (5, 3) and ae(x).shape == (5, 1, 8, 8)
    vae = g.VAE(1, latent_dim=3, widths=(4, 8), image_size=8, n_classes=2)
    logits, mu, logvar = vae(x, torch.tensor([0, 1, 0, 1, 1]))
    assert logits.shape == (5, 1, 8, 8) and mu.shape == logvar.shape == (5, 3)
    with pytest.raises(ValueError, match="class-conditional"):
        vae(x)
    with pytest.raises(ValueError, match="divisible by 4"):
        g.VAE(1, image_size=10)


def test_elbo_terms():
    """KL is 0 exactly for the standard normal, matches the closed form otherwise; recon is BCE summed per image."""
    x = torch.rand(4, 1, 3, 3)
    logits = torch.randn(4, 1, 3, 3)
    zero = g.elbo_terms(logits, x, torch.zeros(4, 2), torch.zeros(4, 2))
    assert zero["kl"].item() == pytest.approx(0.0, abs=1e-7)
    mu, logvar = torch.full((4, 2), 1.0), torch.full((4, 2), math.log(4.0))
    kl = g.elbo_terms(logits, x, mu, logvar)["kl"].item()
    assert kl == pytest.approx(2 * 0.5 * (1 + 4 - math.log(4) - 1), rel=1e-5)  # two latent dims per image
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3)).mean()
    assert zero["recon"].item() == pytest.approx(bce.item(), rel=1e-5)
    with pytest.raises(ValueError):
        g.elbo_terms(logits, x[:, :, :2], mu, logvar)


def test_vae_loss_includes_beta_weighted_kl():
    torch.manual_seed(0)
    vae = g.VAE(1, 2, (4, 8), 8).eval()  # eval: decode the mean, no sampling noise
    x = torch.rand(6, 1, 8, 8)
    logits, mu, logvar = vae(x)
    terms = g.elbo_terms(logits, x, mu, logvar)
    assert g.ReconstructionLoss(0.0)(vae, x, None).item() == pytest.approx(terms["recon"].item(), rel=1e-5)
    expected = terms["recon"].item() + 2 * terms["kl"].item()
    assert g.ReconstructionLoss(2.0)(vae, x, None).item() == pytest.approx(expected, rel=1e-5)


def test_reconstruction_improves_on_a_tiny_set():
    data = tiny_set(32)
    model = g.AutoEncoder(1, 4, (4, 8), 8)
    loss = g.ReconstructionLoss()
    x = data.images.float() / 255
    before = loss(model.eval(), x).item()
    result = fit(model, data, None, epochs=15, batch_size=16, lr=1e-2, batch_loss=loss, seed=0)
    after = loss(result.model.eval(), x).item()
    assert after < before
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    out = g.reconstruct(result.model, data.images)
    assert out.dtype == torch.uint8 and out.shape == data.images.shape


def test_interpolation_and_traversal_shapes():
    vae = g.VAE(1, 3, (4, 8), 8, n_classes=2)
    a, b = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    path = g.interpolate(vae, a, b, steps=5, label=1)
    assert path.shape == (5, 1, 8, 8) and path.dtype == torch.uint8
    grid = g.latent_traversal(vae, dims=[0, 2], values=[-2, 0, 2], label=0)
    assert grid.shape == (6, 1, 8, 8)
    # the middle column (value 0) of both rows decodes the same point: the origin
    assert torch.equal(grid[1], grid[4])


# --------------------------------------------------------------------------- GAN


def test_gan_step_changes_both_networks():
    data = tiny_set(16)
    model = g.DCGAN(1, latent_dim=4, width=4, image_size=8)
    gen0 = [p.detach().clone() for p in model.generator.parameters()]
    disc0 = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    loss = g.GANLoss(lr=1e-2)
    fit(model, data, None, epochs=1, batch_size=8, lr=1e-2, batch_loss=loss, seed=0)
    assert len(loss.d_losses) == 2
    assert any(not torch.equal(a, b) for a, b in zip(gen0, model.generator.parameters()))
    assert any(not torch.equal(disc0[k], v) for k, v in model.discriminator.state_dict().items())
    assert all(p.requires_grad for p in model.discriminator.parameters())


def test_gan_generator_loss_leaves_discriminator_gradients_empty():
    model = g.DCGAN(1, 4, 4, 8)
    loss = g.GANLoss()(model, torch.rand(4, 1, 8, 8))
    loss.backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())


# --------------------------------------------------------------------------- diffusion


def test_noise_schedule_closed_form():
    """q(x_t | x_0) has mean sqrt(abar_t) x_0 and variance 1 - abar_t; abar decreases to near 0."""
    sched = g.NoiseSchedule(100)
    ab = sched.alpha_bars
    assert (ab[1:] < ab[:-1]).all() and ab[0] > 0.99 and ab[-1] < 1e-3
    assert torch.allclose(ab, torch.cumprod(1 - sched.betas, 0))
    assert sched.betas[0].item() == pytest.approx(1e-3) and sched.betas[-1].item() == pytest.approx(0.2)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7)
    for t in (0, 30, 99):
        xt = sched.q_sample(x0, torch.full((20000,), t), torch.randn(20000, 1, generator=gen))
        assert xt.mean().item() == pytest.approx(0.7 * math.sqrt(ab[t]), abs=0.02)
        assert xt.var().item() == pytest.approx(1 - ab[t].item(), abs=0.02)
    with pytest.raises(ValueError):
        g.NoiseSchedule(1)


def test_denoiser_and_diffusion_loss():
    model = g.Denoiser(1, steps=10, widths=(4, 8), n_classes=2)
    x = torch.rand(3, 1, 8, 8)
    assert model(x, torch.tensor([0, 5, 9]), torch.tensor([0, 1, 1])).shape == x.shape
    loss = g.DiffusionLoss(g.NoiseSchedule(10))(model, x, torch.tensor([0, 1, 1]))
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_ancestral_sampler_shapes_and_determinism():
    torch.manual_seed(0)
    model = g.Denoiser(1, steps=5, widths=(4, 8), n_classes=2)
    sched = g.NoiseSchedule(5)
    labels = torch.tensor([0, 1, 0])
    a, kept = g.ddpm_sample(model, sched, 3, (1, 8, 8), labels, seed=3, keep=(4, 0))
    b, _ = g.ddpm_sample(model, sched, 3, (1, 8, 8), labels, seed=3)
    c, _ = g.ddpm_sample(model, sched, 3, (1, 8, 8), labels, seed=4)
    assert a.shape == (3, 1, 8, 8) and a.dtype == torch.uint8 and set(kept) == {4, 0}
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(kept[0], a)
    with pytest.raises(ValueError, match="steps"):
        g.ddpm_sample(model, g.NoiseSchedule(6), 1, (1, 8, 8), labels[:1])


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("kind", ["autoencoder", "vae", "gan", "ddpm"])
def test_recipe_trains_caches_and_samples(kind):
    data = tiny_set(16)
    widths = (4, 8) if kind != "gan" else (4,)
    recipe = g.GenerativeRecipe(kind=kind, latent_dim=3, widths=widths, conditional=kind in ("vae", "ddpm"), steps=4,
                                image_size=8, epochs=1, batch_size=8)
    first = zoo.train_recipe(f"tiny-{kind}", recipe, data)
    again = zoo.train_recipe(f"tiny-{kind}", recipe, data)  # from the cache
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    labels = torch.tensor([0, 1, 1, 0])
    s1 = g.sample(recipe, again.model, 4, labels, seed=1)
    s2 = g.sample(recipe, again.model, 4, labels, seed=1)
    assert s1.shape == (4, 1, 8, 8) and s1.dtype == torch.uint8 and torch.equal(s1, s2)
    with pytest.raises(ValueError, match="validation"):
        recipe.fit(data, data)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        g.GenerativeRecipe(kind="flow").build_model(1, 2)


# --------------------------------------------------------------------------- judging samples


def test_nearest_neighbour_finds_an_exact_copy():
    ref = torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8)
    queries = torch.stack([ref[7], ref[3], torch.full((1, 6, 6), 128, dtype=torch.uint8)])
    dist, idx = g.nearest_neighbours(queries, ref, batch_size=2)
    assert idx[:2].tolist() == [7, 3] and dist[:2] == pytest.approx([0.0, 0.0], abs=1e-6) and dist[2] > 0
    # RMS in [0, 1] units: black vs white is 1
    d, _ = g.nearest_neighbours(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))
    assert d[0] == pytest.approx(1.0)
    d_self, i_self = g.nearest_neighbours(ref, ref, exclude_self=True)
    assert (i_self != np.arange(20)).all() and (d_self > 0).all()
    with pytest.raises(ValueError):
        g.nearest_neighbours(queries, torch.zeros(2, 1, 5, 5, dtype=torch.uint8))


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert g.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shifted = g.frechet_distance(a, a + 1.0)
    assert shifted == pytest.approx(4.0, rel=1e-6)  # ||mu shift||^2, covariances identical
    wider = g.frechet_distance(a, 2 * a)
    assert wider > 0.5
    # two draws from one distribution are close; a different distribution is far
    b = rng.normal(size=(500, 4))
    assert g.frechet_distance(a, b) < 0.2 < g.frechet_distance(a, b + 0.5)
    with pytest.raises(ValueError):
        g.frechet_distance(a, a[:, :3])


# --------------------------------------------------------------------------- image-to-image synthesis


def fake_mri(shape=(20, 24, 6)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    brain = np.zeros(shape, np.float32)
    brain[3:-3, 4:-4] = 1
    t1 = brain * rng.uniform(50, 150, shape).astype(np.float32)
    gold = np.zeros(shape, np.uint8)
    gold[8:10, 10:12] = 1
    flair = brain * (200 - t1) + 300.0 * gold
    return {"T1": t1, "FLAIR": flair.astype(np.float32), "GOLD": gold, "spacing": np.ones(3)}


def test_synthesis_set_shapes_and_baseline():
    mri = fake_mri()
    data = g.synthesis_set(mri, [1, 2, 3], factor=2, multiple=8)
    assert data.images.shape == (3, 2, 16, 16) and data.labels.shape == (3, 1, 16, 16)
    assert data.images.dtype == data.labels.dtype == torch.uint8 and data.classes == ("FLAIR",)
    assert set(torch.unique(data.images[:, 1]).tolist()) <= {0, 255}
    base = g.linear_fit_baseline(data, data.images)
    assert base.shape == data.labels.shape and base.dtype == torch.uint8
    assert (base[data.images.amax(1, keepdim=True) == 0] == 0).all()  # background stays black
    with pytest.raises(ValueError, match="T2"):
        g.synthesis_set(mri, [1], inputs=("T2",))


def test_synthesis_scores():
    t = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    same = g.synthesis_scores(t, t)
    assert same["ssim"] == pytest.approx(1.0) and same["mae"] == 0 and same["psnr"] > 50
    noisy = (t.float() + 40 * torch.randn(t.shape)).clamp(0, 255).to(torch.uint8)
    worse = g.synthesis_scores(noisy, t)
    assert worse["ssim"] < 1 and worse["psnr"] < same["psnr"] and worse["mae"] > 0


def test_synthesis_recipe_trains():
    data = g.synthesis_set(fake_mri(), [1, 2, 3, 4], factor=2, multiple=4)
    recipe = g.SynthesisRecipe(widths=(4, 8, 16), epochs=3, batch_size=2, lr=1e-2)
    result = zoo.train_recipe("tiny-synthesis", recipe, data)
    pred = g.predict_synthesis(result.model, data.images)
    assert pred.shape == data.labels.shape and pred.dtype == torch.uint8
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]


def test_synthesis_set_orientation():
    """Rows run from anterior (high y) to posterior, columns along x: anterior is at the top."""
    mri = fake_mri()
    mri["T1"][:] = 0
    mri["T1"][2, 23, 1] = 100.0  # x = 2, most anterior y, slice 1
    data = g.synthesis_set(mri, [1], inputs=("T1",), factor=1, multiple=1)
    assert data.images.shape == (1, 1, 24, 20)
    assert torch.nonzero(data.images[0, 0]).tolist() == [[0, 2]]
