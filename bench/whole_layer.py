"""A whole layer: every channel of the bundled model's `layer3` (128), one sample each, as `vizneuron
render default --units 'layer3:*'` and the app's layer grid make it. Wall time and the mean
activation of the renders, for the recipe before this work (256 steps at a constant lr 0.05, float32)
and for each lever up to today's defaults, side by side in one process, the settings taking turns
(`--rounds`, medians).

    python bench/whole_layer.py [--threads 2] [--rounds 1]
    python bench/whole_layer.py --mixed4e [--device cuda]   # lucent's InceptionV1 mixed4e (random init)

Quality is the mean over the 128 channels of each render's unit value (the render's own measure: the
model's input size, no augmentation), relative to the first setting's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator

import torch
from common import EARLIER_SCHEDULE, save_results

import vizneuron.optim.render as render_module
from vizneuron import load_model, render

#: name -> render settings (and `channels_last`; "fold": False turns BatchNorm folding off, which
#: only this bench does); the first is the baseline
EARLIER = {"steps": 256, **EARLIER_SCHEDULE}  # the default recipe before this work
SETTINGS = {
    "before: 256 steps at constant lr 0.05, batch 16, float32, contiguous weights, BatchNorm not folded":
        {**EARLIER, "channels_last": False, "precision": "float32", "batch": 16, "fold": False},
    "the same 256 steps in float32, BatchNorm folded, channels-last weights, batch auto (64)":
        {**EARLIER, "precision": "float32"},
    "the same 256 steps in bfloat16 (auto on this CPU)": EARLIER,
    "defaults now: all of that, 192 steps of a cosine schedule, peak lr 0.2": {},
    "defaults, 128 steps": {"steps": 128},
    "defaults, peak lr 0.4": {"lr": 0.4},
}


@contextlib.contextmanager
def folding(on: bool) -> Iterator[None]:
    """BatchNorm folding as renders do it, or off (the state before it existed)."""
    real = render_module.folded_batchnorm
    if not on:
        render_module.folded_batchnorm = lambda module, keep=(): contextlib.nullcontext(0)
    try:
        yield
    finally:
        render_module.folded_batchnorm = real


def mixed4e(device: str, batch: int, steps: int) -> dict:
    """Every channel of lucent's InceptionV1 `mixed4e` (832 channels, random init: no download) at 128 px fed at
    224, 512 steps each: timed on one batch of `batch` channels for `steps` steps, then scaled to the
    whole layer (the batches are independent and equal in cost). bfloat16 autocast where native."""
    model = load_model("lucent:inceptionv1?weights=none", device=device)
    channels = model.layers["mixed4e"].channels
    units = [f"mixed4e:{c}" for c in range(batch)]
    settings = dict(size=128, model_input_size=224, batch=batch, progress=False)  # bfloat16 where native
    render(model, units, steps=2, **settings)  # warm-up
    start = time.perf_counter()
    render(model, units, steps=steps, **settings)
    per_step = (time.perf_counter() - start) / steps
    whole = per_step * 512 * -(-channels // batch)
    print(f"mixed4e on {device}: {per_step:.3f} s per step for {batch} channels; all {channels} channels x 512 "
          f"steps: {whole:.0f} s ({whole / 60:.1f} min)")
    return {"device": device, "batch": batch, "steps_timed": steps, "channels": channels,
            "seconds_per_step": per_step, "whole_layer_512_steps_s": whole}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settings", default=";".join(SETTINGS), help="';'-separated names from SETTINGS")
    ap.add_argument("--mixed4e", action="store_true", help="time lucent's InceptionV1 mixed4e instead")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16, help="with --mixed4e: channels per batch")
    ap.add_argument("--steps", type=int, default=8, help="with --mixed4e: steps timed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mixed4e:
        save_results("whole_layer", mixed4e(args.device, args.batch, args.steps), args, part=f"mixed4e-{args.device}")
        return
    model = load_model("default")
    names = args.settings.split(";")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    value: dict[str, float] = {}
    for _ in range(args.rounds):
        for name in names:
            settings = dict(SETTINGS[name])
            with folding(settings.pop("fold", True)):
                start = time.perf_counter()
                result = render(model, "layer3:*", progress=False, **settings)
                seconds[name].append(time.perf_counter() - start)
            value[name] = result.activations.mean().item()
            print(name, f"{seconds[name][-1]:.1f} s", f"mean activation {value[name]:.3f}", flush=True)
    rows = [{"setting": name, "render": {k: v for k, v in SETTINGS[name].items()}, "seconds": seconds[name],
             "median_s": statistics.median(seconds[name]), "mean_activation": value[name]} for name in names]
    save_results("whole_layer", {"units": "layer3:*", "model": "default", "rows": rows}, args)

if __name__ == "__main__":
    main()
