"""Render the pictures in the README (fixed seeds, so they reproduce).

    python scripts/make_readme_assets.py            # bundled CIFAR-10 model
    python scripts/make_readme_assets.py --coral    # also Google's MobileNet-v2 from ../shared
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vizneuron import load_model, render
from vizneuron.gallery import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
CORAL = ROOT.parent / "shared" / "models" / "coral" / "mobilenet_v2_1.0_224_quant.tflite"


def save_columns(result, path: Path, scale: int = 1) -> None:
    """A column per unit, its samples below each other."""
    n_units = len(result.units)
    by_sample = result.images.view(n_units, result.samples, *result.images.shape[1:]).transpose(0, 1).flatten(0, 1)
    contact_sheet(by_sample, scale=scale, gap=6, columns=n_units).save(path)
    print("wrote", path, [round(a, 2) for a in result.activations.tolist()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coral", action="store_true")
    args = ap.parse_args()
    ASSETS.mkdir(exist_ok=True)
    model = load_model("default")
    result = render(model, "layer3:0-7", samples=2, diversity=1e2, steps=256, seed=0)
    save_columns(result, ASSETS / "default_layer3.png", scale=4)
    if args.coral:
        mobilenet = load_model(f"tflite:{CORAL}")
        logits = ["logit:tabby", "logit:sports car", "logit:goldfish", "logit:lighthouse"]
        result = render(mobilenet, logits, steps=256, seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_logits.png")
        result = render(mobilenet, "expanded_conv_12_expand:0-3", steps=256, seed=0, redirect_steps=16)
        save_columns(result, ASSETS / "mobilenet_v2_channels.png")


if __name__ == "__main__":
    main()
