"""Generative models and the tools that judge their samples (chapter 10).

Four ways to make images, each small enough to train on a CPU on 28 x 28 MedMNIST images:

- an **autoencoder** (:class:`AutoEncoder`): compress and reconstruct; not yet a generator;
- a **variational autoencoder** (:class:`VAE`, Kingma & Welling 2014), optionally class-conditional,
  trained on the evidence lower bound (:func:`elbo_terms`);
- a **GAN** in the DCGAN style (:class:`DCGAN`, :class:`GANLoss`, Goodfellow et al. 2014,
  Radford et al. 2016);
- a **denoising diffusion model** (:class:`NoiseSchedule`, :class:`Denoiser`,
  :class:`DiffusionLoss`, :func:`ddpm_sample`, Ho et al. 2020), optionally class-conditional.

All of them train through the book's one loop, :func:`dlmi.train.fit`, with a ``batch_loss``, and
are cached by :func:`dlmi.zoo.train_recipe` through :class:`GenerativeRecipe`. Image-to-image
synthesis (T1 + lesion mask -> FLAIR) reuses :class:`dlmi.segment.UNet` with an L1 loss
(:class:`SynthesisRecipe`, :func:`synthesis_set`, :func:`synthesis_scores`). Samples are judged
by their nearest training neighbours (:func:`nearest_neighbours`, a memorisation check) and by the
Fréchet distance between feature sets (:func:`frechet_distance`).

Images enter every model as floats in [0, 1] (what :func:`dlmi.train.to_float` gives); the GAN
and the diffusion model work internally in [-1, 1]. Every sampler returns ``uint8`` images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlmi.config import seed_everything
from dlmi.data import ImageSet
from dlmi.segment import UNet, to_uint8
from dlmi.train import FitResult, fit, make_scheduler

__all__ = [
    "AutoEncoder",
    "DCGAN",
    "Denoiser",
    "DiffusionLoss",
    "GANLoss",
    "GenerativeRecipe",
    "NoiseSchedule",
    "ReconstructionLoss",
    "SynthesisLoss",
    "SynthesisRecipe",
    "VAE",
    "ddpm_sample",
    "decode_latents",
    "elbo_terms",
    "frechet_distance",
    "interpolate",
    "latent_traversal",
    "linear_fit_baseline",
    "nearest_neighbours",
    "predict_synthesis",
    "reconstruct",
    "sample",
    "synthesis_scores",
    "synthesis_set",
    "to_images",
]


def to_images(x: torch.Tensor, low: float = 0.0) -> torch.Tensor:
    """Floats in ``[low, 1]`` (``low`` 0 or -1) -> ``uint8`` images in 0..255 on the CPU (values outside are clipped)."""
    x = x.detach().float().cpu()
    if low != 0.0:
        x = (x - low) / (1.0 - low)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _one_hot(y: torch.Tensor | None, n_classes: int, n: int, device: torch.device) -> torch.Tensor:
    """``(n, n_classes)`` one-hot labels, or ``(n, 0)`` for an unconditional model."""
    if n_classes == 0:
        return torch.zeros(n, 0, device=device)
    if y is None:
        raise ValueError(f"this model is class-conditional ({n_classes} classes): pass labels")
    return F.one_hot(y.long().to(device).view(-1), n_classes).float()


# --------------------------------------------------------------------------- autoencoder and VAE


class _Encoder(nn.Sequential):
    """``(B, C, S, S)`` -> ``(B, widths[-1] * (S/4)^2)``: two stride-2 convolutions and a flatten."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        a, b = widths
        super().__init__(
            nn.Conv2d(in_channels, a, 4, 2, 1), nn.BatchNorm2d(a), nn.LeakyReLU(0.2),
            nn.Conv2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )


class _Decoder(nn.Module):
    """``(B, in_dim)`` -> ``(B, C, S, S)`` (unbounded outputs): a linear layer to ``S/4`` pixels, two transposed convolutions."""

    def __init__(self, in_dim: int, out_channels: int, widths: Sequence[int], image_size: int):
        super().__init__()
        a, b = widths
        self.b, self.side = b, image_size // 4
        self.project = nn.Sequential(nn.Linear(in_dim, b * self.side**2), nn.BatchNorm1d(b * self.side**2), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(b, a, 4, 2, 1), nn.BatchNorm2d(a), nn.ReLU(),
            nn.ConvTranspose2d(a, out_channels, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.project(z).view(-1, self.b, self.side, self.side))


def _check_size(image_size: int, widths: Sequence[int]) -> None:
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4 (two halvings), got {image_size}")
    if len(widths) != 2:
        raise ValueError(f"widths must hold two channel counts, got {tuple(widths)}")


class AutoEncoder(nn.Module):
    """A convolutional autoencoder: image -> ``latent_dim`` numbers -> image.

    Args:
        in_channels: Image channels.
        latent_dim: Size of the bottleneck code.
        widths: Channels of the two convolution levels.
        image_size: Side of the square images (divisible by 4).

    ``forward(x, y=None)`` returns reconstruction *logits* ``(B, C, S, S)``; the reconstruction
    is their sigmoid. ``y`` is accepted and ignored (one interface with :class:`VAE`).
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, widths: Sequence[int] = (32, 64), image_size: int = 28):
        super().__init__()
        _check_size(image_size, widths)
        self.latent_dim, self.n_classes = latent_dim, 0
        self.encoder = nn.Sequential(_Encoder(in_channels, widths), nn.Linear(widths[1] * (image_size // 4) ** 2, latent_dim))
        self.decoder = _Decoder(latent_dim, in_channels, widths, image_size)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Float images ``(B, C, S, S)`` -> codes ``(B, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``(B, latent_dim)`` -> logits ``(B, C, S, S)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))


class VAE(nn.Module):
    """A convolutional variational autoencoder, class-conditional if ``n_classes > 0``.

    The encoder outputs the mean and log-variance of a Gaussian ``q(z | x)`` over the latent
    space; training samples ``z = mu + sigma * eps`` (the reparameterisation trick, so the
    gradient flows through the sampling) and decodes it. A conditional VAE also hands the
    one-hot class to the encoder and the decoder, so that sampling can ask for a class.

    Args:
        in_channels: Image channels.
        latent_dim: Size of the latent space.
        widths: Channels of the two convolution levels.
        image_size: Side of the square images (divisible by 4).
        n_classes: 0 for an unconditional VAE, else the number of classes to condition on.

    ``forward(x, y=None)`` returns ``(logits, mu, logvar)``: logits ``(B, C, S, S)``, ``mu`` and
    ``logvar`` ``(B, latent_dim)``.
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, widths: Sequence[int] = (32, 64), image_size: int = 28,
                 n_classes: int = 0):
        super().__init__()
        _check_size(image_size, widths)
        self.latent_dim, self.n_classes = latent_dim, n_classes
        self.features = _Encoder(in_channels, widths)
        self.to_stats = nn.Linear(widths[1] * (image_size // 4) ** 2 + n_classes, 2 * latent_dim)
        self.decoder = _Decoder(latent_dim + n_classes, in_channels, widths, image_size)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images ``(B, C, S, S)`` (and labels ``(B,)``) -> ``(mu, logvar)``, each ``(B, latent_dim)``."""
        h = torch.cat([self.features(x), _one_hot(y, self.n_classes, len(x), x.device)], 1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``(B, latent_dim)`` (and labels) -> logits ``(B, C, S, S)``."""
        return self.decoder(torch.cat([z, _one_hot(y, self.n_classes, len(z), z.device)], 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decode(z, y), mu, logvar


def elbo_terms(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two terms of the negative ELBO, averaged over the batch (summed over pixels and latents).

    ``-ELBO = recon + kl`` with ``recon = -log p(x | z)`` under a Bernoulli decoder (binary
    cross-entropy of the logits against intensities in [0, 1]) and ``kl = KL(N(mu, sigma^2) || N(0, I))
    = 0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1)``, zero exactly when ``mu = 0`` and ``sigma = 1``.

    Args:
        logits: Decoder outputs ``(B, C, H, W)``.
        x: Target images in [0, 1], same shape.
        mu, logvar: Encoder outputs ``(B, D)``.

    Returns:
        ``{"recon": ..., "kl": ...}``, scalar tensors (differentiable), in nats per image.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and images {tuple(x.shape)} differ in shape")
    recon = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum") / len(x)
    kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - logvar.float() - 1).sum() / len(x)
    return {"recon": recon, "kl": kl}


class ReconstructionLoss:
    """``batch_loss`` for :func:`dlmi.train.fit`: the autoencoder's reconstruction loss or the VAE's negative ELBO.

    Args:
        beta: Weight of the KL term for a :class:`VAE` (1: the ELBO; ignored for an autoencoder).

    ``loss(model, x, y)``: binary cross-entropy per image (summed over pixels) for an
    :class:`AutoEncoder`; ``recon + beta * kl`` for a :class:`VAE` (given ``y`` if conditional).
    """

    def __init__(self, beta: float = 1.0):
        if beta < 0:
            raise ValueError(f"beta must be non-negative, got {beta}")
        self.beta = beta

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = y if getattr(model, "n_classes", 0) else None
        if isinstance(model, VAE):
            logits, mu, logvar = model(x, y)
            terms = elbo_terms(logits, x, mu, logvar)
            return terms["recon"] + self.beta * terms["kl"]
        return F.binary_cross_entropy_with_logits(model(x).float(), x.float(), reduction="sum") / len(x)


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``uint8`` images ``(N, C, S, S)`` -> their ``uint8`` reconstructions (the VAE decodes its mean code)."""
    device = next(model.parameters()).device
    model.eval()
    x = images.to(device).float() / 255
    y = labels.to(device) if labels is not None and getattr(model, "n_classes", 0) else None
    out = model(x, y)
    logits = out[0] if isinstance(out, tuple) else out
    return to_images(torch.sigmoid(logits))


@torch.no_grad()
def decode_latents(model: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Latent codes ``(N, latent_dim)`` (and labels ``(N,)`` for a conditional VAE) -> ``uint8`` images."""
    device = next(model.parameters()).device
    model.eval()
    y = labels.to(device) if labels is not None and getattr(model, "n_classes", 0) else None
    return to_images(torch.sigmoid(model.decode(z.to(device), y)))


def interpolate(model: nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 8, label: int | None = None) -> torch.Tensor:
    """Decode ``steps`` points on the straight line between the codes of two ``uint8`` images ``(C, S, S)``.

    Returns:
        ``uint8`` images ``(steps, C, S, S)``, from (the reconstruction of) ``a`` to ``b``.
    """
    device = next(model.parameters()).device
    model.eval()
    x = torch.stack([a, b]).to(device).float() / 255
    y = torch.full((2,), label, device=device) if label is not None else None
    with torch.no_grad():
        code = model.encode(x, y)
    z = code[0] if isinstance(code, tuple) else code
    t = torch.linspace(0, 1, steps, device=device)[:, None]
    zs = (1 - t) * z[0] + t * z[1]
    return decode_latents(model, zs, None if y is None else y[:1].repeat(steps))


def latent_traversal(model: nn.Module, dims: Sequence[int], values: Sequence[float], label: int | None = None) -> torch.Tensor:
    """Vary one latent coordinate at a time from the origin: one row per dimension in ``dims``.

    Returns:
        ``uint8`` images ``(len(dims) * len(values), C, S, S)``, row-major (dimension, value).
    """
    device = next(model.parameters()).device
    z = torch.zeros(len(dims) * len(values), model.latent_dim, device=device)
    for i, d in enumerate(dims):
        z[i * len(values) : (i + 1) * len(values), d] = torch.as_tensor(values, dtype=torch.float32, device=device)
    labels = torch.full((len(z),), label) if label is not None else None
    return decode_latents(model, z, labels)


# --------------------------------------------------------------------------- GAN


class DCGAN(nn.Module):
    """A generator and a discriminator in the DCGAN style (Radford et al. 2016), held in one module.

    Generator: noise ``(B, latent_dim)`` -> linear -> ``(2w, S/4, S/4)`` -> two transposed
    convolutions with batch norm and ReLU -> ``tanh`` image in [-1, 1]. Discriminator: two
    stride-2 convolutions (no pooling) with leaky ReLU, batch norm on all but the first ->
    one logit "real". These are DCGAN's architectural stabilisers; :class:`GANLoss` adds the
    training ones.

    Args:
        in_channels: Image channels.
        latent_dim: Size of the noise vector.
        width: Channels of the generator's last and the discriminator's first level.
        image_size: Side of the square images (divisible by 4).
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 32, width: int = 32, image_size: int = 28):
        super().__init__()
        _check_size(image_size, (width, 2 * width))
        self.latent_dim, self.side = latent_dim, image_size // 4
        w2 = 2 * width
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, w2 * self.side**2), nn.Unflatten(1, (w2, self.side, self.side)), nn.BatchNorm2d(w2), nn.ReLU(),
            nn.ConvTranspose2d(w2, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, in_channels, 4, 2, 1), nn.Tanh(),
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, w2, 4, 2, 1), nn.BatchNorm2d(w2), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(w2 * self.side**2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Noise ``(B, latent_dim)`` -> generated images ``(B, C, S, S)`` in [-1, 1]."""
        return self.generator(z)


class GANLoss:
    """The adversarial game as a ``batch_loss`` for :func:`dlmi.train.fit`, which steps the generator.

    A GAN alternates two updates per batch. :func:`dlmi.train.fit` owns one optimiser and takes
    one step on the loss that ``batch_loss`` returns, so this object does the *other* update
    itself: on every call it

    1. updates the discriminator with its own Adam optimiser (created on the first call,
       ``betas=(0.5, 0.999)`` as in DCGAN) on real images (target 0.9, one-sided label
       smoothing, a stabiliser) and freshly generated ones (target 0);
    2. returns the generator's non-saturating loss ``-log D(G(z))`` computed with the
       discriminator's parameters frozen, so their gradients stay ``None`` and ``fit``'s
       optimiser leaves them untouched: it effectively steps the generator only.

    The discriminator's losses are kept in :attr:`d_losses` (one per step), the generator's in
    ``fit``'s history. ``y`` is ignored (an unconditional GAN).

    Args:
        lr: Learning rate of the discriminator's optimiser.
    """

    def __init__(self, lr: float = 2e-4):
        self.lr = lr
        self.d_opt: torch.optim.Optimizer | None = None
        self.d_losses: list[float] = []

    def __call__(self, model: DCGAN, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        disc = model.discriminator
        if self.d_opt is None:
            self.d_opt = torch.optim.Adam(disc.parameters(), lr=self.lr, betas=(0.5, 0.999))
        real = 2 * x - 1
        z = torch.randn(len(x), model.latent_dim, device=x.device)
        fake = model(z)
        # 1. discriminator step (generator output detached: this step must not change the generator)
        d_real, d_fake = disc(real).float(), disc(fake.detach()).float()
        d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self.d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_opt.step()
        self.d_opt.zero_grad(set_to_none=True)
        self.d_losses.append(d_loss.item())
        # 2. generator loss through a frozen discriminator
        for p in disc.parameters():
            p.requires_grad_(False)
        try:
            g_logit = disc(fake).float()
        finally:
            for p in disc.parameters():
                p.requires_grad_(True)
        return F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))


# --------------------------------------------------------------------------- diffusion (DDPM)


class NoiseSchedule:
    """The forward (noising) process of a DDPM: ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``.

    Variances ``beta_t`` grow linearly over ``steps`` steps. Ho et al. used 1e-4 to 0.02 over
    1000 steps; with fewer steps both ends are scaled by ``1000 / steps`` (capped below 1) so
    that the last step still leaves (almost) pure noise. ``alpha_t = 1 - beta_t`` and ``abar_t = prod_{s<=t} alpha_s``.

    Args:
        steps: Number of noising steps ``T``; ``t`` runs from 0 to ``T - 1``.
        beta_start, beta_end: ``beta`` of the first and last step for ``T = 1000`` (scaled for other ``T``).

    Attributes:
        betas, alphas, alpha_bars: ``float64`` tensors ``(steps,)`` on the CPU.
    """

    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        if steps < 2:
            raise ValueError(f"need at least 2 steps, got {steps}")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        scale = 1000 / steps
        self.steps = steps
        # capped below 1 so that a very short schedule (tests, demonstrations) stays valid
        self.betas = torch.linspace(min(beta_start * scale, 0.5), min(beta_end * scale, 0.999), steps, dtype=torch.float64)
        self.alphas = 1 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Jump straight to step ``t``: ``sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise`` (shapes of ``x0``; ``t`` ``(B,)``)."""
        ab = self.alpha_bars.to(x0.device)[t].float().view(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


class Denoiser(nn.Module):
    """The noise-predicting network of a DDPM: :class:`dlmi.segment.UNet` with the step (and class) as extra input channels.

    The step ``t`` enters as ``2 * n_freqs`` constant channels ``sin / cos(2^k pi t / T)`` and the
    class as one-hot constant channels, concatenated to the noisy image: the simplest way to tell
    a U-Net what step (and class) it is denoising, without changing its architecture.

    Args:
        in_channels: Image channels.
        steps: ``T`` of the schedule (to scale ``t``).
        widths: U-Net channels per level (the image side must be divisible by ``2 ** (len - 1)``).
        n_classes: 0 (unconditional) or the number of classes to condition on.
        n_freqs: Number of sine/cosine frequency pairs encoding ``t``.
    """

    def __init__(self, in_channels: int = 1, steps: int = 1000, widths: Sequence[int] = (32, 64, 128), n_classes: int = 0,
                 n_freqs: int = 4):
        super().__init__()
        self.steps, self.n_classes, self.n_freqs = steps, n_classes, n_freqs
        self.unet = UNet(in_channels + 2 * n_freqs + n_classes, in_channels, widths)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Noisy images ``(B, C, H, W)``, steps ``(B,)``, labels ``(B,)`` -> predicted noise ``(B, C, H, W)``."""
        b, _, h, w = x.shape
        freqs = 2.0 ** torch.arange(self.n_freqs, device=x.device) * math.pi
        phase = (t.float().to(x.device)[:, None] / self.steps) * freqs
        cond = torch.cat([phase.sin(), phase.cos(), _one_hot(y, self.n_classes, b, x.device)], 1)
        return self.unet(torch.cat([x, cond[:, :, None, None].expand(-1, -1, h, w).to(x.dtype)], 1))


class DiffusionLoss:
    """``batch_loss`` for :func:`dlmi.train.fit`: the simplified DDPM objective (epsilon prediction).

    For each image ``x_0`` (mapped to [-1, 1]) draw a step ``t`` uniformly and noise
    ``eps ~ N(0, I)``, form ``x_t`` with :meth:`NoiseSchedule.q_sample` in one jump, and return
    the mean squared error between ``eps`` and the network's prediction ``model(x_t, t, y)``.

    Args:
        schedule: The noise schedule (its ``steps`` must match the model's).
    """

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule

    def __call__(self, model: Denoiser, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x0 = 2 * x - 1
        t = torch.randint(0, self.schedule.steps, (len(x),), device=x.device)
        noise = torch.randn_like(x0)
        pred = model(self.schedule.q_sample(x0, t, noise), t, y if model.n_classes else None)
        return F.mse_loss(pred.float(), noise.float())


@torch.no_grad()
def ddpm_sample(model: Denoiser, schedule: NoiseSchedule, n: int, image_shape: Sequence[int] = (1, 28, 28),
                labels: torch.Tensor | None = None, seed: int = 0, keep: Sequence[int] = (), clip: bool = True) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Ancestral sampling: start from pure noise ``x_T`` and take ``T`` denoising steps.

    Each step ``t`` (from ``T - 1`` down to 0) computes the mean of ``p(x_{t-1} | x_t)``,
    ``(x_t - beta_t / sqrt(1 - abar_t) * eps_hat) / sqrt(alpha_t)``, and adds fresh noise of
    variance ``beta_t`` except at the last step. With ``clip`` the mean is computed from the
    clean image the network implies, ``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``,
    clipped to [-1, 1] (as in Ho et al.'s code): identical when ``x0_hat`` is in range, and it
    stops an imperfect network from drifting out of the data range. All noise comes from one
    seeded CPU generator, so a seed gives the same images on any device.

    Args:
        model: A trained :class:`Denoiser`.
        schedule: Its noise schedule.
        n: Number of images.
        image_shape: ``(C, H, W)``.
        labels: Classes ``(n,)`` for a conditional model.
        seed: Seed of all the noise.
        keep: Steps ``t`` at which to keep the intermediate images (e.g. to show the reverse process).
        clip: Clip the implied clean image to [-1, 1] at every step.

    Returns:
        ``(images, kept)``: ``uint8`` images ``(n, C, H, W)`` and ``{t: uint8 images}`` for ``keep``.
    """
    if schedule.steps != model.steps:
        raise ValueError(f"the schedule has {schedule.steps} steps but the model was built for {model.steps}")
    device = next(model.parameters()).device
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *image_shape, generator=gen).to(device)
    y = labels.to(device) if labels is not None else None
    kept = {}
    for t in range(schedule.steps - 1, -1, -1):
        beta, alpha, ab = (float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars))
        eps = model(x, torch.full((n,), t, device=device), y).float()
        if clip:
            # the same mean written through the predicted clean image, clipped to the data range
            ab_prev = float(schedule.alpha_bars[t - 1]) if t > 0 else 1.0
            x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
            x = (beta * math.sqrt(ab_prev) * x0 + (1 - ab_prev) * math.sqrt(alpha) * x) / (1 - ab)
        else:
            x = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
        if t > 0:
            x = x + math.sqrt(beta) * torch.randn(n, *image_shape, generator=gen).to(device)
        if t in keep:
            kept[t] = to_images(x, low=-1.0)
    return to_images(x, low=-1.0), kept


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class GenerativeRecipe:
    """One generative model's training run as plain values, cached by :func:`dlmi.zoo.train_recipe`.

    Attributes:
        kind: ``"autoencoder"``, ``"vae"``, ``"gan"`` or ``"ddpm"``.
        latent_dim: Code size (autoencoder, VAE) or noise size (GAN).
        widths: Channels per level: two for the autoencoder and VAE, the first one is the GAN's
            width, the U-Net's levels for the diffusion model.
        conditional: Condition on the class labels (VAE and diffusion model).
        beta: Weight of the VAE's KL term.
        steps: Diffusion steps ``T``.
        image_size: Side of the square images.
        epochs, batch_size, lr: Budget and Adam's learning rate (the generator's, for the GAN).
        d_lr: The GAN discriminator's learning rate.
        seed: Seed of initialisation, batch order and noise.
    """

    kind: str = "vae"
    latent_dim: int = 16
    widths: tuple[int, ...] = (32, 64)
    conditional: bool = False
    beta: float = 1.0
    steps: int = 1000
    image_size: int = 28
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    d_lr: float = 2e-4
    seed: int = 0

    def build_model(self, in_channels: int, n_classes: int) -> nn.Module:
        """A freshly initialised network of this kind (``n_classes`` is used only if conditional)."""
        seed_everything(self.seed)
        k = n_classes if self.conditional else 0
        if self.kind == "autoencoder":
            return AutoEncoder(in_channels, self.latent_dim, self.widths, self.image_size)
        if self.kind == "vae":
            return VAE(in_channels, self.latent_dim, self.widths, self.image_size, k)
        if self.kind == "gan":
            return DCGAN(in_channels, self.latent_dim, self.widths[0], self.image_size)
        if self.kind == "ddpm":
            return Denoiser(in_channels, self.steps, self.widths, k)
        raise ValueError(f"unknown kind {self.kind!r}; use 'autoencoder', 'vae', 'gan' or 'ddpm'")

    def schedule(self) -> NoiseSchedule:
        """The diffusion model's noise schedule."""
        return NoiseSchedule(self.steps)

    def batch_loss(self):
        """The training objective of this kind (a ``batch_loss`` for :func:`dlmi.train.fit`)."""
        if self.kind in ("autoencoder", "vae"):
            return ReconstructionLoss(self.beta)
        if self.kind == "gan":
            return GANLoss(self.d_lr)
        return DiffusionLoss(self.schedule())

    def fit(self, train: ImageSet, val: ImageSet | None = None) -> FitResult:
        """Train on ``train`` (labels used only if conditional) with :func:`dlmi.train.fit`; keeps the last epoch."""
        if val is not None:
            raise ValueError("generative recipes train without a validation split; pass val=None")
        model = self.build_model(train.images.shape[1], train.n_classes)
        schedule = make_scheduler("cosine", self.epochs) if self.kind != "gan" else None
        return fit(model, train, None, epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr,
                   scheduler=schedule, batch_loss=self.batch_loss(), seed=self.seed)


@torch.no_grad()
def sample(recipe: GenerativeRecipe, model: nn.Module, n: int, labels: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` new ``uint8`` images ``(n, C, S, S)`` from a trained model of ``recipe``'s kind.

    The autoencoder and VAE decode codes drawn from ``N(0, I)`` (for the autoencoder this is
    *not* its training distribution: the point of comparing the two); the GAN generates from
    noise; the diffusion model runs :func:`ddpm_sample`. ``labels`` (``(n,)``) for conditional models.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    if recipe.kind in ("autoencoder", "vae"):
        return decode_latents(model, torch.randn(n, recipe.latent_dim, generator=gen), labels)
    if recipe.kind == "gan":
        return to_images(model(torch.randn(n, recipe.latent_dim, generator=gen).to(device)), low=-1.0)
    if recipe.kind == "ddpm":
        c = next(model.unet.parameters()).shape[1] - 2 * model.n_freqs - model.n_classes
        return ddpm_sample(model, recipe.schedule(), n, (c, recipe.image_size, recipe.image_size),
                           labels if model.n_classes else None, seed)[0]
    raise ValueError(f"unknown kind {recipe.kind!r}")


# --------------------------------------------------------------------------- judging samples


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, batch_size: int = 256,
                       exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The nearest reference image of every query image, by root-mean-square pixel difference.

    Distances are computed on intensities in [0, 1]: 0 for an exact copy, about 0.5 between
    an all-black and an all-mid-grey image.

    Args:
        queries: ``uint8`` images ``(N, C, H, W)``, e.g. generated samples.
        reference: ``uint8`` images ``(M, C, H, W)``, e.g. the training set.
        batch_size: Queries per distance block.
        exclude_self: Ignore an index equal to the query's own (when ``queries`` is ``reference``).

    Returns:
        ``(distances (N,), indices (N,))``: the RMS distance to the nearest reference image and its index.
    """
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(f"queries {tuple(queries.shape[1:])} and reference {tuple(reference.shape[1:])} differ in image shape")
    ref = reference.flatten(1).float() / 255
    d = ref.shape[1]
    dists, idx = [], []
    for start in range(0, len(queries), batch_size):
        q = queries[start : start + batch_size].flatten(1).float() / 255
        block = torch.cdist(q.double(), ref.double()).pow(2) / d
        if exclude_self:
            rows = torch.arange(len(q))
            block[rows, rows + start] = float("inf")
        best, where = block.min(1)
        dists.append(best.clamp_min(0).sqrt().float())
        idx.append(where)
    return torch.cat(dists).numpy(), torch.cat(idx).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula, Heusel et al. 2017).

    ``||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})``. The trace of the matrix square
    root is computed as the sum of the square roots of the eigenvalues of ``C_a^{1/2} C_b C_a^{1/2}``
    (symmetric and positive semi-definite, so the result is real and stable). 0 for identical
    sets; it grows as the means or the spreads differ. With features from an Inception network
    this is the FID; here any network's features can be used.

    Args:
        a, b: Features ``(N, D)`` and ``(M, D)``, ``N, M >= 2``.

    Returns:
        The distance (a float >= 0).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) feature arrays with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least two feature vectors per set to estimate a covariance")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    wa, va = np.linalg.eigh(ca)
    root_a = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    cross = np.linalg.eigvalsh(root_a @ cb @ root_a)
    value = mu @ mu + np.trace(ca) + np.trace(cb) - 2 * np.sqrt(np.clip(cross, 0, None)).sum()
    return float(max(value, 0.0))


# --------------------------------------------------------------------------- image-to-image synthesis


def _brain_scale(volume: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """MRI volume -> ``uint8`` with 0 at 0 and the brain's ``percentile`` at 255 (skull-stripped: brain = voxels > 0)."""
    v = np.asarray(volume, dtype=np.float32)
    brain = v[v > 0]
    if brain.size == 0:
        raise ValueError("the volume has no voxel > 0 (expected a skull-stripped MRI)")
    return to_uint8(v, 0.0, float(np.percentile(brain, percentile)))


def synthesis_set(mri: dict[str, np.ndarray], slices: Sequence[int], inputs: Sequence[str] = ("T1", "GOLD"),
                  target: str = "FLAIR", factor: int = 2, multiple: int = 8, split: str = "train") -> ImageSet:
    """Axial slices of one subject as an image-to-image :class:`~dlmi.data.ImageSet`.

    Each contrast is scaled to 8 bits by :func:`_brain_scale` (0 -> 0, the brain's 99.5th
    percentile -> 255); a mask (``"GOLD"``) becomes 0 / 255. Slices are taken along the last
    axis (axial in MNI voxel order) and shown with anterior at the top, down-sampled by ``factor`` (average pooling; max pooling
    for the mask, so small lesions survive) and zero-padded to a multiple of ``multiple``.

    Args:
        mri: From :func:`dlmi.data.load_ms_lesion`.
        slices: Indices along the last axis.
        inputs: Input channels.
        target: The contrast to synthesise.
        factor: Down-sampling factor.
        multiple: Pad height and width to a multiple of this (the U-Net's ``2 ** (levels - 1)``).
        split: Name of the split.

    Returns:
        images ``uint8 (N, len(inputs), H, W)``; labels ``uint8 (N, 1, H, W)`` (the target); one class, the target's name.
    """
    missing = [k for k in (*inputs, target) if k not in mri]
    if missing:
        raise ValueError(f"the subject has no {missing}; it has {sorted(k for k in mri if k != 'spacing')}")
    idx = list(slices)

    def prepare(name: str) -> torch.Tensor:
        vol = mri[name]
        scaled = (np.asarray(vol) > 0).astype(np.uint8) * 255 if name == "GOLD" else _brain_scale(vol)
        # (x, y, z) voxel order -> (slice, row, column) with anterior at the top: rows run along -y, columns along x
        planes = np.moveaxis(scaled[:, :, idx], -1, 0).transpose(0, 2, 1)[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(planes))[:, None].float()
        x = F.max_pool2d(x, factor) if name == "GOLD" else F.avg_pool2d(x, factor)
        h, w = x.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)).round().to(torch.uint8)

    images = torch.cat([prepare(k) for k in inputs], 1)
    labels = prepare(target)
    note = (f"{len(idx)} axial slices, {'+'.join(inputs)} -> {target}, down-sampled x{factor}, "
            f"padded to {tuple(images.shape[-2:])}")
    return ImageSet(images, labels, (target,), "image-to-image", "ms_lesion", split, note)


class SynthesisLoss:
    """``batch_loss`` for :func:`dlmi.train.fit`: L1 between the predicted and the true target image.

    The same random left-right flip is applied to inputs and target (brains are roughly
    symmetric); the model's raw output is compared with the target in [0, 1].
    """

    def __init__(self, flip: bool = True):
        self.flip = flip

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.float() / 255
        if self.flip and torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return F.l1_loss(model(x).float(), y)


@dataclass(frozen=True)
class SynthesisRecipe:
    """A U-Net image-to-image run (:class:`dlmi.segment.UNet`, L1 loss, AdamW, cosine schedule), cached by the zoo.

    Attributes:
        widths: U-Net channels per level.
        epochs, batch_size, lr, weight_decay: Budget and optimiser.
        seed: Seed of initialisation and batch order.
    """

    widths: tuple[int, ...] = (16, 32, 64, 128)
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def build_model(self, in_channels: int, n_classes: int = 1) -> nn.Module:
        """A fresh U-Net with one output channel per target (``n_classes``: 1)."""
        seed_everything(self.seed)
        return UNet(in_channels, n_classes, self.widths)

    def fit(self, train: ImageSet, val: ImageSet | None = None) -> FitResult:
        """Train with :func:`dlmi.train.fit` and :class:`SynthesisLoss`; keeps the last epoch (no validation split)."""
        if val is not None:
            raise ValueError("the synthesis recipe trains without a validation split; pass val=None")
        model = self.build_model(train.images.shape[1], train.n_classes)
        return fit(model, train, None, epochs=self.epochs, batch_size=self.batch_size, optimizer="adamw", lr=self.lr,
                   weight_decay=self.weight_decay, scheduler=make_scheduler("cosine", self.epochs),
                   batch_loss=SynthesisLoss(), seed=self.seed)


@torch.no_grad()
def predict_synthesis(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """``uint8`` inputs ``(N, C, H, W)`` -> ``uint8`` synthesised images ``(N, 1, H, W)`` (outputs clipped to [0, 1])."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([to_images(model(b.to(device).float() / 255)) for b in images.split(batch_size)])


def linear_fit_baseline(train: ImageSet, test_inputs: torch.Tensor) -> torch.Tensor:
    """The simplest synthesis: target = a + sum_k b_k * input_k, one least-squares fit over all training pixels.

    Fitted on pixels inside the brain (any input > 0) and applied per pixel; the background stays 0.

    Returns:
        ``uint8`` predictions ``(N, 1, H, W)`` for ``test_inputs`` ``(N, C, H, W)``.
    """
    x = train.images.float().div(255).permute(0, 2, 3, 1).reshape(-1, train.images.shape[1])
    y = train.labels.float().div(255).reshape(-1)
    inside = x.amax(1) > 0
    design = torch.cat([torch.ones(int(inside.sum()), 1), x[inside]], 1).double()
    coef = torch.linalg.lstsq(design, y[inside, None].double()).solution.float()
    t = test_inputs.float().div(255).permute(0, 2, 3, 1)
    pred = coef[0] + t @ coef[1:]
    pred = torch.where(t.amax(-1, keepdim=True) > 0, pred, torch.zeros_like(pred))
    return to_images(pred.permute(0, 3, 1, 2))


def synthesis_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """SSIM, PSNR (dB) and mean absolute error of ``uint8`` images ``(N, 1, H, W)``, on intensities in [0, 1].

    SSIM and PSNR come from torchmetrics (``data_range=1``), computed over all images together
    (PSNR from the pooled mean squared error, SSIM averaged over images).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    p, t = pred.float() / 255, target.float() / 255
    return {
        "ssim": float(structural_similarity_index_measure(p, t, data_range=1.0)),
        "psnr": float(peak_signal_noise_ratio(p, t, data_range=1.0)),
        "mae": float((p - t).abs().mean()),
    }
