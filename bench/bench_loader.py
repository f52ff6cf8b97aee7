"""Mining against the loop a user would write, by decoding workers: what `workers="auto"` chooses.

    python bench/bench_loader.py [resnet18] [bundled] [decoders] [--rounds 3] [--threads 2]

- resnet18: torchvision ResNet-18 (random init: speed does not depend on the weights) at 224 px over
  480 ImageNet-sized JPEGs (256 px, made once from CIFAR-10 training images, `common.imagenet_sized`),
  every one of the 512 channels of `layer4`, k 16;
- bundled: the bundled model's layer2 and layer3 over 2,000 CIFAR-10 test JPEGs (32 px), k 16;
- decoders: PIL (what vizneuron reads with) against `torchvision.io.decode_jpeg` on the CPU, one
  thread, over the 1,000 photos of the ImageNet sample (../shared): how many decode to identical
  pixels, and the time of each, interleaved, median of the rounds.

Per workload, `vz.mine` with 0, 1 and 2 decoding workers and "auto", against the plain loop
(torchvision `ImageFolder` + `DataLoader` with the same workers, the model's own centre crop and
normalisation, forward through the model's children up to the layer) with 0, 1 and 2 workers. Every
setting runs once per round, the order rotating from round to round, after one warm-up run each;
the median of the rounds is kept. Mining's figures: images/s of the streaming pass (the index's
own timing) and of the whole job (crops, heatmaps and thumbnails included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from common import imagenet_sized, plain_loop, save_results, shared
from PIL import Image

import vizneuron as vz
from vizneuron.imageio import image_files
from vizneuron.stream import decode_workers

WORKERS = (0, 1, 2)


def cifar_subset(count: int) -> Path:
    """A list file of the first count / 10 CIFAR-10 test images of each class."""
    test = shared("data", "cifar10", "test")
    per_class = count // 10
    files = [p for c in sorted(test.iterdir()) for p in sorted(c.iterdir())[:per_class]]
    listing = Path(__file__).resolve().parents[1] / "out" / f"cifar-test-{count}.txt"
    listing.parent.mkdir(exist_ok=True)
    listing.write_text("".join(f"{p}\t{p.parent.name}\n" for p in files))
    return listing


WORKLOADS = {
    "resnet18": lambda: (vz.load_model("torchvision:resnet18?weights=none"), "layer4", imagenet_sized(480)),
    "bundled": lambda: (vz.load_model("default"), "layer2,layer3", cifar_subset(2000)),
}


def decoders(rounds: int) -> dict:
    """PIL against torchvision's libjpeg decoder on the CPU, one thread: identical pixels, speed."""
    files = sorted(shared("data", "imagenet-sample").glob("*.JPEG"))
    def pil(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    def tv(path: Path) -> np.ndarray:
        return torchvision.io.decode_jpeg(torchvision.io.read_file(str(path)),
                                          mode=torchvision.io.ImageReadMode.RGB).permute(1, 2, 0).numpy()

    identical = sum(np.array_equal(pil(p), tv(p)) for p in files)
    seconds: dict[str, list[float]] = {"PIL": [], "torchvision.io.decode_jpeg": []}
    for _ in range(rounds):
        for name, decode in (("PIL", pil), ("torchvision.io.decode_jpeg", tv)):
            started = time.perf_counter()
            for path in files:
                decode(path)
            seconds[name].append(time.perf_counter() - started)
    return {"images": len(files), "identical": identical, "seconds": seconds,
            "median_s": {name: statistics.median(times) for name, times in seconds.items()}}


def mined(model: vz.Model, layers: str, data: Path, workers: int | str) -> dict[str, float]:
    started = time.perf_counter()
    index = vz.mine(model, layers, data, k=16, workers=workers, progress=False)
    whole = time.perf_counter() - started
    timing, images = index.meta["timing"], index.summary()["mined"]
    return {"stream": images / timing["stream_seconds"], "whole": images / whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", help="resnet18, bundled, decoders (default: all of them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    unknown = set(args.workloads) - {*WORKLOADS, "decoders"}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}: choose from resnet18, bundled, decoders")
    torch.set_num_threads(args.threads)
    for name in args.workloads or [*WORKLOADS, "decoders"]:
        if name == "decoders":
            torch.set_num_threads(1)
            save_results("loader_decoders", decoders(args.rounds), args)
            torch.set_num_threads(args.threads)
            continue
        model, layers, data = WORKLOADS[name]()
        images = len(image_files(data)) if data.is_dir() else len(data.read_text().splitlines())
        settings = [("vizneuron", w) for w in (*WORKERS, "auto")] + [("plain loop", w) for w in WORKERS]
        runs: dict[tuple[str, int | str], list] = {s: [] for s in settings}
        for round_number in range(args.rounds + 1):  # round 0 warms every setting up and is dropped
            shift = round_number % len(settings)
            for setting in settings[shift:] + settings[:shift]:
                tool, workers = setting
                result = mined(model, layers, data, workers) if tool == "vizneuron" else {
                    "stream": plain_loop(model, layers, data, workers)}
                if round_number:
                    runs[setting].append(result)
                print(name, round_number, tool, workers, {k: round(v, 1) for k, v in result.items()}, flush=True)
        best_plain = max(statistics.median(r["stream"] for r in runs[("plain loop", w)]) for w in WORKERS)
        rows = []
        for (tool, workers), results in runs.items():
            row = {"tool": tool, "workers": workers, "images_per_s": statistics.median(r["stream"] for r in results),
                   "rounds": results}
            if tool == "vizneuron":
                row["whole_images_per_s"] = statistics.median(r["whole"] for r in results)
                row["whole_vs_best_plain"] = row["whole_images_per_s"] / best_plain
            row["vs_best_plain"] = row["images_per_s"] / best_plain
            rows.append(row)
        auto = decode_workers("auto", torch.device("cpu"), 100)
        save_results("loader", {"workload": name, "model": model.name, "layers": layers, "images": images, "k": 16,
                                "auto_workers": auto, "rows": rows}, args, part=name)


if __name__ == "__main__":
    main()
