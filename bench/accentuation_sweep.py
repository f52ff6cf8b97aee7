"""Feature accentuation at today's render defaults, across `stay_close`: for a few units of the
bundled model, start at each unit's top example in the bundled sample and record the unit's mean
activation on the seed and after accentuation, and the RMS pixel distance moved (pixels in [0, 1]).

    python bench/accentuation_sweep.py [--units layer3:3,layer3:10,layer3:20] [--stay-close 0,2,4,8]

Every setting but `stay_close` is the library's default (`render(model, unit, seed_image=...)`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import save_results

from vizneuron import RenderConfig, load_model, render
from vizneuron.mine.run import mine_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="layer3:3,layer3:10,layer3:20")
    parser.add_argument("--stay-close", default="0,2,4,8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default")
    for unit in args.units.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            index = mine_sample(model, unit, folder=tmp, progress=False)
            top = index.examples(unit)[0]
            seed_path = Path(tmp) / "seed.png"
            index.thumbnail(top.image).save(seed_path)
            rows = []
            for close in (float(v) for v in args.stay_close.split(",")):
                result = render(model, unit, seed_image=str(seed_path), stay_close=close, progress=False)
                rows.append({"stay_close": close, "on_seed": float(result.seed_activation[0]),
                             "after": float(result.activations[0]), "rms": float(result.seed_distance[0])})
                print(unit, rows[-1], flush=True)
        save_results("accentuation_sweep", {"unit": unit, "seed_label": top.label, "rows": rows,
                                            "default_stay_close": RenderConfig().stay_close,
                                            "steps": RenderConfig().steps}, args, part=unit)


if __name__ == "__main__":
    main()
