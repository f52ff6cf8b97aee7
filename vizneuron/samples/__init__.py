"""The image sample that ships inside the package: 300 CIFAR-10 test images in class folders
(see PROVENANCE.md), so a fresh install shows dataset examples without any data of the user's."""

from __future__ import annotations

from pathlib import Path

#: what `--index sample` (CLI) and the app's first start mine
SAMPLE_NAME = "sample"
SAMPLE_DIR = Path(__file__).resolve().parent / "cifar10"
SAMPLE_K = 16  # top and bottom examples kept per unit: 300 images, so about 5% each
SAMPLE_CLASSES = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_dir())  # its class folders
