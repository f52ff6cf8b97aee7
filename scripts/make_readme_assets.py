"""Render the pictures in the README (fixed seeds, so they reproduce).

    python scripts/make_readme_assets.py            # bundled CIFAR-10 model
    python scripts/make_readme_assets.py --coral    # also Google's MobileNet-v2 from ../shared
    python scripts/make_readme_assets.py --examples # also renders beside mined CIFAR-10 examples
    python scripts/make_readme_assets.py --circuit  # also a polysemantic unit's two input paths
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from vizneuron import PRESETS, circuit, load_model, mine, probe_units, render
from vizneuron.gallery import contact_sheet
from vizneuron.imageio import to_pil
from vizneuron.probe import label_groups

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "docs" / "assets"
CORAL = ROOT.parent / "shared" / "models" / "coral" / "mobilenet_v2_1.0_224_quant.tflite"
CIFAR_TEST = ROOT.parent / "shared" / "data" / "cifar10" / "test"


def save_columns(result, path: Path, scale: int = 1) -> None:
    """A column per unit, its samples below each other."""
    n_units = len(result.units)
    by_sample = result.images.view(n_units, result.samples, *result.images.shape[1:]).transpose(0, 1).flatten(0, 1)
    contact_sheet(by_sample, scale=scale, gap=6, columns=n_units).save(path)
    print("wrote", path, [round(a, 2) for a in result.activations.tolist()])


def save_render_and_examples(model, units: str, path: Path, tile: int = 96, shown: int = 6) -> None:
    """A row per unit: its render, a gap, then its top dataset examples (darkened where it is quiet)."""
    index = mine(model, units.split(":")[0], CIFAR_TEST, k=shown, batch_size=500,
                 index=ROOT / "out" / "readme_examples.sqlite")
    result = render(model, units, seed=0, progress=False)
    gap = tile // 4
    sheet = Image.new("RGB", ((shown + 1) * (tile + 4) + gap, len(result.units) * (tile + 4)), "white")
    for row, unit in enumerate(result.units):
        y = row * (tile + 4)
        sheet.paste(to_pil(result.images[row]).resize((tile, tile), Image.NEAREST), (0, y))
        for col, example in enumerate(index.examples(unit.name, k=shown)):
            picture = index.overlay(example)
            sheet.paste(picture.resize((tile, tile), Image.NEAREST), (gap + (col + 1) * (tile + 4), y))
    sheet.save(path)
    print("wrote", path)


def save_circuit_paths(model, path: Path, tile: int = 96, shown: int = 4) -> None:
    """The most polysemantic `layer3` channel (probe over the CIFAR-10 classes) with its render, and
    for each of its two concept groups the `layer2` channels that feed it most on that concept."""
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    concepts = label_groups(CIFAR_TEST, {c: [c] for c in classes}, per_concept=100)
    reports = [r for r in probe_units(model, "layer3:*", concepts, examples=0) if len(r.groups) == 2]
    report = max(reports, key=lambda r: r.score)
    pair = [group[0] for group in report.groups]
    found = circuit(model, report.unit, upstream="layer2", data=CIFAR_TEST, k=shown,
                    concepts={c: concepts[c] for c in pair})
    rows = [[report.unit]] + [[e.unit for e in found.paths[c]] for c in pair]
    result = render(model, [u for row in rows for u in row], seed=0, progress=False)
    images = dict(zip([u.name for u in result.units], result.images))
    label = 150
    sheet = Image.new("RGB", (label + shown * (tile + 4), len(rows) * (tile + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    titles = [f"{report.unit}\n{report.summary.replace(' (', chr(10) + '(')}"] + [f"on {c}, fed by" for c in pair]
    for r, (title, units) in enumerate(zip(titles, rows)):
        y = r * (tile + 24)
        draw.text((4, y + tile // 3), title, fill="black")
        for col, unit in enumerate(units):
            sheet.paste(to_pil(images[unit]).resize((tile, tile), Image.NEAREST), (label + col * (tile + 4), y))
            draw.text((label + col * (tile + 4), y + tile + 4), unit, fill="black")
    sheet.save(path)
    print("wrote", path, report.unit, report.summary, found.path_agreement())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coral", action="store_true")
    ap.add_argument("--examples", action="store_true")
    ap.add_argument("--circuit", action="store_true")
    args = ap.parse_args()
    ASSETS.mkdir(exist_ok=True)
    model = load_model("default")
    result = render(model, "layer3:0-7", PRESETS["quick-start"], progress=False)  # as the quick start
    save_columns(result, ASSETS / "default_layer3.png", scale=4)
    if args.examples:
        save_render_and_examples(model, "layer3:0-5", ASSETS / "default_layer3_examples.png")
    if args.circuit:
        save_circuit_paths(model, ASSETS / "circuit_paths.png")
    if args.coral:
        mobilenet = load_model(f"tflite:{CORAL}")
        logits = ["logit:tabby", "logit:sports car", "logit:goldfish", "logit:lighthouse"]
        result = render(mobilenet, logits, seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_logits.png")
        result = render(mobilenet, "expanded_conv_12_expand:0-3", seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_channels.png")


if __name__ == "__main__":
    main()
