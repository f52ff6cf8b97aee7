"""The image sample that ships inside the package: 300 CIFAR-10 test images in class folders
(see PROVENANCE.md), so a fresh install shows dataset examples without any data of the user's."""

from __future__ import annotations

from pathlib import Path

#: what `--index sample` (CLI) and the app's first start mine
SAMPLE_NAME = "sample"
SAMPLE_DIR = Path(__file__).resolve().parent / "cifar10"
SAMPLE_K = 16  # top and bottom examples kept per unit: 300 images, so about 5% each
SAMPLE_CLASSES = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir())  # its class folders
SAMPLE_SIDE = 32  # its images' side in pixels


def sample_misfit(input_size: tuple[int, int], labels: tuple[str, ...] | None) -> str | None:
    """Why the bundled sample says little about a model, or None when it fits: its 32 px images
    are upsampled for a larger input, or none of its ten classes is among the model's."""
    reasons = []
    if max(input_size) > 2 * SAMPLE_SIDE:
        reasons.append(f"its {SAMPLE_SIDE} px images are upsampled to this model's {input_size[0]}x{input_size[1]}")
    if labels is not None and not set(SAMPLE_CLASSES) & {label.lower() for label in labels}:
        reasons.append("none of its ten CIFAR-10 classes is one of this model's")
    if not reasons:
        return None
    return ("These examples come from the bundled sample (300 CIFAR-10 images): " + " and ".join(reasons)
            + ", so they say little about what drives this model's units. Mine a folder of images like the "
              "model's own (the Data view, or `vizneuron mine --data DIR`).")
