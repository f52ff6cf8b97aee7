"""Reading real images the way a model expects them: RGB in [0, 1], centre crop, resize.

Corrupt or unreadable files are skipped and reported, never fatal: one bad JPEG must not sink a
run over thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class LoadedImages:
    images: torch.Tensor  # (N, 3, H, W) in [0, 1]
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)


def load_image(path: str | Path, size: tuple[int, int], crop_fraction: float = 1.0) -> torch.Tensor:
    """One image as (3, H, W) in [0, 1]: centre crop of `crop_fraction` of the short side, then a
    bilinear resize to `size` (ImageNet evaluation uses 0.875, e.g. 224 from 256)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255)
    h, w = x.shape[1:]
    side = min(h, w) * crop_fraction
    ch, cw = (round(side), round(side)) if crop_fraction < 1.0 else (h, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    x = x[:, top : top + ch, left : left + cw]
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)


def load_images(paths: Iterable[str | Path], size: tuple[int, int], crop_fraction: float = 1.0) -> LoadedImages:
    """Many images; files that fail to decode are listed in `.skipped` with the reason."""
    images, kept, skipped = [], [], []
    for path in map(Path, paths):
        try:
            images.append(load_image(path, size, crop_fraction))
            kept.append(path)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            skipped.append((path, f"{type(err).__name__}: {err}"))
    stacked = torch.stack(images) if images else torch.empty(0, 3, *size)
    return LoadedImages(stacked, kept, skipped)


def image_files(folder: str | Path) -> list[Path]:
    """Image files below `folder`, sorted (so runs see the same order)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
