"""What a whole-model site costs: wall time per stage (mine, probe, render, circuit, pages), its size
on disk and its largest page, for a first build and for a rerun with nothing changed.

    python bench/site.py [bundled] [mobilenet] [--threads 2]

- bundled: the bundled model's layer1, layer2 and layer3 over the bundled 300-image sample;
- mobilenet: MobileNet-v2 (Coral, ../shared) `expanded_conv_11_project` and
  `expanded_conv_12_project` (96 channels each, 14x14, one block apart so the circuit between them is
  direct) over the ImageNet sample (one image per class, labelled by its list file).
Every part uses the site's defaults (two diverse renders per unit, 16 examples).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from common import coral, imagenet_list, save_results

from vizneuron import load_model, site
from vizneuron.samples import SAMPLE_DIR

SITES = {
    "bundled": lambda: (load_model("default"), "layer1,layer2,layer3", SAMPLE_DIR),
    "mobilenet": lambda: (load_model(coral("mobilenet_v2_1.0_224_quant")),
                          "expanded_conv_11_project,expanded_conv_12_project", imagenet_list()),
}


def size(folder: Path) -> tuple[int, int, int]:
    """Bytes of the site (its cache left out), of its largest HTML page, and its file count."""
    files = [p for p in folder.rglob("*") if p.is_file() and "cache" not in p.relative_to(folder).parts]
    return (sum(p.stat().st_size for p in files), max(p.stat().st_size for p in files if p.suffix == ".html"),
            len(files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="*", help="bundled, mobilenet (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if set(args.sites) - set(SITES):
        parser.error(f"unknown sites {sorted(set(args.sites) - set(SITES))}: choose from {', '.join(SITES)}")
    torch.set_num_threads(args.threads)
    for name in args.sites or ["bundled"]:
        model, layers, data = SITES[name]()
        folder = Path(tempfile.mkdtemp(prefix="site-"))
        try:
            runs = {}
            for run in ("first build", "rerun, nothing changed"):
                started = time.perf_counter()
                built = site(model, layers, data, out=folder, progress=False)
                runs[run] = {"seconds": time.perf_counter() - started, "stages": built.seconds, "work": built.work}
                print(name, run, f"{runs[run]['seconds']:.1f} s", built.seconds, built.work, flush=True)
            total, largest, files = size(folder)
            save_results("site", {"site": name, "model": model.name, "layers": built.layers, "units": built.units,
                                  "pages": built.pages, "bytes": total, "largest_page_bytes": largest, "files": files,
                                  "runs": runs}, args, part=name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
