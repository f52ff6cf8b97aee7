"""Image parameterisations: what the optimiser actually changes.

- `fft`:   lucid-style spectrum with 1/f scaling and decorrelated colour (the default);
- `pixel`: raw pixels through the same colour decorrelation;
- `maco`:  only the Fourier phase is optimised, the amplitude is fixed to a natural-image
           spectrum (Fel et al. 2023), so renders keep natural-image statistics.
Each returns an `ImageParam`: its learnable tensors and a function giving (N, 3, H, W) in [0, 1].
Given `init` images, each starts there instead of at noise (feature accentuation: fft and pixel
reproduce the image exactly, maco keeps its phase only) and remembers that point as `origin`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..choices import PARAMETERISATIONS
from ..errors import VizneuronError

# Square root of ImageNet's colour correlation (the constant lucid and lucent use).
COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)
_COLOR_NORM = COLOR_CORRELATION_SQRT.norm(dim=0).max()


SEED_EPS = 1e-3  # seed pixels are clamped to [eps, 1 - eps] so the sigmoid can reach them


@dataclass
class ImageParam:
    params: list[torch.Tensor]
    image: Callable[[], torch.Tensor]
    origin: list[torch.Tensor] | None = None  # the params at the seed image, when started from one
    origin_norm2: torch.Tensor | None = field(init=False, default=None)  # (N,) the seed's squared norm

    def __post_init__(self) -> None:
        if self.origin is not None:  # fixed for the whole run: computed once, not at every step
            self.origin_norm2 = sum(o.pow(2).flatten(1).sum(1) for o in self.origin)

    def drift(self) -> torch.Tensor:
        """(N,) squared distance of each image's params from where its seed put them, relative to
        the seed's own squared norm (0 at the start; about 1 for an image as far away as the seed
        is from zero). Zeros without a seed."""
        if self.origin is None:
            return torch.zeros(len(self.params[0]), device=self.params[0].device)
        moved = sum((p - o).pow(2).flatten(1).sum(1) for p, o in zip(self.params, self.origin))
        return moved / self.origin_norm2.clamp(min=1e-12)


def decorrelate(x: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour channels (N, 3, H, W) to RGB logits."""
    matrix = (COLOR_CORRELATION_SQRT / _COLOR_NORM).to(x.device, x.dtype)
    return torch.einsum("nchw,dc->ndhw", x, matrix)


def undecorrelate(images: torch.Tensor) -> torch.Tensor:
    """The inverse of `sigmoid(decorrelate(.))`: images (N, 3, H, W) in [0, 1] -> decorrelated
    colour channels."""
    logits = torch.logit(images.float().clamp(SEED_EPS, 1 - SEED_EPS))
    inverse = torch.linalg.inv(COLOR_CORRELATION_SQRT / _COLOR_NORM).to(images.device)
    return torch.einsum("ndhw,cd->nchw", logits, inverse)


def _start(init: torch.Tensor | None, n: int, size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """`init` as (n, 3, H, W) on `device`, checked; None stays None."""
    if init is None:
        return None
    if init.dim() == 3:
        init = init[None]
    if tuple(init.shape[1:]) != (3, *size) or len(init) not in (1, n):
        raise VizneuronError(f"seed images must be (3, {size[0]}, {size[1]}) or ({n}, 3, {size[0]}, {size[1]}), "
                         f"not {tuple(init.shape)}")
    return init.to(device).expand(n, -1, -1, -1)


def frequencies(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Radial frequency of every rfft2 coefficient, shape (h, w // 2 + 1)."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def fft_image(
    n: int, size: tuple[int, int], gen: torch.Generator, *, sd: float = 0.01, decay_power: float = 1.0,
    init: torch.Tensor | None = None,
) -> ImageParam:
    h, w = size
    device = gen.device
    freqs = frequencies(h, w, device)
    # lucid scales by sqrt(h*w) and inverts without normalisation; with norm="ortho" that factor
    # is already accounted for, so the spectrum is scaled by 1/f alone.
    scale = (1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power)[None, None]
    start = _start(init, n, size, device)
    if start is None:
        spectrum = torch.randn(n, 3, h, w // 2 + 1, 2, generator=gen, device=device) * sd
    else:
        spectrum = torch.view_as_real(torch.fft.rfft2(undecorrelate(start) * 4.0, norm="ortho") / scale).contiguous()
    origin = None if start is None else [spectrum.clone()]
    spectrum.requires_grad_(True)

    def image() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        x = torch.fft.irfft2(coeffs, s=(h, w), norm="ortho") / 4.0
        return torch.sigmoid(decorrelate(x))

    return ImageParam([spectrum], image, origin)


def pixel_image(n: int, size: tuple[int, int], gen: torch.Generator, *, sd: float = 0.01,
                init: torch.Tensor | None = None) -> ImageParam:
    start = _start(init, n, size, gen.device)
    pixels = torch.randn(n, 3, *size, generator=gen, device=gen.device) * sd if start is None else undecorrelate(start)
    origin = None if start is None else [pixels.clone()]
    pixels.requires_grad_(True)
    return ImageParam([pixels], lambda: torch.sigmoid(decorrelate(pixels)), origin)


def natural_amplitude(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mean Fourier amplitude (3, H, W//2+1) of real images (N, 3, h, w) in [0, 1], for `maco`."""
    resized = torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
    return torch.fft.rfft2(resized - resized.mean((2, 3), keepdim=True), norm="ortho").abs().mean(0)


def maco_image(
    n: int, size: tuple[int, int], gen: torch.Generator, *, amplitude: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
) -> ImageParam:
    """Phase-only parameterisation; `amplitude` defaults to a 1/f natural-image spectrum. From a
    seed image it starts at the seed's phase (with the fixed amplitude: an approximation of it)."""
    h, w = size
    device = gen.device
    if amplitude is None:
        freqs = frequencies(h, w, device)
        amplitude = (1.0 / torch.clamp(freqs, min=1.0 / max(h, w)))[None].expand(3, -1, -1)
    amplitude = amplitude.to(device)[None]
    start = _start(init, n, size, device)
    if start is None:
        phase = torch.rand(n, 3, h, w // 2 + 1, generator=gen, device=device) * 2 * math.pi - math.pi
    else:
        phase = torch.fft.rfft2(undecorrelate(start), norm="ortho").angle()
    origin = None if start is None else [phase.clone()]
    phase.requires_grad_(True)

    def image() -> torch.Tensor:
        x = torch.fft.irfft2(amplitude * torch.exp(1j * phase), s=(h, w), norm="ortho")
        x = x / (x.std((1, 2, 3), keepdim=True) + 1e-6)  # the DC phase still sets the mean colour
        return torch.sigmoid(decorrelate(x))

    return ImageParam([phase], image, origin)


#: one factory per name in `choices.PARAMETERISATIONS`
FACTORIES: dict[str, Callable[..., ImageParam]] = dict(zip(PARAMETERISATIONS, (fft_image, pixel_image, maco_image)))


def make_param(kind: str, n: int, size: tuple[int, int], gen: torch.Generator, init: torch.Tensor | None = None,
               **options) -> ImageParam:
    """`n` images of `size` in parameterisation `kind`, from noise drawn with `gen`, or from `init`."""
    try:
        factory = FACTORIES[kind]
    except KeyError:
        raise VizneuronError(f"unknown parameterisation {kind!r}; choose from {', '.join(PARAMETERISATIONS)}") from None
    return factory(n, size, gen, init=init, **options)
