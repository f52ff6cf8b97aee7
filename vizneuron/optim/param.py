"""Image parameterisations: what the optimiser actually changes.

- `fft`:   lucid-style spectrum with 1/f scaling and decorrelated colour (the default);
- `pixel`: raw pixels through the same colour decorrelation;
- `maco`:  only the Fourier phase is optimised, the amplitude is fixed to a natural-image
           spectrum (Fel et al. 2023), so renders keep natural-image statistics.
Each returns an `ImageParam`: its learnable tensors and a function giving (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

# Square root of ImageNet's colour correlation (the constant lucid and lucent use).
COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
_COLOR_NORM = COLOR_CORRELATION_SQRT.norm(dim=0).max()


@dataclass
class ImageParam:
    params: list[torch.Tensor]
    image: Callable[[], torch.Tensor]


def decorrelate(x: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour channels (N, 3, H, W) to RGB logits."""
    matrix = (COLOR_CORRELATION_SQRT / _COLOR_NORM).to(x.device, x.dtype)
    return torch.einsum("nchw,dc->ndhw", x, matrix)


def frequencies(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Radial frequency of every rfft2 coefficient, shape (h, w // 2 + 1)."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def fft_image(
    n: int, size: tuple[int, int], gen: torch.Generator, *, sd: float = 0.01, decay_power: float = 1.0
) -> ImageParam:
    h, w = size
    device = gen.device
    freqs = frequencies(h, w, device)
    # lucid scales by sqrt(h*w) and inverts without normalisation; with norm="ortho" that factor
    # is already accounted for, so the spectrum is scaled by 1/f alone.
    scale = (1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power)[None, None]
    spectrum = (torch.randn(n, 3, h, w // 2 + 1, 2, generator=gen, device=device) * sd).requires_grad_(True)

    def image() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        x = torch.fft.irfft2(coeffs, s=(h, w), norm="ortho") / 4.0
        return torch.sigmoid(decorrelate(x))

    return ImageParam([spectrum], image)


def pixel_image(n: int, size: tuple[int, int], gen: torch.Generator, *, sd: float = 0.01) -> ImageParam:
    pixels = (torch.randn(n, 3, *size, generator=gen, device=gen.device) * sd).requires_grad_(True)
    return ImageParam([pixels], lambda: torch.sigmoid(decorrelate(pixels)))


def natural_amplitude(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean Fourier amplitude (3, H, W//2+1) of real images (N, 3, h, w) in [0, 1], for `maco`."""
    resized = torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
    return torch.fft.rfft2(resized - resized.mean((2, 3), keepdim=True), norm="ortho").abs().mean(0)


def maco_image(
    n: int, size: tuple[int, int], gen: torch.Generator, *, amplitude: torch.Tensor | None = None
) -> ImageParam:
    """Phase-only parameterisation; `amplitude` defaults to a 1/f natural-image spectrum."""
    h, w = size
    device = gen.device
    if amplitude is None:
        freqs = frequencies(h, w, device)
        amplitude = (1.0 / torch.clamp(freqs, min=1.0 / max(h, w)))[None].expand(3, -1, -1)
    amplitude = amplitude.to(device)[None]
    phase = (torch.rand(n, 3, h, w // 2 + 1, generator=gen, device=device) * 2 * math.pi - math.pi)
    phase.requires_grad_(True)

    def image() -> torch.Tensor:
        x = torch.fft.irfft2(amplitude * torch.exp(1j * phase), s=(h, w), norm="ortho")
        x = x / (x.std((1, 2, 3), keepdim=True) + 1e-6)  # the DC phase still sets the mean colour
        return torch.sigmoid(decorrelate(x))

    return ImageParam([phase], image)


PARAMETERISATIONS: dict[str, Callable[..., ImageParam]] = {
    "fft": fft_image,
    "pixel": pixel_image,
    "maco": maco_image,
}


def make_param(kind: str, n: int, size: tuple[int, int], gen: torch.Generator, **options) -> ImageParam:
    try:
        factory = PARAMETERISATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}") from None
    return factory(n, size, gen, **options)
