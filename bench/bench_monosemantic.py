"""Are SAE features more monosemantic than neurons? The probe's verdict on every channel of a layer
and on every feature of SAEs of that layer, with the same concepts, against a random-decoder SAE.

    python bench/bench_monosemantic.py [layer3 mobilenet] [--out bench/monosemantic.json]

- `layer3`: the bundled model's `layer3` (128 channels); concepts: the 10 CIFAR-10 classes, 100
  test images each; SAEs trained on 5,000 CIFAR-10 train images (80,000 rows), 8x, k 16.
- `mobilenet`: MobileNet-v2 `expanded_conv_16_project` (320 channels); concepts: the ready-made
  ImageNet groups over the ImageNet sample (one image per class); SAEs trained on the rows of those
  same 1,000 images (the only ImageNet images here), 8x, k 32.

Every SAE is a plain call (`train_sae(rows, d_sae=, k=, kind=)`). The baseline is
`random_decoder(topk SAE)`: the same shape, k and input scale with random decoder directions.
Fractions are of the units the probe could judge; "rare" (fired on fewer than MIN_FIRING concept
images) is a share of all units, counted apart rather than dropped. Writes the table to stdout,
the numbers to --out and a bar chart to assets/monosemantic.png.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from common import SHARED, coral, table
from PIL import Image, ImageDraw

from vizneuron import load_model
from vizneuron.imageio import image_files
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
        concepts = build_concepts(model, data=str(_imagenet_list(data)))
        rows = torch.cat(list(layer_activations(model, "expanded_conv_16_project", as_source(data))))
        yield "MobileNet-v2 expanded_conv_16_project (ImageNet groups)", model, "expanded_conv_16_project", \
            concepts, rows, 32


def _imagenet_list(root: Path) -> Path:
    """The ImageNet sample as a labelled list: sorted file order is the class index."""
    listing = Path("out/imagenet_sample.txt")
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{path}\t{index}\n" for index, path in enumerate(image_files(root))))
    return listing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["layer3", "mobilenet"])
    parser.add_argument("--out", default="bench/monosemantic.json")
    parser.add_argument("--picture", default="assets/monosemantic.png")
    parser.add_argument("--kinds", default=",".join(KINDS), help="SAE kinds to train (with topk among them, the "
                        "random-decoder baseline is made from the topk SAE); rows of kinds not run stay as they were")
    args = parser.parse_args()
    results: dict[str, dict] = {}
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
        lines = []
        for units, atlas in found.items():
            shares, counts = atlas.fractions(), atlas.counts()
            judged = [e.score for e in atlas.entries if e.verdict != "rare"]
            results.setdefault(name, {})[units] = {"units": len(atlas.entries), "counts": counts, "fractions": shares,
                                                   "mean_score": sum(judged) / max(1, len(judged))}
            lines.append([units, len(atlas.entries), f"{shares['monosemantic']:.0%}", f"{shares['polysemantic']:.0%}",
                          f"{shares['unclear']:.0%}", f"{counts['rare']} ({shares['rare']:.0%})",
                          f"{sum(judged) / max(1, len(judged)):.2f}"])
        print(table(["units", "count", "monosemantic", "polysemantic", "unclear",
                     f"rare (< {MIN_FIRING} images)", "mean score"], lines), flush=True)
    out = Path(args.out)
    merged = json.loads(out.read_text()) if out.is_file() else {}  # other sets' and kinds' rows stay
    for name, rows in results.items():
        merged[name] = {**merged.get(name, {}), **rows}
    results = merged
    out.write_text(json.dumps(results, indent=1))
    draw_bars(results, Path(args.picture))


def draw_bars(results: dict[str, dict], path: Path) -> None:
    """Stacked bars of monosemantic / polysemantic / unclear shares, one per unit set."""
    colours = {"monosemantic": (76, 145, 80), "polysemantic": (220, 140, 40), "unclear": (170, 170, 170)}
    bars = [(title, units, r["fractions"]) for title, group in results.items() for units, r in group.items()]
    width, row, left = 760, 26, 300
    image = Image.new("RGB", (width, 40 + row * (len(bars) + len(results)) + 30), "white")
    draw = ImageDraw.Draw(image)
    y = 10
    for title in results:
        draw.text((10, y), title, fill="black")
        y += row
        for _, units, shares in (b for b in bars if b[0] == title):
            draw.text((20, y + 6), units, fill="black")
            x = left
            for verdict, colour in colours.items():
                span = int(shares[verdict] * (width - left - 20))
                draw.rectangle([x, y + 2, x + span, y + row - 4], fill=colour)
                if span > 30:
                    draw.text((x + 4, y + 6), f"{shares[verdict]:.0%}", fill="white")
                x += span
            y += row
    x = left
    for verdict, colour in colours.items():
        draw.rectangle([x, y + 8, x + 12, y + 20], fill=colour)
        draw.text((x + 16, y + 8), verdict, fill="black")
        x += 130
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


if __name__ == "__main__":
    main()
