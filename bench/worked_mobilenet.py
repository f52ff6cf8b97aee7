"""A worked example on an ImageNet model: MobileNet-v2 from Google's Coral TFLite file (../shared), the
atlas of its `Conv_1` layer (1,280 channels) over the labelled ImageNet sample with the ready-made
ImageNet concept groups, its most polysemantic unit, and that unit's probe report.

    python bench/worked_mobilenet.py [--layer Conv_1] [--threads 2]

The same as `vizneuron atlas` then `vizneuron probe` on the command line (the docs page shows those
commands); the figures land in bench/results/worked_mobilenet.json for the page's tables.
"""

from __future__ import annotations

import argparse

import torch
from common import coral, imagenet_list, save_results

from vizneuron import load_model, probe
from vizneuron.probe import build_concepts, layer_atlas, most_polysemantic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="Conv_1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(coral("mobilenet_v2_1.0_224_quant"))
    concepts = build_concepts(model, data=str(imagenet_list()))  # the ImageNet groups (one image per class)
    atlas = layer_atlas(model, args.layer, concepts, progress=False)
    ranked = most_polysemantic(atlas)
    report = probe(model, ranked[0].unit, concepts, renders=2)
    print(report.summary, report.warnings)
    save_results("worked_mobilenet", {
        "model": model.name, "layer": args.layer, "units": len(atlas.entries),
        "concepts": {name: len(images) for name, images in concepts.items()},
        "counts": atlas.counts(), "notes": atlas.notes,
        "most_polysemantic": [{"unit": e.unit, "score": e.score, "concepts": e.concepts} for e in ranked[:8]],
        "probe": {"unit": report.unit, "summary": report.summary, "score": report.score,
                  "evidence": report.evidence_table(), "warnings": report.warnings,
                  "renders": {k: v for k, v in report.renders.items() if k != "images"}},
    }, args)


if __name__ == "__main__":
    main()
