"""Faithfulness of upstream circuits: for 11 units of the bundled model's `layer3` fed by `layer2`
(CIFAR-10 test images) and 10 units of MobileNet-v2's `Conv_1` fed by `expanded_conv_16_project`
(the ImageNet sample), the share of each unit's mean value on its top 32 images that is kept when
the top-m upstream channels are mean-ablated, ranked by contribution, by gradient size (the
linearised weight) and at random (mean of 5 draws), and on the bundled model by two searches for
the m channels that remove most (greedy, then swaps from the greedy set: strong heuristics, not an
exhaustive oracle); per unit and on average; the completeness gap; seconds per circuit.

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


def searched(model, unit_name: str, upstream: str, data, counts, examples: int = 32) -> dict[str, list[float]]:
    """Kept share after the m channels two searches pick, for each m in `counts`: a greedy search
    (each step ablates the channel that removes most), then a swap search from the greedy set (swap
    any chosen channel for any other while that removes more; a local optimum under single swaps,
    so no single-channel change of the set does better). Neither is an exhaustive oracle."""
    unit = parse_unit(unit_name, model)
    others = _end_units(model, upstream, None)
    ref = reference(model, unit, [others[0].layer], data)
    images = _images(ref.source, ref.ids[ref.values.argsort(descending=True)[:examples]].tolist(), model)
    mean = ref.means[others[0].layer]
    clean = ablate_upstream(model, unit, [], mean, images)

    def kept(chosen: list) -> float:
        return ablate_upstream(model, unit, chosen, mean, images) / clean

    chosen, found = [], {"greedy": [], "swap search": []}
    for _ in range(max(counts)):
        left = [u for u in others if u not in chosen]
        scores = [kept(chosen + [u]) for u in left]
        chosen.append(left[min(range(len(left)), key=scores.__getitem__)])
        if len(chosen) in counts:
            found["greedy"].append(min(scores))
            best, best_kept, improved = list(chosen), min(scores), True
            while improved:
                improved = False
                for i in range(len(best)):
                    for u in others:
                        if u in best:
                            continue
                        trial = best[:i] + [u] + best[i + 1:]
                        value = kept(trial)
                        if value < best_kept - 1e-6:
                            best, best_kept, improved = trial, value, True
            found["swap search"].append(best_kept)
    return found


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
                greedy_curves.append(searched(model, found.unit, upstream, data, COUNTS[:4]))
            print(f"  {found.unit}: top-8 keeps {curves[-1]['contribution'][3]:.1%}"
                  + (f", greedy {greedy_curves[-1]['greedy'][3]:.1%}, swap search "
                     f"{greedy_curves[-1]['swap search'][3]:.1%}" if oracle else ""), flush=True)
        save_results("circuit", {"title": title, "layer": layer, "upstream": upstream, "channels": list(channels),
                                 "units": [f"{layer}:{c}" for c in channels], "counts": COUNTS, "curves": curves,
                                 "search_counts": COUNTS[:4], "searches": greedy_curves, "completeness_gaps": gaps,
                                 "seconds": seconds}, args, part=title)

if __name__ == "__main__":
    main()
