"""Feature accentuation, vizneuron vs faccent (PyPI), on the same unit, seed image and step count:
the unit's gain at equal distance from the seed, and wall time.

faccent 1.0.3 pins old releases (lucent==0.1.0, kornia==0.4.1), so it runs in its own virtual
environment, driven through a subprocess:

    python -m venv --system-site-packages /tmp/fvenv
    /tmp/fvenv/bin/pip install --no-deps faccent==1.0.3 einops kornia ipywidgets plotly nbformat
    python bench/bench_accentuation.py --faccent-python /tmp/fvenv/bin/python [--unit layer3:10]

Both start from the unit's top example in the bundled sample (as the model sees it, 32 px) and run
the same number of steps with Adam lr 0.05 and their own standard transforms; faccent's closeness is
its feature-space L2 to the seed (`accent_reg_layer`, weight `accent_reg_alpha`), vizneuron's the
drift in the parameterisation (`stay_close`). Every image is measured the same way, here: the unit's
mean activation at the model's input size without transforms, and the RMS pixel distance from the
seed. vizneuron's gain at faccent's distance is interpolated from a sweep of `stay_close`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import EARLIER_RENDER, ROOT, save_results
from safetensors.torch import load_file

from vizneuron import capture, load_model, render
from vizneuron.mine.run import mine_sample

FACCENT = """
import json, sys, time, torch
from safetensors.torch import save_file
from faccent import param, render
from vizneuron import load_model

seed, layer, channel, steps, alpha, reg_layer, out = sys.argv[1:8]
torch.set_num_threads(int(sys.argv[8]))
model = load_model("default")


class Net(torch.nn.Module):  # the bundled model, taking [0, 1] images (its normalisation inside)
    def __init__(self):
        super().__init__()
        self.net = model.module

    def forward(self, x):
        return self.net(model.preprocess(x))


net = Net().eval()
size = tuple(model.input_size)
parameterizer = param.fourier(init_img=seed, img_size=size, forward_init_img=True, device=torch.device("cpu"))
started = time.perf_counter()
images = render.render_vis(net, f"net_{layer}:{channel}", parameterizer=parameterizer,
                           out_thresholds=[int(steps) - 1], inline_thresholds=[], progress=False,
                           model_input_size=size, model_input_range=(0, 1), img_size=size,
                           accent_reg_layer=f"net_{reg_layer}", accent_reg_alpha=float(alpha))[0]
seconds = time.perf_counter() - started
save_file({"image": images[-1][:1].detach().float().contiguous()}, out)
print(json.dumps({"seconds": seconds}))
"""


def unit_value(model, layer: str, channel: int, image: torch.Tensor) -> float:
    """The unit's mean activation on `image` (3, H, W) as it is."""
    with torch.no_grad(), capture(model, [layer]) as cap:
        return float(cap.run(image[None])[layer][0, channel].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faccent-python", required=True, help="python of a venv with faccent installed")
    parser.add_argument("--unit", default="layer3:10")
    parser.add_argument("--reg-layer", default=None, help="faccent's regularisation layer (default: the unit's)")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alphas", default="0.25,1,4", help="faccent accent_reg_alpha values")
    parser.add_argument("--stay-close", default="0,0.5,1,2,4,8,16,32,64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default")
    layer, channel = args.unit.split(":")[0], int(args.unit.split(":")[1])
    with tempfile.TemporaryDirectory() as tmp:
        index = mine_sample(model, args.unit, folder=tmp, progress=False)
        top = index.examples(args.unit)[0]
        seed_path = Path(tmp) / "seed.png"
        index.thumbnail(top.image).save(seed_path)
        seed = render(model, args.unit, seed_image=str(seed_path), steps=1, lr=1e-9, redirect_steps=0,
                      progress=False)
        seed_image = torch.from_numpy(np.array(index.thumbnail(top.image))).permute(2, 0, 1).float() / 255
        on_seed = unit_value(model, layer, channel, seed_image)
        ours = []
        for close in (float(v) for v in args.stay_close.split(",")):
            started = time.perf_counter()
            result = render(model, args.unit, seed_image=str(seed_path), stay_close=close, steps=args.steps,
                            progress=False, **EARLIER_RENDER)  # faccent's Adam lr 0.05, constant
            ours.append((close, unit_value(model, layer, channel, result.images[0]), float(result.seed_distance[0]),
                         time.perf_counter() - started))
        theirs = []
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for alpha in args.alphas.split(","):
            out = Path(tmp) / f"faccent_{alpha}.safetensors"
            run = subprocess.run([args.faccent_python, "-c", FACCENT, str(seed_path), layer, str(channel),
                                  str(args.steps), alpha, args.reg_layer or layer, str(out), str(args.threads)],
                                 capture_output=True, text=True, env=env)
            if run.returncode:
                raise SystemExit(f"faccent failed:\n{run.stderr[-3000:]}")
            image = load_file(str(out))["image"][0]
            theirs.append((float(alpha), unit_value(model, layer, channel, image),
                           float((image - seed_image).pow(2).mean().sqrt()),
                           json.loads(run.stdout.strip().splitlines()[-1])["seconds"]))
    print(f"{args.unit}, seed = its top example in the bundled sample ({top.label}), unit on the seed "
          f"{on_seed:.3f} (vizneuron's own seed figure {float(seed.seed_activation[0]):.3f}); {args.steps} steps")
    save_results("accentuation_faccent", {
        "unit": args.unit, "seed_label": top.label, "on_seed": on_seed, "steps": args.steps,
        "vizneuron": [dict(zip(("stay_close", "unit", "rms", "seconds"), row)) for row in ours],
        "faccent": [dict(zip(("alpha", "unit", "rms", "seconds"), row)) for row in theirs]}, args)

if __name__ == "__main__":
    main()
