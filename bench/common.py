"""Helpers shared by the benchmark scripts: where the shared models live, table printing."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: the step size of the defaults before the cosine schedule (lucent's)
EARLIER_SCHEDULE = dict(lr=0.05, schedule="constant")
#: the render settings the README's older tables were measured with (before bfloat16 and the cosine
#: default): the benches behind those tables pin them, so that they reproduce their tables
EARLIER_RENDER = dict(**EARLIER_SCHEDULE, precision="float32")


def coral(name: str) -> str:
    """Spec of one of the Coral TFLite classifiers in ../shared."""
    path = SHARED / "models" / "coral" / f"{name}.tflite"
    if not path.exists():
        sys.exit(f"needs {path} (the ../shared folder beside the project)")
    return f"tflite:{path}"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def top5_rate(judge, images: torch.Tensor, targets: torch.Tensor) -> float:
    """How often `judge` (a second network) puts each image's target class in its top 5: the
    transferability check of renders (MACO's), images resized to the judge's input size."""
    x = F.interpolate(images, size=tuple(judge.input_size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        return (judge(x).topk(5, dim=1).indices == targets[:, None]).any(1).float().mean().item()
