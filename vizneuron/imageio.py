"""Image and file I/O, below everything else: reading real images the way a model expects them
(RGB in [0, 1], centre crop, resize), and writing pictures and files atomically.

Corrupt or unreadable files are skipped and reported, never fatal: one bad JPEG must not sink a
run over thousands. Written files appear whole or not at all (a temporary file, then a rename).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import VizneuronError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass
class LoadedImages:
    images: torch.Tensor  # (N, 3, H, W) in [0, 1]
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, why)


class ImageSkipped(VizneuronError):
    """A file that cannot be used as an image; the message says why (for the run's report)."""


MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # decompression-bomb guard, as PIL's own default


def read_rgb(path: str | Path | io.BytesIO, max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
    """Decode any image file (or the bytes of one, e.g. a tar member) to 8-bit RGB (H, W, 3), and
    say what was converted on the way.

    Greyscale, palette, CMYK and 16-bit files are converted (RGBA is composited on white); empty,
    truncated, non-image and oversized files raise `ImageSkipped` with the reason.
    """
    if not isinstance(path, io.BytesIO):
        path = Path(path)
    if (path.getbuffer().nbytes if isinstance(path, io.BytesIO) else path.stat().st_size) == 0:
        raise ImageSkipped("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                pixels = im.width * im.height
                if max_pixels is not None and pixels > max_pixels:
                    raise ImageSkipped(f"too large: {im.width}x{im.height} = {pixels:,} pixels "
                                       f"(limit {max_pixels:,}; a decompression-bomb guard)")
                im.load()
                return pil_to_rgb(im)
    except ImageSkipped:
        raise
    except UnidentifiedImageError:
        raise ImageSkipped("not an image PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageSkipped(f"too large (decompression-bomb guard): {err}") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt data
        raise ImageSkipped(f"corrupt or truncated: {err}") from None


def pil_to_rgb(im: Image.Image) -> tuple[np.ndarray, str | None]:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8), None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit greyscale: scale, do not clip
        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), f"{mode} greyscale scaled to 8-bit RGB"
    if "A" in mode or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")), f"{mode}: alpha composited on white"
    return np.asarray(im.convert("RGB"), dtype=np.uint8), f"{mode} converted to RGB"


def to_model_input(rgb: np.ndarray, size: tuple[int, int], crop_fraction: float = 1.0) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, *size) in [0, 1]: centre crop of `crop_fraction` of the short side, then
    a bilinear, antialiased resize (ImageNet evaluation uses 0.875, e.g. 224 from 256)."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)  # own copy
    h, w = x.shape[1:]
    if crop_fraction < 1.0:
        side = round(min(h, w) * crop_fraction)
        top, left = (h - side) // 2, (w - side) // 2
        x = x[:, top : top + side, left : left + side]
    if tuple(x.shape[1:]) == tuple(size):
        return x.contiguous()
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)


def load_image(path: str | Path, size: tuple[int, int], crop_fraction: float = 1.0) -> torch.Tensor:
    """One image file as the model's input, (3, H, W) in [0, 1]."""
    return to_model_input(read_rgb(path)[0], size, crop_fraction)


def load_images(paths: Iterable[str | Path], size: tuple[int, int], crop_fraction: float = 1.0) -> LoadedImages:
    """Many images; files that fail to decode are listed in `.skipped` with the reason."""
    images, kept, skipped = [], [], []
    for path in map(Path, paths):
        try:
            images.append(load_image(path, size, crop_fraction))
            kept.append(path)
        except ImageSkipped as err:
            skipped.append((path, str(err)))
    stacked = torch.stack(images) if images else torch.empty(0, 3, *size)
    return LoadedImages(stacked, kept, skipped)


def image_files(folder: str | Path) -> list[Path]:
    """Image files below `folder`, sorted (so runs see the same order)."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> (3, H, W) float32 in [0, 1] (as torchvision's to_tensor)."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float().div(255)


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL image, optionally enlarged with nearest-neighbour pixels."""
    array = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(array)
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def enlarged(image: torch.Tensor, at_least: int = 128) -> Image.Image:
    """A render as a picture at least `at_least` pixels wide: small ones enlarged by whole pixels."""
    return to_pil(image, max(1, at_least // image.shape[-1]))


def heatmap_overlay(image: Image.Image, heat: np.ndarray) -> Image.Image:
    """The image darkened where the unit's map is low: where in the picture it fired."""
    peak = float(heat.max())
    weight = np.clip(heat / peak, 0, 1) if peak > 0 else np.zeros_like(heat)
    mask = Image.fromarray((weight * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
    return Image.composite(image, Image.new("RGB", image.size, "black"), mask.point(lambda v: 64 + v * 191 // 255))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    """Photographs (dataset examples) as JPEG: a few times smaller than PNG at no visible loss."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the permissions a plain `open()` would give a new file (mkstemp's temporary files are 0600)
FILE_MODE = 0o666 & ~_umask()


def writable_folder(path: str | Path) -> Path:
    """`path` as a folder this process can write into (made if missing), checked before a long job
    rather than after it; an OSError saying why otherwise."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: readers never see half a file,
    and a failed write (disk full, read-only) leaves the previous file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_tensor(image: Any, size: tuple[int, int]) -> torch.Tensor | None:
    """A seed image (file path, PIL image, or (3, h, w) tensor in [0, 1]) as (3, H, W) at `size`."""
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        try:
            rgb, _ = read_rgb(image)
        except ImageSkipped as err:
            raise VizneuronError(f"seed image {image}: {err}") from None
        return to_model_input(rgb, size)
    if isinstance(image, Image.Image):
        return to_model_input(pil_to_rgb(image)[0], size)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise VizneuronError("seed_image must be an image file, a PIL image or a (3, H, W) tensor in [0, 1]")
    image = image.detach().float().cpu()
    if tuple(image.shape[1:]) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return image.clamp(0, 1).contiguous()
