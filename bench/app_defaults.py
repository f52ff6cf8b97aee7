"""How long the app's default actions take on the bundled model (CPU threads as given): the
neuron view's render, the layer grid's render, mining and the probe on a CIFAR-10 sample, and the
Edit view's one-click cue task.

    python bench/app_defaults.py [--threads 2] [--per-class 100]

Calls the same library functions with the same defaults as streamlit_app.py; each row is one
cold run (no cache) after a warm-up render.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import save_results, shared

import vizneuron as vz
from vizneuron import PRESETS, RenderCache
from vizneuron.models import bundled_saes
from vizneuron.probe import label_groups
from vizneuron.shift import BIASED_MODEL, CUE_LAYER, apply, build_sample_cue_task, rank, task_concepts


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = shared("data", "cifar10", "test")
    model = vz.load_model("default")
    vz.render(model, "layer3:0", steps=8, progress=False)  # warm-up
    cache = RenderCache(tempfile.mkdtemp())
    rows = []
    neuron, grid = PRESETS["neuron-view"], PRESETS["layer-grid"]  # the app's defaults
    _, seconds = timed(lambda: cache.render(model, "layer3:5", neuron))
    rows.append({"action": f"neuron view render ({neuron.samples} diverse samples, {neuron.steps} steps, 32 px)",
                 "seconds": seconds})
    _, seconds = timed(lambda: cache.render(model, "layer3:5", neuron))
    rows.append({"action": "the same render again (read from the cache)", "seconds": seconds})
    units = [f"layer3:{c}" for c in range(128)]
    _, seconds = timed(lambda: cache.render(model, units, grid))
    rows.append({"action": f"layer grid render (all 128 channels of layer3, {grid.steps} steps)", "seconds": seconds})
    folder = Path(tempfile.mkdtemp()) / "list.txt"
    files = [p for c in sorted(data.iterdir()) for p in sorted(c.iterdir())[: args.per_class]]
    folder.write_text("".join(f"{p}\t{p.parent.name}\n" for p in files))
    index, seconds = timed(lambda: vz.mine(model, "layer3", folder, k=16, index=folder.with_suffix(".sqlite"),
                                           progress=False))
    rows.append({"action": f"mine layer3 over {len(files):,} images (k 16)", "seconds": seconds})
    concepts = label_groups(folder, {c: [c] for c in model.labels}, model, per_concept=100)
    report, seconds = timed(lambda: vz.probe(model, "layer3:5", concepts, index=index, renders=4, render_steps=128))
    rows.append({"action": "probe (10 concepts x 100 images, 4 renders of 128 steps, example clusters)",
                 "seconds": seconds})
    print(f"torch threads: {args.threads}; {report.unit}: {report.summary}")
    _, seconds = timed(lambda: cue_demo(Path(tempfile.mkdtemp())))
    rows.append({"action": "Edit view, \"Try it on the bundled cue task\" (build the task from the sample, rank 256 "
                           "SAE features, apply, score 40 test images)", "seconds": seconds})
    save_results("app_defaults", rows, args)


def cue_demo(folder: Path) -> None:
    """What the Edit view's one click runs, with its settings (views/edit.py `start_cue_demo`)."""
    task = build_sample_cue_task(folder)
    model = vz.load_model(BIASED_MODEL)
    ranking = rank(model, CUE_LAYER, next(iter(bundled_saes(BIASED_MODEL, CUE_LAYER).values())),
                   task / "train-biased", task_concepts(task), top=256, max_images=2000)
    apply(model, ranking, task / "train-biased", test=task / "test-balanced", retrain=False, max_images=2000)


if __name__ == "__main__":
    main()
