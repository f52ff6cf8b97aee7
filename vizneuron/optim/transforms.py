"""Transformation robustness in pure torch: every image of a batch draws its own randomness.

A transform is a function `(images, generator) -> images`; `compose` chains them. The generator
lives on the images' device, so drawing parameters costs no host round trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def pad(width: int, value: float = 0.5) -> Transform:
    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return F.pad(x, (width,) * 4, mode="constant", value=value)

    return transform


def random_crop(x: torch.Tensor, gen: torch.Generator, out_size: tuple[int, int]) -> torch.Tensor:
    """Crop each image at its own random offset to `out_size`."""
    n, c, h, w = x.shape
    oh, ow = out_size
    dy = torch.randint(0, h - oh + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, w - ow + 1, (n,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(oh, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(ow, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, chans, rows, cols]


def jitter(d: int) -> Transform:
    """Shift each image by 0..d-1 pixels in each axis (a random crop losing d-1 pixels)."""

    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return random_crop(x, gen, (x.shape[2] - d + 1, x.shape[3] - d + 1)) if d > 1 else x

    return transform


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _choice(values: Sequence[float], n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    table = torch.tensor(values, dtype=torch.float32, device=device)
    return table[torch.randint(0, len(values), (n,), generator=gen, device=device)]


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom each image by a factor drawn from `scales`, keeping its size."""

    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = _choice(scales, x.shape[0], gen, x.device)
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        theta[:, 0, 0] = 1.0 / s
        theta[:, 1, 1] = 1.0 / s
        return _affine(x, theta)

    return transform


def random_rotate(degrees: Sequence[float]) -> Transform:
    """Rotate each image about its centre by an angle drawn from `degrees`."""

    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        a = _choice(degrees, x.shape[0], gen, x.device) * (math.pi / 180.0)
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(a)], 1),
                             torch.stack([sin, cos, torch.zeros_like(a)], 1)], 1)
        return _affine(x, theta)

    return transform


def compose(transforms: Sequence[Transform]) -> Transform:
    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for t in transforms:
            x = t(x, gen)
        return x

    return transform


def standard_transforms(size: int = 128) -> list[Transform]:
    """lucid's standard robustness set (pad 12, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4),
    with pixel amounts scaled to the image size. Below 64 px (CIFAR-sized renders) the scale and
    rotation steps are left out: resampling a 32 px image blurs away the detail such networks key
    on, and measured on ResNet-20 it halves how far renders drive their units."""
    k = size / 128.0
    def px(v: float) -> int:
        return max(1, round(v * k))

    if size < 64:
        return [pad(px(12)), jitter(px(8) + 1), jitter(px(4) + 1)]
    return [
        pad(px(12)),
        jitter(px(8)),
        random_scale([1 + (i - 5) / 50 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(px(4)),
    ]
