"""torch.compile as a render lever, measured on the step it would speed up: a frozen forward to the
bundled model's `layer3` and a backward to the input, batch 64 at 35 px (a padded 32 px render), in
bfloat16 autocast with the BatchNorms folded and channels-last weights, as renders run it.

    python bench/compile_step.py [--threads 2] [--steps 10] [--rounds 3]

Records the one-off compile time and the eager and compiled seconds per step, taking turns.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import save_results
from torch import nn

from vizneuron import load_model
from vizneuron.optim.speedups import channels_last, folded_batchnorm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default").module
    net = nn.Sequential(model.stem, model.layer1, model.layer2, model.layer3)
    start = torch.rand(64, 3, 35, 35)

    def step(forward) -> None:
        x = start.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = forward(x)
        y.float().mean().backward()

    with folded_batchnorm(net), channels_last(net):
        for _ in range(3):
            step(net)
        began = time.perf_counter()
        compiled = torch.compile(net)
        step(compiled)
        compile_s = time.perf_counter() - began
        print(f"compile and first step: {compile_s:.1f} s")
        seconds: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.rounds):
            for name, forward in (("eager", net), ("compiled", compiled)):
                began = time.perf_counter()
                for _ in range(args.steps):
                    step(forward)
                seconds[name].append((time.perf_counter() - began) / args.steps)
    for name, values in seconds.items():
        print(f"{name}: {statistics.median(values):.3f} s a step")
    save_results("compile_step", {"compile_and_first_step_s": compile_s, "seconds_per_step": seconds}, args)


if __name__ == "__main__":
    main()
