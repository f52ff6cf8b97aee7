"""Time to quality: how long vizneuron takes to reach what torch-lucent's default render reaches in
512 steps, on the same units and model, side by side in one process.

    pip install -e '.[lucent]'
    python bench/time_to_quality.py [--workloads resnet18,default-layer3,mobilenet-v2-logits] [--threads 2]

Quality of a render of a unit, measured the same way for both tools:
  (a) the unit's value on the final image at the model's input size, without augmentation (the mean
      over units, relative to lucent-512's);
  (b) for class logits, the top-5 rate of a second, independent network (mobilenet_v1_0.5_160
      judging mobilenet_v2 renders: the transferability check of bench/transfer.py);
  (c) the ratio to the best real image (the unit's highest value over a real image set: the 1,000
      ImageNet sample images for the ImageNet models, the 300 bundled CIFAR-10 images for the default).

lucent runs as its users run it: `render_vis` with its defaults (a 128 px decorrelated Fourier image
upsampled to 224, its standard transforms, Adam lr 0.05, 512 steps), on a wrapper that feeds the model
exactly what vizneuron feeds it (`preprocess=False`); on the 32 px CIFAR model its image is 32 px and
is not upsampled. All units of a workload are one batch for both tools; one unit is rendered 4 times
(4 batch slots) so that one lucky or unlucky start does not decide the comparison.

For each candidate setting, vizneuron finds the fewest of CHECKPOINTS steps at which (a) and (b) reach
lucent-512's (with a constant step size one render with snapshots answers, since a snapshot at step s
is exactly an s-step render; a schedule depends on the run's length, so there each length is its own
render). Then the clock: both tools warmed up, then `--repeats` rounds (default 3), each timing
lucent's 512-step render and every setting's render of its matched step count in turn; medians. The
quality shown is the timed render's own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import EARLIER_SCHEDULE, SHARED, coral, save_results, top5_rate
from torch import nn

from vizneuron import RenderConfig, capture, load_model, objectives, parse_units, render
from vizneuron.imageio import image_files, load_images
from vizneuron.models.base import OUTPUT_LAYER, Model
from vizneuron.samples import SAMPLE_DIR

CHECKPOINTS = (16, 32, 48, 64, 96, 128, 192, 256)  # a quarter of lucent's time is at most 256 of its steps
LUCENT_STEPS = 512
CLASSES = ["tabby", "sports car", "goldfish", "bald eagle", "zebra", "pineapple", "lighthouse", "pizza"]
#: vizneuron settings tried on every workload (on top of its defaults: 192 steps of a warm-up + cosine
#: schedule at peak lr 0.2, bfloat16 where the CPU has it)
EARLIER = EARLIER_SCHEDULE  # the defaults before this table
CANDIDATES = {
    "defaults (cosine schedule, peak lr 0.2)": {},
    "earlier defaults (constant lr 0.05)": EARLIER,
    "earlier defaults in float32": {**EARLIER, "precision": "float32"},
    "constant lr 0.1": {"lr": 0.1, "schedule": "constant"},
    "cosine schedule, peak lr 0.4": {"lr": 0.4},
}
#: ... and on the 224 px models, lucent's image size fed at the model's
SMALLER_IMAGE = {"constant lr 0.1, 128 px fed at 224": {"lr": 0.1, "schedule": "constant", "size": 128}}


@dataclass
class Workload:
    title: str
    spec: str
    units: list[str]
    lucent_size: int  # lucent's image size (its default 128, upsampled to 224 by lucent; 32 for CIFAR)
    real_images: list[Path]
    judge: str | None = None  # a second network for the top-5 check (class logits)
    candidates: dict[str, dict] = field(default_factory=lambda: dict(CANDIDATES))


def workloads() -> dict[str, Workload]:
    imagenet = image_files(SHARED / "data" / "imagenet-sample")
    return {
        "resnet18": Workload("torchvision resnet18 (random init), layer4:5, 4 images",
                             "torchvision:resnet18?weights=none",
                             ["layer4:5"] * 4, 128, imagenet,
                             candidates={**CANDIDATES, **SMALLER_IMAGE}),
        "default-layer3": Workload("bundled CIFAR-10 ResNet, 16 channels of layer3 (0, 8, ..., 120)", "default",
                                   [f"layer3:{c}" for c in range(0, 128, 8)], 32, image_files(SAMPLE_DIR)),
        "mobilenet-v2-logits": Workload(f"MobileNet-v2 (Coral, 224 px), {len(CLASSES)} class logits",
                                        coral("mobilenet_v2_1.0_224_quant"), [f"logit:{c}" for c in CLASSES], 128,
                                        imagenet, judge=coral("mobilenet_v1_0.5_160_quant"),
                                        candidates={**CANDIDATES, **SMALLER_IMAGE}),
    }


class ForLucent(nn.Module):
    """The model as lucent sees it: the same preprocessing as vizneuron's, then the network, then an
    identity named `logits` so lucent can hook the class scores."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.net = model.module
        self.preprocess = model.preprocess
        self.logits = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.net(self.preprocess(x)))


def lucent_render(model: Model, units, size: int, steps: int = LUCENT_STEPS) -> torch.Tensor:
    """lucent's default render of every unit, one batch slot each; images (N, 3, size, size)."""
    from lucent.optvis import objectives as lobj
    from lucent.optvis import param
    from lucent.optvis import render as lrender

    torch.manual_seed(0)  # lucent draws from torch's global generator: seeded, its runs repeat
    wrapped = ForLucent(model).requires_grad_(True)  # lucent's users do not freeze the weights
    goal = sum(lobj.channel("logits" if u.layer == OUTPUT_LAYER else "net_" + u.layer.replace(".", "_"), u.index,
                            batch=i)
               for i, u in enumerate(units))
    images = lrender.render_vis(wrapped, goal, lambda: param.image(size, batch=len(units)), thresholds=(steps,),
                                preprocess=False, fixed_image_size=size if size < 224 else None, show_image=False,
                                progress=False)[-1]
    model.module.requires_grad_(False)
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _activations(model: Model, units, images: torch.Tensor) -> dict:
    x = images if tuple(images.shape[-2:]) == tuple(model.input_size) else F.interpolate(
        images, size=tuple(model.input_size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad(), capture(model, sorted({u.layer for u in units})) as cap:
        acts = cap.run(x)
    acts[objectives.INPUT] = x
    return acts


def unit_values(model: Model, units, images: torch.Tensor) -> torch.Tensor:
    """Each slot's unit on its image at the model's input size, no augmentation (render's own measure)."""
    with torch.no_grad():
        return objectives.slots(units, 1)(_activations(model, units, images)).float()


def best_real(model: Model, units, paths: list[Path], batch: int = 50) -> torch.Tensor:
    """Each unit's highest value over the real images (its best dataset example)."""
    best = torch.full((len(units),), -float("inf"))
    for start in range(0, len(paths), batch):
        images = load_images(paths[start:start + batch], tuple(model.input_size), model.inputs.crop_fraction).images
        acts = _activations(model, units, images)
        with torch.no_grad():
            for i, unit in enumerate(units):
                best[i] = max(best[i], objectives.slots([unit] * len(images), 1)(acts).max())
    return best


def quality(model: Model, units, images: torch.Tensor, judge: Model | None, real: torch.Tensor) -> dict:
    values = unit_values(model, units, images)
    return {"activation": values.mean().item(), "real ratio": (values / real).mean().item(),
            "top-5": top5_rate(judge, images, torch.tensor([u.index for u in units])) if judge is not None else None}


def reaches(q: dict, target: dict) -> bool:
    return q["activation"] >= target["activation"] and (q["top-5"] is None or q["top-5"] >= target["top-5"])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def fmt(q: dict) -> str:
    top5 = f", top-5 {q['top-5']:.0%}" if q["top-5"] is not None else ""
    return f"{q['activation']:.3f} ({q['real ratio']:.2f} of real){top5}"


def first_match(name: str, label: str, model: Model, units, settings: dict, judge, real, target) -> int | None:
    """The fewest CHECKPOINTS steps at which a render with `settings` reaches `target`. With a constant
    step size one render with snapshots answers (a snapshot at step s is an s-step render); a schedule
    depends on the run's length, so each length is its own render."""
    if RenderConfig().with_settings(**settings).schedule == "constant":
        trace = render(model, units, steps=max(CHECKPOINTS), batch=None, thresholds=CHECKPOINTS[:-1],
                       progress=False, **settings)
        snapshots = {**trace.snapshots, max(CHECKPOINTS): trace.images}
        renders = ((step, snapshots[step]) for step in CHECKPOINTS)
    else:
        renders = ((step, render(model, units, steps=step, batch=None, progress=False, **settings).images)
                   for step in CHECKPOINTS)
    for step, images in renders:
        q = quality(model, units, images, judge, real)
        print(f"[{name}] {label} step {step}: {fmt(q)}", flush=True)
        if reaches(q, target):
            return step
    return None


def run(name: str, work: Workload, repeats: int) -> list[dict]:
    """Quality first (lucent-512's, then each setting's matching step count), then the clock: both
    tools warmed up, then `repeats` rounds, each timing lucent's 512-step render and every setting's
    matched render in turn, so machine drift hits all alike; medians."""
    model = load_model(work.spec)
    units = parse_units(work.units, model)
    judge = load_model(work.judge) if work.judge else None
    real = best_real(model, units, work.real_images)
    target = quality(model, units, lucent_render(model, units, work.lucent_size), judge, real)
    print(f"[{name}] lucent-512: {fmt(target)}", flush=True)
    matched = {label: first_match(name, label, model, units, settings, judge, real, target)
               for label, settings in work.candidates.items()}
    lucent_render(model, units, work.lucent_size, steps=8)  # warm-ups, both tools
    render(model, units, steps=8, batch=None, progress=False)
    lucent_s: list[float] = []
    ours: dict[str, list[float]] = {label: [] for label, step in matched.items() if step is not None}
    last: dict[str, object] = {}
    for round_ in range(repeats):
        lucent_s.append(timed(lambda: lucent_render(model, units, work.lucent_size))[0])
        for label in ours:
            settings = work.candidates[label]
            seconds, last[label] = timed(lambda step=matched[label], settings=settings: render(
                model, units, steps=step, batch=None, progress=False, **settings))
            ours[label].append(seconds)
        print(f"[{name}] round {round_ + 1}: lucent {lucent_s[-1]:.1f} s", flush=True)
    rows = []
    for label, step in matched.items():
        if step is None:
            rows.append({"workload": work.title, "setting": label, "steps": None, "lucent_quality": target,
                         "lucent_s": lucent_s, "within_steps": max(CHECKPOINTS)})
            continue
        q = quality(model, units, last[label].images, judge, real)  # the timed render's own quality
        rows.append({"workload": work.title, "setting": label, "steps": step, "quality": q, "lucent_quality": target,
                     "seconds": ours[label], "lucent_s": lucent_s})
        print(f"[{name}] {label}: {step} steps, {fmt(q)}, {statistics.median(ours[label]):.1f} s against lucent's "
              f"{statistics.median(lucent_s):.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="resnet18,default-layer3,mobilenet-v2-logits")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timing rounds (lucent's 512 steps each time)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import lucent  # noqa: F401
    except ImportError:
        raise SystemExit("needs torch-lucent: pip install -e '.[lucent]'") from None
    known = workloads()
    for name in args.workloads.split(","):  # one part per workload
        save_results("time_to_quality", run(name, known[name], args.repeats), args, part=name)

if __name__ == "__main__":
    main()
