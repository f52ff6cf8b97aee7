"""Build the image sample that ships inside the package (vizneuron/samples/cifar10): the first
30 CIFAR-10 *test* images of each class, copied byte for byte from a CIFAR-10 JPEG folder.

    python scripts/make_sample.py --data ../shared/data/cifar10/test

The bundled default model never saw these images (it was trained on the training split), so the
app and the quick start can show dataset examples and a probe verdict on a fresh machine.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

PER_CLASS = 30
OUT = Path(__file__).resolve().parents[1] / "vizneuron" / "samples" / "cifar10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 test split as class folders of NNNN.jpg")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    total = 0
    for folder in sorted(p for p in Path(args.data).iterdir() if p.is_dir()):
        (OUT / folder.name).mkdir(parents=True)
        for image in sorted(folder.glob("*.jpg"))[: args.per_class]:
            shutil.copyfile(image, OUT / folder.name / image.name)
            total += image.stat().st_size
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
