"""Does redirected ReLU help on a ReLU6 network? Count grey (unmoved) renders of MobileNet-v2
channels with and without it.

A render counts as grey when its pixels barely left the initial grey (std < 0.02) or its unit is
still exactly zero at the end.

    python bench/redirect.py --layer Conv_1 --channels 0-63 --steps 64
"""

from __future__ import annotations

import argparse

import torch
from common import EARLIER_RENDER, coral, save_results

from vizneuron import load_model, parse_units, render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="Conv_1")
    ap.add_argument("--channels", default="0-63")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--redirect-steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(coral("mobilenet_v2_1.0_224_quant"))
    units = parse_units(f"{args.layer}:{args.channels}", model)
    rows = []
    for redirect in (0, args.redirect_steps):
        result = render(model, units, steps=args.steps, seed=0, redirect_steps=redirect, batch=None, progress=False,
                        **EARLIER_RENDER)
        grey = (result.images.flatten(1).std(1) < 0.02) | (result.activations == 0)
        rows.append({"redirect_steps": redirect, "grey": int(grey.sum()), "units": len(units),
                     "mean_activation": result.activations.mean().item()})
        print(rows[-1], flush=True)
    save_results("redirect", {"model": "mobilenet_v2_1.0_224_quant", "render": {**EARLIER_RENDER, "param": "fft"},
                              "rows": rows}, args)

if __name__ == "__main__":
    main()
