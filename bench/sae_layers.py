"""SAEs on real layers as a user trains them: the bundled model's `layer3` with the defaults (20,000
CIFAR-10 train images, a seeded sample of every class; stops on its own plateau) and with the old
fixed recipe (4 epochs of batch 2,048), evaluated on the 10,000 test images; the model's accuracy
with the layer replaced by the SAE's reconstruction, against clean and mean-ablated.

    python bench/sae_layers.py [--recipes defaults,fixed]

The same as `vizneuron sae train default --layer layer3 --data ../shared/data/cifar10/train
--max-images 20000 --expansion 8 --k 16 --eval-data ../shared/data/cifar10/test`.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import SHARED, save_results

from vizneuron import evaluate_sae, load_model, train_layer_sae

RECIPES = {"defaults": {}, "fixed": {"epochs": 4, "batch_size": 2048}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--max-images", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cifar = SHARED / "data" / "cifar10"
    model = load_model("default")
    for name in args.recipes.split(","):
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sae = train_layer_sae(model, "layer3", cifar / "train", max_images=args.max_images, expansion=8, k=16,
                                  progress=False, **RECIPES[name])
        trained = time.perf_counter() - start
        metrics = evaluate_sae(sae, model, "layer3", cifar / "test", progress=False)
        print(name, metrics, flush=True)
        save_results("sae_layers", {"model": "default", "layer": "layer3", "recipe": RECIPES[name],
                                    "train_images": args.max_images, "training": sae.config.training,
                                    "train_s": trained, "metrics": metrics,
                                    "warnings": [str(w.message) for w in caught]}, args, part=f"layer3 {name}")


if __name__ == "__main__":
    main()
