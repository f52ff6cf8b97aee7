"""Faithfulness of upstream circuits on the bundled model: for 11 units of `layer3` fed by `layer2`,
the fraction of each unit's mean value on its top 32 CIFAR-10 test images that is kept when the
top-m `layer2` channels are mean-ablated, ranked by contribution, by gradient size (the linearised
weight) and at random (mean of 5 draws); the completeness gap; seconds per circuit.

    python bench/bench_circuit.py        # needs ../shared
"""

from __future__ import annotations

import time

from common import SHARED, table
from vizneuron import circuit, load_model
from vizneuron.circuit import ablation_curve

COUNTS = (1, 2, 4, 8, 16, 32)


def main() -> None:
    model = load_model("default")
    data = SHARED / "data" / "cifar10" / "test"
    curves, gaps, seconds = [], [], []
    for channel in range(0, 128, 12):
        start = time.perf_counter()
        found = circuit(model, f"layer3:{channel}", upstream="layer2", data=data)
        seconds.append(time.perf_counter() - start)
        gaps.append(found.completeness)
        curves.append(ablation_curve(model, found, data, counts=COUNTS))
    rows = [[ranking] + [f"{sum(c[ranking][i] for c in curves) / len(curves):.0%}" for i in range(len(COUNTS))]
            for ranking in ("contribution", "gradient norm", "random")]
    print(table(["ablated by"] + [f"top {m}" for m in COUNTS], rows))
    print(f"completeness gap {sum(gaps) / len(gaps):.1%} (max {max(gaps):.1%}); "
          f"{sum(seconds) / len(seconds):.1f} s per circuit (512 reference images, 32 top examples, 8 steps)")


if __name__ == "__main__":
    main()
