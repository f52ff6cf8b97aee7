"""ImageNet-scale jobs on one machine: mining, SAE extraction and training, a whole-layer render.

    python bench/bench_scale.py mine [--images 2000,10000] [--rounds 3]
    python bench/bench_scale.py sae [--images 10000] [--rows 50000,250000,1960000] [--synthetic-rows 20000000]
                                    [--synthetic-timed 1000000]
    python bench/bench_scale.py render [--batches 2]

The images are ImageNet-sized JPEGs made once into out/ (git-ignored) from CIFAR-10 training images
upsampled to 256 px (`common.imagenet_sized`): what matters for speed is a 256 px JPEG's size and
decoding cost, not its content. The model is torchvision's ResNet-50 at 224 px, random init (speed
does not depend on the weights). Every measurement runs in a fresh process, so its peak RSS is its
own (`ru_maxrss`).

- mine: `vz.mine` of all 1,024 channels of `layer3` and all 2,048 of `layer4` at once (k 32),
  against the loop a user writes (ImageFolder-style reading + DataLoader with the same workers +
  forward to `layer4`), interleaved, median of the rounds, at the first --images count; then
  vizneuron once at each count, for its peak RSS.
- sae: `extract_activations` of `layer3` (every position: 196 rows an image) over the last --images
  count, then TopK training (16x, k 32) streaming those files, against the minimal TopK step
  reading the same files: interleaved, median of the rounds, over the first --rows count, and vizneuron once over each
  further count for its peak RSS. Then a synthetic set of --synthetic-rows rows in the extract
  format (written once into out/): timed against the minimal step over its first --synthetic-timed
  rows, and vizneuron once over all of it, for its peak RSS.
- render: a whole-layer render of `layer4` (2,048 channels) at the defaults, timed on --batches
  batches of its automatic size, with the full-layer estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from common import ROOT, MinimalTopK, imagenet_sized, plain_loop, save_results
from safetensors.torch import save as save_tensors

import vizneuron as vz
from vizneuron.imageio import image_files, write_atomic
from vizneuron.sae import ActivationFolder, extract_activations, toy_superposition
from vizneuron.sae.data import MANIFEST
from vizneuron.sae.train import auto_batch_size
from vizneuron.stream import decode_workers

MODEL = "torchvision:resnet50?weights=none"
MINE_LAYERS = "layer3,layer4"
SAE_LAYER = "layer3"
EXPANSION, K = 16, 32
SYNTHETIC_WIDTH = 128  # the synthetic set's row width: 20 M rows of 128 float32 are 10 GB on disk


def listing(count: int) -> Path:
    """A labelled list of the first `count` generated images (made from the 10,000-image folder)."""
    folder = imagenet_sized(max(count, 10_000))
    files = sorted(image_files(folder), key=lambda p: p.name)[:count]
    path = ROOT / "out" / f"scale-{count}.txt"
    path.write_text("".join(f"{p}\t{p.parent.name}\n" for p in files))
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(task: str, *values: str) -> dict:
    """Run one measurement in a fresh process (this script with --child) and return its JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", task, *values], capture_output=True, text=True,
                          cwd=Path(__file__).parent)
    if done.returncode:
        sys.exit(f"{task} {values} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(task: str, values: list[str]) -> dict:
    """What one fresh process measures (the --child side)."""
    torch.set_num_threads(int(values[-1]))
    if task == "mine":
        data, workers = Path(values[0]), values[1]
        model = vz.load_model(MODEL)
        started = time.perf_counter()
        index = vz.mine(model, MINE_LAYERS, data, k=32, workers=workers if workers == "auto" else int(workers),
                        progress=False)
        whole = time.perf_counter() - started
        images, timing = index.summary()["mined"], index.meta["timing"]
        return {"images": images, "images_per_s": images / timing["stream_seconds"], "whole_images_per_s":
                images / whole, "finalise_seconds": timing["finalise_seconds"]}
    if task == "plain":
        data, workers = Path(values[0]), int(values[1])
        return {"images_per_s": plain_loop(vz.load_model(MODEL), MINE_LAYERS, data, workers)}
    if task == "extract":
        data, out = Path(values[0]), Path(values[1])
        started = time.perf_counter()
        folder = extract_activations(vz.load_model(MODEL), SAE_LAYER, data, out, progress=False)
        return {"rows": folder.rows, "rows_per_s": folder.rows / (time.perf_counter() - started)}
    if task in ("train", "minimal"):
        folder, rows = ActivationFolder(values[0]), int(values[1])
        return (train_streamed if task == "train" else minimal_streamed)(folder, rows)
    if task == "synthetic":
        return write_synthetic(Path(values[0]), int(values[1]))
    if task == "render":
        return render_sample(int(values[0]))
    raise SystemExit(f"unknown task {task}")


def first_rows(folder: ActivationFolder, rows: int):
    """The folder's rows in order, cut at `rows` rows: one pass, one block in memory at a time."""
    left = rows
    for chunk in folder:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


def train_streamed(folder: ActivationFolder, rows: int) -> dict:
    d = folder.manifest["width"]
    started = time.perf_counter()
    with warnings.catch_warnings():  # one epoch on purpose: "not converged" is expected
        warnings.simplefilter("ignore")
        sae = vz.train_sae(lambda: first_rows(folder, rows), d_sae=EXPANSION * d, k=K, epochs=1, progress=False)
    seconds = time.perf_counter() - started
    return {"rows": rows, "samples_per_s": rows / seconds, "fvu": sae.config.metrics.get("fvu")}


def minimal_streamed(folder: ActivationFolder, rows: int) -> dict:
    """The minimal TopK step over the same files, at vizneuron's automatic batch size, shuffling
    within each block as it is read."""
    d = folder.manifest["width"]
    minimal, batch = MinimalTopK(d, EXPANSION * d, K, torch.zeros(d)), auto_batch_size(None)
    started = time.perf_counter()
    for chunk in first_rows(folder, rows):
        for x in chunk[torch.randperm(len(chunk))].split(batch):
            minimal.step(x)
    return {"rows": rows, "samples_per_s": rows / (time.perf_counter() - started)}


def write_synthetic(out: Path, rows: int, per_file: int = 200_000) -> dict:
    """`rows` rows of SYNTHETIC_WIDTH in the extract format (a toy superposition: sparse features
    in fewer dimensions), written once."""
    if ActivationFolder.holds(out) and ActivationFolder(out).rows == rows:
        return {"rows": rows, "written": False}
    toy = toy_superposition(n=4 * SYNTHETIC_WIDTH, d=SYNTHETIC_WIDTH, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(math.ceil(rows / per_file)):
        count = min(per_file, rows - number * per_file)
        name = f"rows-{number:06d}.safetensors"
        write_atomic(out / name, save_tensors({"rows": toy.sample(count, torch.Generator().manual_seed(number))}))
        files.append({"file": name, "rows": count})
    manifest = {"model": "synthetic", "layer": "toy", "width": SYNTHETIC_WIDTH, "pool": False,
                "batches": len(files), "batches_per_file": 1, "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return {"rows": rows, "written": True}


def render_sample(batches: int) -> dict:
    model = vz.load_model(MODEL)
    config = vz.RenderConfig()
    units = [f"layer4:{c}" for c in range(2048)]
    batch = config.normalised(model, len(units)).batch
    started = time.perf_counter()
    vz.render(model, units[: batch * batches], config, progress=False)
    seconds = time.perf_counter() - started
    return {"batch": batch, "batches": batches, "seconds": seconds,
            "full_layer_estimate_s": seconds / (batch * batches) * len(units)}


def interleaved(tasks: list[tuple[str, list[str]]], rounds: int) -> list[list[dict]]:
    """Each task once per round, the order rotating; a warm-up round first, dropped."""
    results: list[list[dict]] = [[] for _ in tasks]
    for round_number in range(rounds + 1):
        shift = round_number % len(tasks)
        for i in list(range(shift, len(tasks))) + list(range(shift)):
            result = child(tasks[i][0], *tasks[i][1])
            print(round_number, tasks[i], result, flush=True)
            if round_number:
                results[i].append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["mine", "sae", "render"])
    parser.add_argument("--images", default="2000,10000",
                        help="image counts: mine times the first and measures RSS at each; sae extracts the last")
    parser.add_argument("--rows", default="50000,250000,1960000",
                        help="extracted rows to train on: the first timed, each for its RSS (AuxK, and with it "
                             "its memory, starts once latents go 200,000 samples unfired: compare counts past it)")
    parser.add_argument("--synthetic-rows", type=int, default=20_000_000, help="rows of the synthetic set")
    parser.add_argument("--synthetic-timed", type=int, default=1_000_000,
                        help="synthetic rows of the timed comparison (the whole set is trained on once, for RSS)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    threads = str(args.threads)
    counts = [int(n) for n in args.images.split(",")]
    if args.part == "mine":
        data = str(listing(counts[0]))
        workers = decode_workers("auto", torch.device("cpu"), 100)
        timed = interleaved([("mine", [data, "auto", threads]), ("plain", [data, str(workers), threads])], args.rounds)
        ours, plain = timed
        rss = {count: child("mine", str(listing(count)), "auto", threads) for count in counts}
        save_results("scale_mine", {
            "model": MODEL, "layers": MINE_LAYERS, "k": 32, "images": counts[0], "workers": workers,
            "vizneuron": ours, "plain": plain,
            "stream_vs_plain": statistics.median(r["images_per_s"] for r in ours)
            / statistics.median(r["images_per_s"] for r in plain),
            "whole_vs_plain": statistics.median(r["whole_images_per_s"] for r in ours)
            / statistics.median(r["images_per_s"] for r in plain),
            "rss_by_images": rss}, args, part="mine")
    elif args.part == "sae":
        out = ROOT / "out" / f"scale-acts-{counts[-1]}"
        shutil.rmtree(out, ignore_errors=True)  # a random-init model differs each run: extraction starts afresh
        extracted = child("extract", str(listing(counts[-1])), str(out), threads)
        synthetic = ROOT / "out" / f"synthetic-{args.synthetic_rows}"
        child("synthetic", str(synthetic), str(args.synthetic_rows), threads)
        rows = [int(n) for n in args.rows.split(",")]
        results = {}
        for name, folder, timed, more in (("extracted", out, rows[0], rows[1:]),
                                           ("synthetic", synthetic, args.synthetic_timed, [args.synthetic_rows])):
            ours, minimal = interleaved([("train", [str(folder), str(timed), threads]),
                                         ("minimal", [str(folder), str(timed), threads])], args.rounds)
            results[name] = {
                "timed_rows": timed, "vizneuron": ours, "minimal": minimal,
                "vs_minimal": statistics.median(r["samples_per_s"] for r in ours)
                / statistics.median(r["samples_per_s"] for r in minimal),
                "rss_by_rows": {str(timed): statistics.median(r["peak_rss_mb"] for r in ours),
                                **{str(n): child("train", str(folder), str(n), threads)["peak_rss_mb"] for n in more}}}
            print(name, results[name]["vs_minimal"], results[name]["rss_by_rows"], flush=True)
        save_results("scale_sae", {"model": MODEL, "layer": SAE_LAYER, "images": counts[-1], "extract": extracted,
                                   "expansion": EXPANSION, "k": K, "synthetic_rows": args.synthetic_rows,
                                   "synthetic_width": SYNTHETIC_WIDTH, "runs": results}, args, part="sae")
    else:
        save_results("scale_render", child("render", str(args.batches), threads), args, part="render")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        result = run_child(sys.argv[2], sys.argv[3:])
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
    else:
        main()
