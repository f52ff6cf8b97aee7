"""Render the pictures in the README (fixed seeds, so they reproduce).

    python scripts/make_readme_assets.py            # bundled CIFAR-10 model
    python scripts/make_readme_assets.py --coral    # also Google's MobileNet-v2 from ../shared
    python scripts/make_readme_assets.py --examples # also renders beside mined CIFAR-10 examples
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from vizneuron import PRESETS, load_model, mine, render
from vizneuron.gallery import contact_sheet
from vizneuron.imageio import to_pil

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
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
    result = render(model, units, steps=256, seed=0, progress=False)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coral", action="store_true")
    ap.add_argument("--examples", action="store_true")
    args = ap.parse_args()
    ASSETS.mkdir(exist_ok=True)
    model = load_model("default")
    result = render(model, "layer3:0-7", PRESETS["quick-start"], progress=False)  # as the quick start
    save_columns(result, ASSETS / "default_layer3.png", scale=4)
    if args.examples:
        save_render_and_examples(model, "layer3:0-5", ASSETS / "default_layer3_examples.png")
    if args.coral:
        mobilenet = load_model(f"tflite:{CORAL}")
        logits = ["logit:tabby", "logit:sports car", "logit:goldfish", "logit:lighthouse"]
        result = render(mobilenet, logits, steps=256, seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_logits.png")
        result = render(mobilenet, "expanded_conv_12_expand:0-3", steps=256, seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_channels.png")


if __name__ == "__main__":
    main()
