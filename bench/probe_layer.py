"""The probe on every channel of a real layer: the bundled model's `layer3` (128 channels) against the
10 CIFAR-10 classes (200 test images each), as `vizneuron atlas default --layer layer3 --data
../shared/data/cifar10/test --per-concept 200` runs it: each channel's verdict, score and driving
concepts.

    python bench/probe_layer.py [--per-concept 200]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from common import save_results, shared

from vizneuron import load_model
from vizneuron.probe import label_groups, layer_atlas

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--per-concept", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = shared("data", "cifar10", "test")
    model = load_model("default")
    concepts = label_groups(data, {c: [c] for c in CLASSES}, per_concept=args.per_concept)
    atlas = layer_atlas(model, args.layer, concepts, progress=False)
    print(atlas.counts())
    save_results("probe_layer", {"model": "default", "layer": args.layer, "concepts": CLASSES,
                                 "per_concept": args.per_concept, "counts": atlas.counts(),
                                 "entries": [dataclasses.asdict(e) for e in atlas.entries]}, args)


if __name__ == "__main__":
    main()
