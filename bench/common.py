"""Helpers shared by the benchmark scripts: where the shared models live, and the one way results
are kept: `save_results` writes `bench/results/NAME.json` with what produced them."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

import vizneuron

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared"
#: the step size of the defaults before the cosine schedule (lucent's)
EARLIER_SCHEDULE = dict(lr=0.05, schedule="constant")
#: the render settings the README's older tables were measured with (before bfloat16 and the cosine
#: default): the benches behind those tables pin them, so that they reproduce their tables
EARLIER_RENDER = dict(**EARLIER_SCHEDULE, precision="float32")


def shared(*parts: str) -> Path:
    """A path in ../shared, or exit saying it is needed (the benches read real data from there)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        sys.exit(f"needs {path} (the ../shared folder beside the project)")
    return path


def coral(name: str) -> str:
    """Spec of one of the Coral TFLite classifiers in ../shared."""
    return f"tflite:{shared('models', 'coral', f'{name}.tflite')}"


def imagenet_list() -> Path:
    """The ImageNet sample as a labelled list file in out/ (scripts/imagenet_sample_list.py: the
    folder is flat and its sorted order is the class index)."""
    spec = importlib.util.spec_from_file_location("imagenet_sample_list", ROOT / "scripts" / "imagenet_sample_list.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.write_list(ROOT / "out" / "imagenet_sample.txt")


def imagenet_sized(count: int, side: int = 256) -> Path:
    """`count` JPEGs of ImageNet size, made once into out/ (git-ignored): CIFAR-10 training images
    (../shared) taken in turn from each class, upsampled to side x side (bicubic) and re-encoded at
    quality 90, in class folders. Their content is CIFAR's; what matters for speed is the file
    size and decoding cost of a 256 px JPEG."""
    folder = ROOT / "out" / f"imagenet-sized-{count}-{side}"
    done = folder / "done"
    if done.exists():
        return folder
    train = shared("data", "cifar10", "train")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files = {name: sorted((train / name).glob("*.jpg")) for name in classes}
    for i in range(count):
        name = classes[i % len(classes)]
        target = folder / name / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(files[name][i // len(classes)]) as image:
            image.convert("RGB").resize((side, side), Image.BICUBIC).save(target, quality=90)
    done.write_text(f"{count}\n")
    return folder


def plain_loop(model: vizneuron.Model, layers: str, data: Path, workers: int, batch_size: int = 64,
               device: str = "cpu") -> float:
    """Images/s of the loop a user writes: ImageFolder (or the list's files), DataLoader (pinned
    memory on CUDA), forward through the model's top-level children up to the deepest layer asked for."""
    side = model.input_size
    crop = round(256 * model.inputs.crop_fraction) if model.inputs.crop_fraction < 1 else side  # of 256 px files
    transform = torchvision.transforms.Compose([
        torchvision.transforms.CenterCrop(crop), torchvision.transforms.Resize(side, antialias=True),
        torchvision.transforms.ToTensor(), torchvision.transforms.Normalize(model.inputs.mean, model.inputs.std)])
    if data.is_dir():
        dataset = torchvision.datasets.ImageFolder(str(data), transform=transform)
    else:
        dataset = _Listed([line.split("\t")[0] for line in data.read_text().splitlines()], transform)
    children = list(model.module.named_children())
    last = max(i for i, (name, _) in enumerate(children) if name in layers.split(","))
    trunk = torch.nn.Sequential(*(module for _, module in children[: last + 1])).eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device == "cuda")
    started = time.perf_counter()
    count = 0
    with torch.no_grad():
        for images, _ in loader:
            trunk(images.to(device, non_blocking=True))
            count += len(images)
    if device == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


class _Listed(torch.utils.data.Dataset):
    """The files of a list, as ImageFolder reads them (PIL, RGB)."""

    def __init__(self, files: list[str], transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(torchvision.datasets.folder.default_loader(self.files[i])), 0


class MinimalTopK:
    """The fewest operations of a TopK SAE step: linear encoder, top-k, dense linear decoder, MSE,
    Adam. The reference the SAE speed figures are held against (bench_sae, bench_scale, gpu_suite)."""

    def __init__(self, d: int, d_sae: int, k: int, b_dec: torch.Tensor, lr: float = 1e-3) -> None:
        torch.manual_seed(0)
        device = b_dec.device
        self.k = k
        self.w_dec = torch.nn.Parameter(torch.randn(d_sae, d, device=device) / math.sqrt(d))
        self.w_enc = torch.nn.Parameter(self.w_dec.detach().T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae, device=device))
        self.b_dec = torch.nn.Parameter(b_dec.detach().clone())
        self.optimiser = torch.optim.Adam([self.w_enc, self.b_enc, self.w_dec, self.b_dec], lr=lr)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        pre = (x - self.b_dec) @ self.w_enc + self.b_enc
        values, indices = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, indices, torch.relu(values))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.codes(x) @ self.w_dec + self.b_dec

    def step(self, x: torch.Tensor) -> None:
        loss = (x - self.reconstruct(x)).pow(2).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()


def top5_rate(judge, images: torch.Tensor, targets: torch.Tensor) -> float:
    """How often `judge` (a second network) puts each image's target class in its top 5: the
    transferability check of renders (MACO's), images resized to the judge's input size."""
    x = F.interpolate(images, size=tuple(judge.input_size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        return (judge(x).topk(5, dim=1).indices == targets[:, None]).any(1).float().mean().item()


def provenance(args: argparse.Namespace | dict | None = None) -> dict:
    """What produced a result: the script and its command line, the settings it ran with, versions,
    the machine (CPUs, torch threads, GPU if one was used) and the date."""
    settings = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    script = Path(sys.argv[0]).resolve()
    return {"script": str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else script.name,
            "arguments": sys.argv[1:], "settings": {k: v if isinstance(v, (int, float, str, bool, type(None)))
                                                    else str(v) for k, v in settings.items()},
            "vizneuron": vizneuron.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                        "system": platform.platform(), "torch_threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def save_results(name: str, results: object, args: argparse.Namespace | dict | None = None,
                 part: str = "all", path: Path | None = None) -> Path:
    """Write `results` (plain JSON: figures at full precision) as `part` of `bench/results/NAME.json`
    (or of `path`), with their provenance; other parts of the file (another model, another set) are
    kept, each with its own. The docs' tables are generated from these files (`python scripts/tables.py`)."""
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"name": name, "parts": {}}
    record["parts"][part] = {"produced_by": provenance(args), "results": results}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {path} ({part})")
    return path


def drop_stale_parts(name: str, current: set[str], prefix: str = "") -> None:
    """Remove the parts of `bench/results/NAME.json` under `prefix` that the script no longer makes
    (a method renamed or dropped), so no table shows a row today's script cannot reproduce."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return
    record = json.loads(path.read_text())
    stale = [part for part in record["parts"] if part.startswith(prefix) and part not in current]
    for part in stale:
        del record["parts"][part]
        print(f"dropped from {path.relative_to(ROOT)}: {part} (no longer made by the script)")
    if stale:
        path.write_text(json.dumps(record, indent=1) + "\n")
