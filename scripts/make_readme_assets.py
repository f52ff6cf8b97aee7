"""Render the pictures in the README from the bundled model (reproducible: fixed seed).

    python scripts/make_readme_assets.py
"""

from __future__ import annotations

from pathlib import Path


from vizneuron import load_model, render
from vizneuron.gallery import contact_sheet

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    model = load_model("default")
    result = render(model, "layer3:0-7", samples=2, diversity=1e2, steps=256, seed=0, progress=True)
    out = ROOT / "assets" / "default_layer3.png"
    out.parent.mkdir(exist_ok=True)
    n_units = len(result.units)
    by_sample = result.images.view(n_units, 2, *result.images.shape[1:]).transpose(0, 1).flatten(0, 1)
    contact_sheet(by_sample, scale=4, gap=6, columns=n_units).save(out)  # a column per unit
    print("wrote", out, [round(a, 2) for a in result.activations.tolist()])


if __name__ == "__main__":
    main()
