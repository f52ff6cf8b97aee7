"""One prepared GPU benchmark: renders, mining and SAE training, each against its own anchor in the
same run, with the peak GPU memory of each part.

    python bench/gpu_suite.py --out bench/results/gpu.json            # on a CUDA machine, < 8 min on an H100
    python bench/gpu_suite.py --device cpu --tiny --out /tmp/gpu.json  # the same code, small, < 2 min on 2 cores

It reads nothing from outside the repository (no ../shared, no downloads): every model is a
random init (speed does not depend on the weights) and the images are generated JPEGs of 256 px
(smooth random fields with fine noise, so a file is about as large as a photo's), written once into
out/gpu-images (git-ignored).

- renders: lucent's InceptionV1, every channel of `mixed4e` with vizneuron's defaults, against
  lucent's own `render_vis` on a few of its units (per unit, 512 steps, its defaults);
- mining: ResNet-50, every channel of `layer4` (k 32) with the default workers, against the loop a
  user writes (ImageFolder-style reading + DataLoader with the workers that were best for it +
  forward to `layer4`);
- SAE training: TopK, 16x a width of 2,048, k 32, against the minimal TopK step on the same rows;
- JPEG decoding: the generated images' bytes decoded by PIL (what vizneuron uses) and by
  `torchvision.io.decode_jpeg` in one batch on the device (nvJPEG on a GPU), with how many decode
  to the same pixels and the largest difference.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import ROOT, MinimalTopK, plain_loop, save_results
from PIL import Image

import vizneuron as vz
from vizneuron.sae import toy_superposition
from vizneuron.sae.train import auto_batch_size
from vizneuron.stream import decode_workers

FULL = {"render_units": 528, "lucent_units": 4, "lucent_steps": 512, "images": 5000, "sae_width": 2048,
        "sae_rows": 2_000_000}
TINY = {"render_units": 4, "lucent_units": 1, "lucent_steps": 8, "images": 64, "sae_width": 128, "sae_rows": 20_000,
        "render_steps": 8}
EXPANSION, K = 16, 32


def generated_images(count: int, side: int = 256) -> Path:
    """`count` JPEGs in 10 class folders: an 8x8 random colour field upsampled (bicubic) plus
    Gaussian noise of 8 grey levels, quality 90; made once."""
    folder = ROOT / "out" / f"gpu-images-{count}"
    if (folder / "done").exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 8, (side, side, 3))
        target = folder / f"class{i % 10}" / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(target, quality=90)
    (folder / "done").write_text(f"{count}\n")
    return folder


def measured(device: str, job: Callable[[], dict]) -> dict:
    """The job's result with its wall time and the peak GPU memory it took (None on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = job()
    if device == "cuda":
        torch.cuda.synchronize()
    result["seconds"] = time.perf_counter() - started
    result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return result


def renders(device: str, sizes: dict) -> dict:
    model = vz.load_model("lucent:inceptionv1?weights=none", device=device)
    units = [f"mixed4e:{c}" for c in range(sizes["render_units"])]
    settings = {"steps": sizes["render_steps"]} if "render_steps" in sizes else {}
    vz.render(model, units[:1], steps=4, progress=False)  # warm-up (kernels, autotuning)
    ours = measured(device, lambda: {"units": len(units), "images": len(vz.render(
        model, units, progress=False, **settings).images)})
    ours["seconds_per_unit"] = ours["seconds"] / len(units)

    def lucent_units() -> dict:
        from lucent.optvis import render as lucent_render  # the bench's anchor: lucent extra

        for c in range(sizes["lucent_units"]):
            lucent_render.render_vis(model.module, f"mixed4e:{c}", thresholds=(sizes["lucent_steps"],),
                                     show_image=False, progress=False, verbose=False)
        return {"units": sizes["lucent_units"], "steps": sizes["lucent_steps"]}

    lucent = measured(device, lucent_units)
    lucent["seconds_per_unit"] = lucent["seconds"] / sizes["lucent_units"]
    return {"vizneuron (mixed4e, every channel, defaults)": ours, "lucent render_vis (per unit)": lucent}


def mining(device: str, sizes: dict) -> dict:
    data = generated_images(sizes["images"])
    model = vz.load_model("torchvision:resnet50?weights=none", device=device)
    batches = math.ceil(sizes["images"] / 64)
    workers = decode_workers("auto", torch.device(device), batches)
    vz.mine(model, "layer4", data, k=32, progress=False)  # warm-up: page cache, kernels
    ours = measured(device, lambda: {"images_per_s": sizes["images"] / vz.mine(
        model, "layer4", data, k=32, progress=False).meta["timing"]["stream_seconds"], "workers": workers})
    plain = {}
    for count in sorted({0, workers, min(os.cpu_count() or 1, 8)}):
        plain[count] = measured(device, lambda count=count: {"images_per_s": plain_loop(model, "layer4", data, count,
                                                                                        device=device)})
    best = max(plain, key=lambda c: plain[c]["images_per_s"])
    ours["vs_best_plain"] = ours["images_per_s"] / plain[best]["images_per_s"]
    return {"vizneuron mine (default workers)": ours, **{f"plain loop, {c} workers": r for c, r in plain.items()}}


def sae_training(device: str, sizes: dict) -> dict:
    width, rows = sizes["sae_width"], sizes["sae_rows"]
    toy = toy_superposition(n=2 * width, d=width, seed=0)
    x = toy.sample(rows, torch.Generator().manual_seed(0)).to(device)
    ours = measured(device, lambda: {"rows": rows, "samples_per_s": rows / _timed(lambda: vz.train_sae(
        x, d_sae=EXPANSION * width, k=K, epochs=1, device=device, progress=False))})
    minimal = measured(device, lambda: {"rows": rows, "samples_per_s": rows / _timed(lambda: _minimal(x))})
    ours["vs_minimal"] = ours["samples_per_s"] / minimal["samples_per_s"]
    return {"vizneuron TopK": ours, "minimal TopK step": minimal}


def decoding(device: str, sizes: dict) -> dict:
    import torchvision.io  # the decoder measured against PIL (torchvision is a dependency)

    files = sorted(generated_images(sizes["images"]).rglob("*.jpg"))
    data = [f.read_bytes() for f in files]
    encoded = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in data]
    decoded: dict[str, list] = {}

    def pil() -> dict:
        decoded["pil"] = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in data]
        return {"images": len(data)}

    def batched() -> dict:
        decoded["torchvision"] = torchvision.io.decode_jpeg(encoded, device=device)
        return {"images": len(data)}

    pil(), batched()  # warm-up (the GPU decoder's first call initialises it)
    ours, theirs = measured(device, batched), measured(device, pil)
    pairs = [(torch.tensor(a), b.cpu().permute(1, 2, 0)) for a, b in zip(decoded["pil"], decoded["torchvision"])]
    ours["identical_to_pil"] = sum(torch.equal(a, b) for a, b in pairs)
    ours["largest_difference"] = max(int((a.int() - b.int()).abs().max()) for a, b in pairs)
    for result in (ours, theirs):
        result["images_per_s"] = len(data) / result["seconds"]
    return {f"torchvision decode_jpeg, one batch on {device}": ours, "PIL, one by one": theirs}


def _timed(job: Callable[[], object]) -> float:
    started = time.perf_counter()
    job()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _minimal(x: torch.Tensor) -> None:
    """The minimal TopK step (`common.MinimalTopK`) over the rows once, at vizneuron's batch size."""
    minimal = MinimalTopK(x.shape[1], EXPANSION * x.shape[1], K, x[:4096].mean(0))
    for batch in x[torch.randperm(len(x), device=x.device)].split(auto_batch_size(len(x))):
        minimal.step(batch)


PARTS = {"renders": renders, "mining": mining, "sae": sae_training, "decoding": decoding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small sizes: checks the suite runs (CPU, < 2 min)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --tiny to check the suite")
    sizes = TINY if args.tiny else FULL
    started = time.perf_counter()
    results = {}
    for name in args.parts.split(","):
        results[name] = PARTS[name](args.device, sizes)
        print(name, json.dumps(results[name], indent=1), flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    save_results("gpu", {"device": device, "tiny": args.tiny, "sizes": sizes, "seconds": time.perf_counter() - started,
                         "parts": results}, args, part=device + (" (tiny)" if args.tiny else ""), path=Path(args.out))


if __name__ == "__main__":
    main()
