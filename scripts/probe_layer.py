"""Probe every channel of a layer of the bundled model against the CIFAR-10 classes (README table).

    python scripts/probe_layer.py --layer layer3 --per-concept 200
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from vizneuron import load_model
from vizneuron.probe import label_groups, probe_units

CIFAR_TEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10" / "test"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="layer3")
    ap.add_argument("--per-concept", type=int, default=200)
    ap.add_argument("--show", type=int, default=5)
    args = ap.parse_args()
    model = load_model("default")
    concepts = label_groups(CIFAR_TEST, {c: [c] for c in CLASSES}, per_concept=args.per_concept)
    reports = probe_units(model, f"{args.layer}:*", concepts)
    counts = Counter(r.verdict for r in reports)
    print(f"{len(reports)} channels of {args.layer}: " + ", ".join(f"{n} {v}" for v, n in counts.most_common()))
    print("\n| channel | verdict | score | driving concepts (z) |\n|---|---|---|---|")
    for r in sorted(reports, key=lambda r: -r.score)[: args.show]:
        z = {e.name: e.z for e in r.evidence}
        groups = " + ".join("/".join(f"{c} ({z[c]:+.1f})" for c in g) for g in r.groups)
        print(f"| {r.unit} | {r.verdict} | {r.score:.2f} | {groups} |")


if __name__ == "__main__":
    main()
