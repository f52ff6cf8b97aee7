"""Helpers shared by the benchmark scripts: where the shared models live, and the one way results
are kept: `save_results` writes `bench/results/NAME.json` with what produced them."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

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
                 part: str = "all") -> Path:
    """Write `results` (plain JSON: figures at full precision) as `part` of `bench/results/NAME.json`,
    with their provenance; other parts of the file (another model, another set) are kept, each with its
    own. The docs' tables are generated from these files (`python scripts/tables.py`)."""
    path = RESULTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"name": name, "parts": {}}
    record["parts"][part] = {"produced_by": provenance(args), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {path.relative_to(ROOT)} ({part})")
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
