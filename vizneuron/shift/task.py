"""The SHIFT benchmark task: CIFAR-10 cat vs dog with a spurious cue the classifier should ignore.

The cue is a faint diagonal stripe texture (period 4 px, +-8 grey levels) laid over the whole
image. It is chosen because (a) a small CNN picks up a regular high-frequency texture far more
easily than the cat/dog difference, so a training split where it follows the label 95 % of the
time teaches a biased classifier; (b) it covers every pixel, so it cannot be cropped away, and it
survives the random crops and flips of training; (c) it is invisible at a glance and orthogonal to
natural image content, so the class evidence left in an image is unchanged; (d) where it is known
it can be undone exactly (`remove_cue`), which gives the pixel-level baseline. Images are written
as PNG (JPEG would smear the texture).

Splits (`build_cue_task`), each `SPLIT/{cat,dog}/{cue,plain}-NNNNN.png` so an image's group is
in its name:
    train-biased    4,350 cats (95 % with the cue) and 4,350 dogs (5 % with the cue)
    train-balanced  the same images, the cue on half of each class (the oracle's training data)
    val-balanced    400 other training images per class, the cue on half of each: where SHIFT's
                    settings are chosen, so the test split is scored once
    test-balanced   CIFAR-10's 1,000 test cats and 1,000 test dogs, the cue on half of each class
    test-cuefree    the same test images, no cue
    concepts        cue/ (cue on, both classes), cat/ and dog/ (no cue): 250 held-out training
                    images each, the concept sets a person would assemble to judge features
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import VizneuronError
from ..imageio import image_files, read_rgb
from ..samples import SAMPLE_DIR

CLASSES = ("cat", "dog")
CONCEPTS = ("cue", *CLASSES)  # the concept sets under every task folder's concepts/
BIASED_MODEL, CUE_LAYER = "default:cue-biased", "layer3"  # the bundled model that learned the cue; its SAE's layer


def task_concepts(task: str | Path) -> dict[str, Path]:
    """A task folder's concept sets by name, as `shift.rank` and `vizneuron shift --concept` take them."""
    return {name: Path(task) / "concepts" / name for name in CONCEPTS}
CUE_LEVEL = 8  # grey levels added or subtracted by the stripes
CORRELATION = 0.95  # share of training images whose cue agrees with the label (cue <-> cat)
HELD_OUT = 250  # training images per class kept back for the concept sets
VALIDATION = 400  # training images per class kept back, before those, to choose settings on
SPLITS = ("train-biased", "train-balanced", "val-balanced", "test-balanced", "test-cuefree", "concepts")


class TaskError(VizneuronError):
    """The CIFAR-10 folders are missing or the task folder cannot be built."""


def cue_pattern(height: int = 32, width: int = 32) -> np.ndarray:
    """The cue: +-CUE_LEVEL diagonal stripes, 2 px on, 2 px off, as int16 (H, W, 1)."""
    rows, cols = np.indices((height, width))
    return np.where((rows + cols) % 4 < 2, CUE_LEVEL, -CUE_LEVEL).astype(np.int16)[..., None]


def add_cue(rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image with the stripes laid over it (clipped to 0-255)."""
    return np.clip(rgb.astype(np.int16) + cue_pattern(*rgb.shape[:2]), 0, 255).astype(np.uint8)


def remove_cue(rgb: np.ndarray) -> np.ndarray:
    """Undo `add_cue` (exact except where the stripes were clipped): the pixel-level baseline."""
    return np.clip(rgb.astype(np.int16) - cue_pattern(*rgb.shape[:2]), 0, 255).astype(np.uint8)


def has_cue(path: str | Path) -> bool:
    """Whether a task image carries the cue, from its name (`cue-NNNNN.png`)."""
    return Path(path).name.startswith("cue-")


def cue_flags(count: int, rate: float, gen: torch.Generator) -> np.ndarray:
    """Exactly round(rate * count) of `count` images get the cue, which ones drawn from `gen`."""
    flags = np.zeros(count, dtype=bool)
    flags[torch.randperm(count, generator=gen)[: round(rate * count)].numpy()] = True
    return flags


def _class_images(folder: Path, name: str) -> list[Path]:
    files = image_files(folder / name)
    if not files:
        raise TaskError(f"no images in {folder / name}: point --cifar at the CIFAR-10 JPEG folders "
                        "(train/ and test/ with one folder per class)")
    return files


def _write(folder: Path, files: list[Path], cue: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (path, flag) in enumerate(zip(files, cue)):
        rgb, _ = read_rgb(path)
        Image.fromarray(add_cue(rgb) if flag else rgb).save(folder / f"{'cue' if flag else 'plain'}-{i:05d}.png")


def build_cue_task(cifar: str | Path, out: str | Path, seed: int = 0, limit: int | None = None) -> Path:
    """Write the task's splits under `out` from CIFAR-10 JPEG folders (`cifar/train`, `cifar/test`).
    Reproducible from `seed`; `limit` keeps at most that many training and test images per class
    (quick checks). A folder already built with the same settings is reused."""
    cifar, out = Path(cifar), Path(out)
    settings = {"seed": seed, "cue_level": CUE_LEVEL, "correlation": CORRELATION, "held_out": HELD_OUT,
                "validation": VALIDATION, "limit": limit, "source": str(cifar.resolve())}
    manifest = out / "task.json"
    if manifest.exists() and json.loads(manifest.read_text()) == settings:
        return out
    manifest.unlink(missing_ok=True)  # a half-rebuilt folder is never taken for a finished one
    for split in (*SPLITS, "test-uncued"):  # built with other settings: no file of theirs may stay
        shutil.rmtree(out / split, ignore_errors=True)
    gen = torch.Generator().manual_seed(seed)
    val_gen = torch.Generator().manual_seed(seed + 1)  # its own draws: the other splits' flags do not depend on it
    for name in CLASSES:
        train = _class_images(cifar / "train", name)
        kept, held = train[: -HELD_OUT - VALIDATION][:limit], train[-HELD_OUT:]
        val = train[-HELD_OUT - VALIDATION: -HELD_OUT][:limit]
        rate = CORRELATION if name == "cat" else 1 - CORRELATION
        _write(out / "train-biased" / name, kept, cue_flags(len(kept), rate, gen))
        _write(out / "train-balanced" / name, kept, cue_flags(len(kept), 0.5, gen))
        _write(out / "val-balanced" / name, val, cue_flags(len(val), 0.5, val_gen))
        test = _class_images(cifar / "test", name)[:limit]
        _write(out / "test-balanced" / name, test, cue_flags(len(test), 0.5, gen))
        _write(out / "test-cuefree" / name, test, np.zeros(len(test), dtype=bool))
        _write(out / "concepts" / name, held, np.zeros(len(held), dtype=bool))
        _write(out / "concepts" / "cue" / name, held, np.ones(len(held), dtype=bool))
    manifest.write_text(json.dumps(settings, indent=1) + "\n")
    return out


SAMPLE_CONCEPT, SAMPLE_TRAIN = 10, 10  # per class, from the bundled sample's 30: the rest is the test split


def build_sample_cue_task(out: str | Path) -> Path:
    """The cue task in miniature, from the bundled sample's 30 cats and 30 dogs (CIFAR-10 test
    images: none of them trained the cue models), so the Edit view can show SHIFT in seconds,
    offline. Per class, in file order: 10 images for the concept sets (plain, and with the cue),
    10 biased training images (the cue on 95 % of cats and 5 % of dogs, rounded up: every cat and one dog)
    and 10 test images, each written twice, with and without the cue (10 images per group). It
    demonstrates the workflow; 10 images a group measure nothing finely (the full task does)."""
    out = Path(out)
    settings = {"sample": str(SAMPLE_DIR), "cue_level": CUE_LEVEL, "correlation": CORRELATION,
                "concept": SAMPLE_CONCEPT, "train": SAMPLE_TRAIN}
    manifest = out / "task.json"
    if manifest.exists() and json.loads(manifest.read_text()) == settings:
        return out
    manifest.unlink(missing_ok=True)
    for split in ("train-biased", "test-balanced", "concepts"):
        shutil.rmtree(out / split, ignore_errors=True)
    gen = torch.Generator().manual_seed(0)
    for name in CLASSES:
        files = _class_images(SAMPLE_DIR, name)
        concept, train = files[:SAMPLE_CONCEPT], files[SAMPLE_CONCEPT:SAMPLE_CONCEPT + SAMPLE_TRAIN]
        test = files[SAMPLE_CONCEPT + SAMPLE_TRAIN:]
        rate = CORRELATION if name == "cat" else 1 - CORRELATION
        _write(out / "train-biased" / name, train, cue_flags(len(train), rate, gen))
        for flag in (True, False):
            _write(out / "test-balanced" / name, test, np.full(len(test), flag))
        _write(out / "concepts" / name, concept, np.zeros(len(concept), dtype=bool))
        _write(out / "concepts" / "cue" / name, concept, np.ones(len(concept), dtype=bool))
    manifest.write_text(json.dumps(settings, indent=1) + "\n")
    return out


def undo_cue(folder: str | Path, out: str | Path) -> Path:
    """A copy of a task split with the cue taken out of every `cue-` image (names kept): the
    pixel-level baseline, possible only where the cue is known."""
    folder, out = Path(folder), Path(out)
    for path in image_files(folder):
        target = out / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb, _ = read_rgb(path)
        Image.fromarray(remove_cue(rgb) if has_cue(path) else rgb).save(target)
    return out
