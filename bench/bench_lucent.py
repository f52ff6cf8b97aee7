"""Side-by-side render speed: vizneuron vs torch-lucent vs a plain frozen forward+backward loop.

Same workload for all three: a 128 px decorrelated-Fourier image fed to the model at 224 px,
lucid's standard transforms, Adam lr 0.05, the same number of steps, in one process on one
machine. The plain loop (frozen weights, one hook, nothing else) is the speed limit.

    pip install -e '.[lucent]'
    python bench/bench_lucent.py --threads 2 --steps 32 --repeats 5 [--device cuda]

Prints a markdown table of seconds per step (median of the repeats, the three loops taking
turns) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from common import EARLIER_RENDER, save_results

from vizneuron import load_model, objectives, render
from vizneuron.models.base import Model
from vizneuron.optim.param import fft_image
from vizneuron.optim.transforms import compose, standard_transforms

WORKLOADS = {
    "a": ("torchvision resnet18 (random init), layer4:5, batch 1", "torchvision:resnet18?weights=none", "layer4", 5, 1),
    "b": ("same, batch 4, channel - 1e2*diversity", "torchvision:resnet18?weights=none", "layer4", 5, 4),
    "c": ("lucent InceptionV1 (random init), mixed4e:55, batch 1", "lucent:inceptionv1?weights=none", "mixed4e", 55, 1),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(model: Model, layer: str, channel: int, batch: int, steps: int, device: str) -> None:
    """The limit: frozen weights, one hook, full forward, no extras."""
    gen = torch.Generator(device=device).manual_seed(0)
    image = fft_image(batch, (128, 128), gen)
    transform = compose(standard_transforms(128))
    opt = torch.optim.Adam(image.params, lr=0.05)
    store = {}
    handle = model.module_for(layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        for _ in range(steps):
            opt.zero_grad()
            x = F.interpolate(transform(image.image(), gen), size=(224, 224), mode="bilinear")
            model(x)
            loss = -store["a"][:, channel].mean()
            if batch > 1:
                loss = loss + 1e2 * objectives.diversity(layer)({layer: store["a"]}).sum()
            loss.backward()
            opt.step()
    finally:
        handle.remove()
    sync(device)


def vizneuron_loop(model: Model, layer: str, channel: int, batch: int, steps: int, device: str) -> None:
    render(model, f"{layer}:{channel}", samples=batch, diversity=1e2 if batch > 1 else 0.0, size=128,
           model_input_size=224, steps=steps, device=device, redirect_steps=0, progress=False,
           **EARLIER_RENDER)  # float32 and lucent's step size: the same work as lucent's loop
    sync(device)


def lucent_loop(model: Model, layer: str, channel: int, batch: int, steps: int, device: str) -> None:
    from lucent.optvis import objectives as lobj
    from lucent.optvis import param
    from lucent.optvis import render as lrender

    objective = lobj.channel(layer, channel)
    if batch > 1:
        objective = objective - 1e2 * lobj.diversity(layer)
    lucent_model = model.module
    # lucent normalises torchvision models itself; InceptionV1 has its own x*255-117 inside lucent's
    # preprocessing path, so both see the same inputs as the other two loops.
    lrender.render_vis(lucent_model, objective, lambda: param.image(128, batch=batch), thresholds=(steps,),
                       show_image=False, progress=False, verbose=False)
    sync(device)


def interleaved(loops: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each loop, run in turns (A B C A B C ...) so drift in the
    machine's speed hits all of them alike."""
    for fn in loops.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workloads", default="abc")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import lucent  # noqa: F401
    except ImportError:
        raise SystemExit("needs torch-lucent: pip install -e '.[lucent]'") from None

    for key in args.workloads:
        title, spec, layer, channel, batch = WORKLOADS[key]
        loops = {}
        for name, loop in (("lucent", lucent_loop), ("vizneuron", vizneuron_loop), ("plain", plain_loop)):
            model = load_model(spec, device=args.device)  # one each: lucent leaves hooks behind
            if name == "lucent":  # lucent never freezes weights: run it as its users do
                model.module.requires_grad_(True)
            loops[name] = partial(loop, model, layer, channel, batch, args.steps, args.device)
        per_step = {name: t / args.steps for name, t in interleaved(loops, args.repeats).items()}
        print(key, title, per_step, flush=True)
        save_results("lucent", {"workload": title, "seconds_per_step": per_step, "steps": args.steps,
                                "device": args.device}, args, part=f"{key}-{args.device}")

if __name__ == "__main__":
    main()
