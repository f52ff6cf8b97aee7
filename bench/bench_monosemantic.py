"""Are SAE features more monosemantic than neurons? The probe's verdict on every channel of a layer
and on every feature of SAEs of that layer, with the same concepts, against a random-decoder SAE.

    python bench/bench_monosemantic.py [layer3 mobilenet] [--kinds topk,...]

- `layer3`: the bundled model's `layer3` (128 channels); concepts: the 10 CIFAR-10 classes, 100
  test images each; SAEs trained on 5,000 CIFAR-10 train images (80,000 rows), 8x, k 16.
- `mobilenet`: MobileNet-v2 `expanded_conv_16_project` (320 channels); concepts: the ready-made
  ImageNet groups over the ImageNet sample (one image per class); SAEs trained on the rows of those
  same 1,000 images (the only ImageNet images here), 8x, k 32.

Every SAE is a plain call (`train_sae(rows, d_sae=, k=, kind=)`). The baseline is
`random_decoder(topk SAE)`: the same shape, k and input scale with random decoder directions.
Fractions are of the units the probe could judge; "rare" (fired on fewer than MIN_FIRING concept
images) is a share of all units, counted apart rather than dropped. Writes each row to
bench/results/monosemantic.json (one part per set and unit kind: a rerun of some kinds keeps the
others); `python scripts/tables.py` makes the table and the bar chart from it.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import SHARED, coral, imagenet_list, save_results

from vizneuron import load_model
from vizneuron.probe import build_concepts, label_groups
from vizneuron.probe.atlas import MIN_FIRING, layer_atlas
from vizneuron.sae import layer_activations, random_decoder, train_sae
from vizneuron.sources import as_source

KINDS = ("topk", "batchtopk", "jumprelu", "matryoshka")
CIFAR = SHARED / "data" / "cifar10"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def settings(names: list[str]):
    if "layer3" in names:
        model = load_model("default")
        concepts = label_groups(CIFAR / "test", {c: [c] for c in CLASSES}, per_concept=100)
        rows = torch.cat(list(layer_activations(model, "layer3", as_source(CIFAR / "train"), max_images=5000)))
        yield "bundled layer3 (CIFAR-10 classes)", model, "layer3", concepts, rows, 16
    if "mobilenet" in names:
        model = load_model(coral("mobilenet_v2_1.0_224_quant"))
        data = SHARED / "data" / "imagenet-sample"
        concepts = build_concepts(model, data=str(imagenet_list()))
        rows = torch.cat(list(layer_activations(model, "expanded_conv_16_project", as_source(data))))
        yield "MobileNet-v2 expanded_conv_16_project (ImageNet groups)", model, "expanded_conv_16_project", \
            concepts, rows, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["layer3", "mobilenet"])
    parser.add_argument("--kinds", default=",".join(KINDS), help="SAE kinds to train (with topk among them, the "
                        "random-decoder baseline is made from the topk SAE); rows of kinds not run stay as they were")
    args = parser.parse_args()
    for name, model, layer, concepts, rows, k in settings(args.sets):
        print(f"\n{name}: {len(concepts)} concepts, {len(rows):,} SAE training rows", flush=True)
        found = {"neurons": layer_atlas(model, layer, concepts, progress=False)}
        saes = {}
        kinds = args.kinds.split(",")
        for kind in kinds:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                saes[kind] = train_sae(rows, d_sae=8 * rows.shape[1], k=k, kind=kind, progress=False)
            print(f"  trained {kind} in {time.perf_counter() - start:.0f} s", flush=True)
            found[f"SAE {kind}"] = layer_atlas(model, layer, concepts, sae=saes[kind], sae_name=kind, progress=False)
        if "topk" in saes:
            found["random-decoder SAE (baseline)"] = layer_atlas(model, layer, concepts,
                                                                 sae=random_decoder(saes["topk"]),
                                                                 sae_name="random", progress=False)
        for units, atlas in found.items():
            judged = [e.score for e in atlas.entries if e.verdict != "rare"]
            save_results("monosemantic", {"set": name, "units": units, "count": len(atlas.entries),
                                          "counts": atlas.counts(), "fractions": atlas.fractions(),
                                          "mean_score": sum(judged) / max(1, len(judged)), "min_firing": MIN_FIRING,
                                          "sae_k": k, "sae_rows": len(rows)}, args, part=f"{name} / {units}")


if __name__ == "__main__":
    main()
