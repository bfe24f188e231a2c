"""Data augmentation on whole batches of tensors, on the device, with a new draw per image.

``torchvision.transforms.v2`` applied to a batch tensor draws *one* set of random
parameters for the whole batch; here every image gets its own flip, rotation, scale,
shift and intensity change, in one ``affine_grid``/``grid_sample`` call, so augmentation
costs a fraction of a training step and the data pipeline stays in memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SHIFTS", "BatchAugment", "corrupt"]

# RGB -> YIQ (NTSC): Y is the luminance (grey value), I and Q the two colour axes.
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


class BatchAugment(nn.Module):
    """Random flips, rotations, scaling, shifts and intensity changes, per image.

    Args:
        hflip: Probability of a left-right flip.
        vflip: Probability of an up-down flip (sensible for histology, not for chest X-rays).
        degrees: Rotations are uniform in ``[-degrees, degrees]``.
        scale: Zoom factors are uniform in this range.
        translate: Shifts are uniform in ``[-translate, translate]`` of the image size.
        brightness: Adds a uniform offset in ``[-brightness, brightness]``.
        contrast: Multiplies the deviation from each image's mean by a factor in ``[1-contrast, 1+contrast]``.
        channel_gain: Multiplies each colour channel by its own factor in ``[1-gain, 1+gain]``:
            a crude stain/colour jitter for H&E histology, where centres differ in staining.
        saturation: RGB only: moves each pixel towards or away from its grey value by a factor in
            ``[1-saturation, 1+saturation]``.
        hue: RGB only: rotates the colours around the grey axis (in YIQ space) by up to
            ``hue`` of a full turn (0.5: any hue), which keeps each pixel's brightness.
        grayscale: RGB only: probability of replacing an image by its grey values (all three channels).

    Input and output: float images ``(B, C, H, W)`` in [0, 1]; the output is clamped to [0, 1].
    Uses the global torch random generator, so :func:`dlmi.config.seed_everything` makes it repeatable.
    """

    def __init__(
        self,
        hflip: float = 0.5,
        vflip: float = 0.0,
        degrees: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.1,
        brightness: float = 0.1,
        contrast: float = 0.1,
        channel_gain: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        grayscale: float = 0.0,
    ):
        super().__init__()
        self.hflip, self.vflip, self.degrees = hflip, vflip, degrees
        self.scale, self.translate = scale, translate
        self.brightness, self.contrast, self.channel_gain = brightness, contrast, channel_gain
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (a fraction of a full turn), got {hue}")
        self.saturation, self.hue, self.grayscale = saturation, hue, grayscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a float batch ``(B, C, H, W)``."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"BatchAugment expects float images (B, C, H, W), got {tuple(x.shape)} {x.dtype}")
        b, dev = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(b, device=dev) * (high - low) + low

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        zoom = uniform(*self.scale)
        sx = torch.where(torch.rand(b, device=dev) < self.hflip, -1.0, 1.0) / zoom
        sy = torch.where(torch.rand(b, device=dev) < self.vflip, -1.0, 1.0) / zoom
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([cos * sx, -sin * sy, uniform(-self.translate, self.translate) * 2], 1),
                torch.stack([sin * sx, cos * sy, uniform(-self.translate, self.translate) * 2], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        factor = uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1).to(x.dtype)
        shift = uniform(-self.brightness, self.brightness).view(b, 1, 1, 1).to(x.dtype)
        out = (out - mean) * factor + mean + shift
        if self.channel_gain > 0:
            gain = torch.rand(b, x.shape[1], 1, 1, device=dev) * (2 * self.channel_gain) + (1 - self.channel_gain)
            out = out * gain.to(x.dtype)
        if x.shape[1] == 3 and (self.saturation > 0 or self.hue > 0 or self.grayscale > 0):
            out = self._colour(out)
        return out.clamp(0.0, 1.0)

    def _colour(self, out: torch.Tensor) -> torch.Tensor:
        """Saturation, hue and greyscale changes of an RGB batch, each image with its own draw."""
        b, dev = out.shape[0], out.device
        luma = torch.tensor(_YIQ[0], device=dev, dtype=out.dtype).view(1, 3, 1, 1)
        if self.saturation > 0:
            grey = (out * luma).sum(1, keepdim=True)
            factor = torch.rand(b, 1, 1, 1, device=dev) * (2 * self.saturation) + (1 - self.saturation)
            out = grey + factor.to(out.dtype) * (out - grey)
        if self.hue > 0:
            angle = (torch.rand(b, device=dev) * 2 - 1) * (self.hue * 2 * math.pi)
            cos, sin = torch.cos(angle), torch.sin(angle)
            one, zero = torch.ones_like(cos), torch.zeros_like(cos)
            rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                               torch.stack([zero, sin, cos], 1)], 1)  # (B, 3, 3): rotate I and Q
            to_yiq = torch.tensor(_YIQ, device=dev)
            matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # RGB -> YIQ -> rotated -> RGB
            out = torch.einsum("bij,bjhw->bihw", matrix.to(out.dtype), out)
        if self.grayscale > 0:
            grey = (out * luma).sum(1, keepdim=True).expand_as(out)
            pick = (torch.rand(b, device=dev) < self.grayscale).view(b, 1, 1, 1)
            out = torch.where(pick, grey, out)
        return out


#: The synthetic acquisition shifts of :func:`corrupt`, with the meaning of their severity.
SHIFTS = {
    "noise": "standard deviation of added Gaussian noise, in units of the full intensity range",
    "blur": "standard deviation of a Gaussian blur, in pixels",
    "contrast": "fraction of contrast removed (0: unchanged, 1: a flat grey image)",
    "resolution": "down-sampling factor before up-sampling back to the original size",
}


def corrupt(images: torch.Tensor, kind: str, severity: float, seed: int = 0) -> torch.Tensor:
    """A synthetic acquisition shift of ``uint8`` images, to test how robust a model is.

    Each kind imitates something that differs between scanners and protocols: noise (lower dose,
    shorter acquisition), blur (motion, a softer reconstruction kernel), lower contrast (another
    exposure or window) and lower resolution (a coarser matrix, then up-sampled). Severity 0
    returns the images unchanged.

    Args:
        images: ``uint8`` images ``(N, C, H, W)``.
        kind: One of :data:`SHIFTS`.
        severity: How strong (see :data:`SHIFTS` for the unit of each kind); >= 0, and < 1 for contrast.
        seed: Seed of the noise (the same seed gives the same noise).

    Returns:
        ``uint8`` images of the same shape.
    """
    from torchvision.transforms.v2 import functional as TF

    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; use one of {sorted(SHIFTS)}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}")
    if severity < 0 or (kind == "contrast" and severity >= 1) or (kind == "resolution" and 0 < severity < 1):
        raise ValueError(f"severity {severity} is out of range for {kind!r}: {SHIFTS[kind]}")
    if severity == 0 or (kind == "resolution" and severity == 1):
        return images.clone()
    x = images.float() / 255.0
    if kind == "noise":
        generator = torch.Generator(device=images.device).manual_seed(seed)
        x = x + severity * torch.randn(x.shape, generator=generator, device=images.device)
    elif kind == "blur":
        radius = max(1, math.ceil(3 * severity))
        x = TF.gaussian_blur(x, kernel_size=[2 * radius + 1] * 2, sigma=[float(severity)] * 2)
    elif kind == "contrast":
        x = TF.adjust_contrast(x, 1.0 - severity)
    else:
        size = images.shape[-2:]
        small = [max(1, round(s / severity)) for s in size]
        x = F.interpolate(F.interpolate(x, size=small, mode="area"), size=tuple(size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
