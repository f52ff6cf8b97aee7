"""Feature accentuation, vizneuron vs faccent (PyPI), on the same units, seed images and step count:
each unit's gain at equal distance from the seed (in pixels, and in the layer's features), and
wall time.

faccent 1.0.3 pins old releases (lucent==0.1.0, kornia==0.4.1), so it runs in its own virtual
environment, driven through a subprocess:

    python -m venv --system-site-packages /tmp/fvenv
    /tmp/fvenv/bin/pip install --no-deps faccent==1.0.3 einops kornia ipywidgets plotly nbformat
    python bench/bench_accentuation.py --faccent-python /tmp/fvenv/bin/python [--units layer3:0,layer3:16]

The units are fixed in advance: every 16th channel of `layer3` (8 units). Each run starts from the
unit's top example in the bundled sample (as the model sees it, 32 px) and runs the same number of
steps with Adam lr 0.05 and each tool's own standard transforms; faccent's closeness is its
feature-space L2 to the seed (`accent_reg_layer`, weight `accent_reg_alpha`), vizneuron's the drift
in the parameterisation (`stay_close`). Every image is measured the same way, here: the unit's
mean activation at the model's input size without transforms, the RMS pixel distance from the
seed, and the feature distance faccent constrains (the L2 distance between the layer's activations
on the image and on the seed, over the seed's L2 norm). vizneuron's gain at each of faccent's
distances is interpolated from a sweep of `stay_close`.
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


UNITS = ",".join(f"layer3:{channel}" for channel in range(0, 128, 16))  # fixed before any run


def measured(model, layer: str, channel: int, image: torch.Tensor, seed_image: torch.Tensor) -> dict[str, float]:
    """The unit's mean activation on `image` (3, H, W) as it is, its RMS pixel distance from the
    seed, and the layer's feature distance from the seed (relative L2, what faccent constrains)."""
    with torch.no_grad(), capture(model, [layer]) as cap:
        both = cap.run(torch.stack([image, seed_image]))[layer]
    return {"unit": float(both[0, channel].mean()), "rms": float((image - seed_image).pow(2).mean().sqrt()),
            "feature": float((both[0] - both[1]).norm() / both[1].norm())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faccent-python", required=True, help="python of a venv with faccent installed")
    parser.add_argument("--units", default=UNITS, help="comma-separated units (default: every 16th channel of "
                        "layer3)")
    parser.add_argument("--reg-layer", default=None, help="faccent's regularisation layer (default: the unit's)")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alphas", default="0.25,1,4,16", help="faccent accent_reg_alpha values")
    parser.add_argument("--stay-close", default="0,0.5,1,2,4,8,16,32,64")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default")
    for unit in args.units.split(","):
        print(unit, flush=True)
        save_results("accentuation_faccent", compare(model, unit, args), args, part=unit)


def compare(model, unit: str, args) -> dict:
    """One unit: vizneuron's stay_close sweep and faccent's alphas from its top example."""
    layer, channel = unit.split(":")[0], int(unit.split(":")[1])
    with tempfile.TemporaryDirectory() as tmp:
        index = mine_sample(model, unit, folder=tmp, progress=False)
        top = index.examples(unit)[0]
        seed_path = Path(tmp) / "seed.png"
        index.thumbnail(top.image).save(seed_path)
        seed_image = torch.from_numpy(np.array(index.thumbnail(top.image))).permute(2, 0, 1).float() / 255
        on_seed = measured(model, layer, channel, seed_image, seed_image)["unit"]
        ours = []
        for close in (float(v) for v in args.stay_close.split(",")):
            started = time.perf_counter()
            result = render(model, unit, seed_image=str(seed_path), stay_close=close, steps=args.steps,
                            progress=False, **EARLIER_RENDER)  # faccent's Adam lr 0.05, constant
            ours.append({"stay_close": close, **measured(model, layer, channel, result.images[0], seed_image),
                         "seconds": time.perf_counter() - started})
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
            theirs.append({"alpha": float(alpha), **measured(model, layer, channel, image, seed_image),
                           "seconds": json.loads(run.stdout.strip().splitlines()[-1])["seconds"]})
    print(f"  seed = its top example in the bundled sample ({top.label}), unit on the seed {on_seed:.3f}; "
          f"{args.steps} steps", flush=True)
    return {"unit": unit, "seed_label": top.label, "on_seed": on_seed, "steps": args.steps, "vizneuron": ours,
            "faccent": theirs}


if __name__ == "__main__":
    main()
