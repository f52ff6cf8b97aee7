"""Miner throughput and memory: mining every channel of a layer vs plain inference up to that layer.

Both loops read the same CIFAR-10 test images (decoded once, held in memory, so JPEG decoding does
not hide the miner's own cost), at the same batch size, taking turns; the plain loop is a forward
pass truncated at the layer with nothing kept. The miner's figure is its streaming pass (the one-off
crop/heatmap pass over the kept examples is reported separately). Peak memory is measured in fresh
processes mining 1,000 and 10,000 images from the JPEG folder.

    python bench/bench_mine.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from common import SHARED, save_results
from PIL import Image

from vizneuron import capture, load_model, mine

WORKLOADS = [("default", "layer3"), ("default", "layer2"), ("resnet20", "layer3")]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def model_for(name: str):
    if name == "default":
        return load_model("default")
    return load_model(f"cifar-resnet:{next((SHARED / 'models' / 'cifar-resnet').glob('resnet20-*.th'))}")


class InMemory(torch.utils.data.Dataset):
    """CIFAR-10 test images as uint8 HWC arrays, as a torchvision dataset would hand them over."""

    classes = CLASSES

    def __init__(self, n: int) -> None:
        root = SHARED / "data" / "cifar10" / "test"
        files = sorted(root.rglob("*.jpg"))[:n]
        self.images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        self.targets = [CLASSES.index(f.parent.name) for f in files]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


def plain(model, layer: str, data: InMemory, batch: int) -> float:
    """Images per second of a forward pass that stops at `layer` (same input pipeline as the miner)."""
    from vizneuron.imageio import to_model_input

    start = time.perf_counter()
    with capture(model, [layer]) as cap, torch.no_grad():
        for i in range(0, len(data), batch):
            images = torch.stack([to_model_input(data[j][0], model.input_size)
                                  for j in range(i, min(i + batch, len(data)))])
            cap.run(images)
    return len(data) / (time.perf_counter() - start)


def mined(model, layer: str, data: InMemory, batch: int) -> tuple[float, float]:
    index = mine(model, layer, data, k=32, batch_size=batch, progress=False)
    timing = index.meta["timing"]
    return timing["stream_images"] / timing["stream_seconds"], timing["finalise_seconds"]


PEAK = """
import resource, sys
from vizneuron import load_model, mine
mine(load_model("default"), "layer2,layer3", sys.argv[1], k=32, batch_size=256, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_memory(n: int, tmp: str) -> float:
    files = sorted((SHARED / "data" / "cifar10" / "test").rglob("*.jpg"))[:n]
    listing = f"{tmp}/list_{n}.txt"
    with open(listing, "w") as f:
        f.write("\n".join(map(str, files)))
    out = subprocess.run([sys.executable, "-c", PEAK, listing], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = InMemory(args.images)
    rows = []
    for name, layer in WORKLOADS:
        model = model_for(name)
        channels = model.layer(layer).channels
        plains, mines, finals = [], [], []
        for _ in range(args.repeats):  # taking turns, so background load hits both alike
            plains.append(plain(model, layer, data, args.batch))
            speed, final = mined(model, layer, data, args.batch)
            mines.append(speed)
            finals.append(final)
        rows.append({"model": name, "layer": layer, "channels": channels, "plain_images_per_s": plains,
                     "mining_images_per_s": mines, "finalise_s": finals})
        print(name, layer, statistics.median(plains), statistics.median(mines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        memory = [{"images": n, "peak_rss_mib": peak_memory(n, tmp)} for n in (1000, 10000)]
    save_results("mine", {"images": args.images, "batch": args.batch, "k": 32, "rows": rows, "memory": memory}, args)

if __name__ == "__main__":
    main()
