"""Faithfulness of upstream circuits: for 11 units of the bundled model's `layer3` fed by `layer2`
(CIFAR-10 test images) and 10 units of MobileNet-v2's `Conv_1` fed by `expanded_conv_16_project`
(the ImageNet sample), the share of each unit's mean value on its top 32 images that is kept when
the top-m upstream channels are mean-ablated, ranked by contribution, by gradient size (the
linearised weight) and at random (mean of 5 draws), and on the bundled model by a greedy search
that ablates, one at a time, the channel that removes most (the oracle for "which m channels");
the completeness gap; seconds per circuit.

    python bench/bench_circuit.py [bundled mobilenet]       # needs ../shared
"""

from __future__ import annotations

import argparse
import time

from common import SHARED, coral, save_results

from vizneuron import circuit, load_model
from vizneuron.circuit import ablation_curve
from vizneuron.circuit.run import _end_units, _images, ablate_upstream, reference
from vizneuron.units import parse_unit

COUNTS = (1, 2, 4, 8, 16, 32)


def greedy(model, unit_name: str, upstream: str, data, counts, examples: int = 32) -> list[float]:
    """Kept share after the m channels a greedy search picks (each step: the one removing most)."""
    unit = parse_unit(unit_name, model)
    others = _end_units(model, upstream, None)
    ref = reference(model, unit, [others[0].layer], data)
    images = _images(ref.source, ref.ids[ref.values.argsort(descending=True)[:examples]].tolist(), model)
    mean = ref.means[others[0].layer]
    clean = ablate_upstream(model, unit, [], mean, images)
    chosen, kept = [], []
    for _ in range(max(counts)):
        left = [u for u in others if u not in chosen]
        scores = [ablate_upstream(model, unit, chosen + [u], mean, images) for u in left]
        chosen.append(left[min(range(len(left)), key=scores.__getitem__)])
        if len(chosen) in counts:
            kept.append(min(scores) / clean)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=["bundled", "mobilenet"])
    args = parser.parse_args()
    settings = []
    if "bundled" in args.sets:
        settings.append(("bundled layer3 <- layer2", load_model("default"), "layer3", "layer2", range(0, 128, 12),
                         SHARED / "data" / "cifar10" / "test", True))
    if "mobilenet" in args.sets:
        settings.append(("MobileNet-v2 Conv_1 <- expanded_conv_16_project",
                         load_model(coral("mobilenet_v2_1.0_224_quant")), "Conv_1", "expanded_conv_16_project",
                         range(0, 1280, 128), SHARED / "data" / "imagenet-sample", False))
    for title, model, layer, upstream, channels, data, oracle in settings:
        curves, gaps, seconds, greedy_curves = [], [], [], []
        for channel in channels:
            start = time.perf_counter()
            found = circuit(model, f"{layer}:{channel}", upstream=upstream, data=data)
            seconds.append(time.perf_counter() - start)
            gaps.append(found.completeness)
            curves.append(ablation_curve(model, found, counts=COUNTS))
            if oracle:
                greedy_curves.append({"greedy (oracle)": greedy(model, found.unit, upstream, data, COUNTS[:4])})
            print(f"  {found.unit}: top-8 keeps {curves[-1]['contribution'][3]:.0%}", flush=True)
        save_results("circuit", {"title": title, "layer": layer, "upstream": upstream, "channels": list(channels),
                                 "counts": COUNTS, "curves": curves, "greedy_counts": COUNTS[:4],
                                 "greedy": [c["greedy (oracle)"] for c in greedy_curves], "completeness_gaps": gaps,
                                 "seconds": seconds}, args, part=title)

if __name__ == "__main__":
    main()
