"""Write a labelled list of ../shared/data/imagenet-sample for `--data` / `--eval-data`.

    python scripts/imagenet_sample_list.py out/imagenet_sample.txt

The folder is flat, one image per ILSVRC class, and its sorted order is the class index; each line
is "PATH<TAB>INDEX", which vizneuron's list sources read as the image's class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vizneuron.imageio import image_files

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample"


def write_list(out: Path) -> Path:
    files = image_files(ROOT)
    if len(files) != 1000:
        sys.exit(f"expected 1,000 images in {ROOT}, found {len(files)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{path}\t{index}\n" for index, path in enumerate(files)))
    return out


def main() -> None:
    print(f"wrote {write_list(Path(sys.argv[1] if len(sys.argv) > 1 else 'out/imagenet_sample.txt'))}")


if __name__ == "__main__":
    main()
