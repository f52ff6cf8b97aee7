"""Do renders mean what they claim? Class-logit renders made on MobileNet-v2 are classified by a
different network (MobileNet-v1 0.5, 160 px); we count top-5 hits (MACO's transferability test).

    python bench/transfer.py                      # every setting below (about an hour on 2 CPU threads)
    python bench/transfer.py --settings "fft, standard transforms, 128 steps"
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common import EARLIER_RENDER, coral, save_results, top5_rate

from vizneuron import load_model, parse_unit, render

CLASSES = ["tabby", "sports car", "goldfish", "great white shark", "bald eagle", "tree frog", "king penguin",
           "golden retriever", "zebra", "monarch", "pineapple", "strawberry", "volcano", "daisy", "lighthouse",
           "school bus", "pizza", "broccoli", "jellyfish", "tarantula", "espresso", "ladybug", "cheeseburger",
           "snail"]

def earlier(**options) -> dict:
    """Render options on top of the settings the older rows were measured with."""
    return {**EARLIER_RENDER, **options}


SETTINGS = {  # name -> render options; every run uses seed 0 and the same classes
    "defaults (fft, 192 steps, cosine schedule at peak lr 0.2, 16 redirected steps)": {},
    # the rows measured before those defaults, at their settings (constant lr 0.05, float32)
    "fft, standard transforms, 128 steps": earlier(param="fft", steps=128, redirect_steps=0),
    "fft, standard transforms, 256 steps": earlier(param="fft", steps=256, redirect_steps=0),
    "fft, standard transforms, 512 steps": earlier(param="fft", steps=512, redirect_steps=0),
    "fft, standard transforms, 256 steps, 320 px": earlier(param="fft", steps=256, size=320, redirect_steps=0),
    "fft, standard transforms, 128 steps, redirect 16": earlier(param="fft", steps=128, redirect_steps=16),
    "fft, no transforms, 128 steps": earlier(param="fft", steps=128, transforms=None, redirect_steps=0),
    "pixel (lr 0.01), standard transforms, 256 steps": earlier(param="pixel", lr=0.01, steps=256, redirect_steps=0),
    "maco (lr 0.2), standard transforms, 128 steps": earlier(param="maco", lr=0.2, steps=128, redirect_steps=0),
    "maco (lr 0.2), standard transforms, 512 steps": earlier(param="maco", lr=0.2, steps=512, redirect_steps=0),
    "maco (lr 0.05), standard transforms, 256 steps": earlier(param="maco", lr=0.05, steps=256, redirect_steps=0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--settings", default=";".join(SETTINGS), help="';'-separated names from SETTINGS")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source = load_model(coral("mobilenet_v2_1.0_224_quant"))
    judge = load_model(coral("mobilenet_v1_0.5_160_quant"))
    units = [parse_unit(f"logit:{name}", source) for name in CLASSES]
    targets = torch.tensor([u.index for u in units])
    for name in args.settings.split(";"):
        start = time.perf_counter()
        result = render(source, units, seed=0, batch=None, progress=False, **SETTINGS[name])  # one batch, as measured
        own = F.interpolate(result.images, size=source.input_size, mode="bilinear", antialias=True)
        with torch.no_grad():
            own_top1 = (source(own).argmax(1) == targets).float().mean().item()
        hits = top5_rate(judge, result.images, targets)
        row = {"source": "mobilenet_v2_1.0_224_quant", "judge": "mobilenet_v1_0.5_160_quant", "classes": CLASSES,
               "render": SETTINGS[name], "source_top1": own_top1, "judge_top5": hits,
               "seconds": time.perf_counter() - start}
        print(name, own_top1, hits, flush=True)
        save_results("transfer", row, args, part=name)  # one part per setting: a partial rerun keeps the rest

if __name__ == "__main__":
    main()
