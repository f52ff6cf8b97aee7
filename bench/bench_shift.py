"""SHIFT for vision, with its baselines, on the cue task (`vizneuron/shift/task.py`): CIFAR-10 cat vs
dog, a faint stripe texture on 95 % of the training cats and 5 % of the training dogs.

Rows, all on the same data and seed: the biased model; SHIFT (its SAE features the probe judges
cue-driven, zero-ablated); SHIFT + retrain (head refitted on the biased split with the edit in
place); the same number of random SAE features (mean over seeds), alone and + retrain; as many
channels, chosen by the same attribution + probe, alone and + retrain; the head retrained with
no edit; the pixel-level baseline (the cue taken out of the test images, where it is known); the
oracle (trained with the cue balanced). Gap recovered = share of the balanced-accuracy gap
between the biased model and the oracle that a row closes.

    python bench/bench_shift.py [--layer layer3] [--sae PATH] [--seeds 5] [--rank-images 2000]
    python bench/bench_shift.py --train-sae      # (re)make the bundled SAE the rows use, then run
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, SHARED, save_results

from vizneuron import edit, load_model, train_layer_sae
from vizneuron.sae.model import read_sae_config
from vizneuron.shift.run import SAE_NAME, Scores, evaluate, retrain_head, shift
from vizneuron.shift.task import build_cue_task, undo_cue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--sae",
                        default=str(ROOT / "vizneuron" / "models" / "weights" / "cue_biased_layer3_sae.safetensors"))
    parser.add_argument("--task", default=str(ROOT / ".cache" / "cue-task"))
    parser.add_argument("--top", type=int, default=None, help="units judged (default: all that help the classifier)")
    parser.add_argument("--seeds", type=int, default=5, help="random-feature draws")
    parser.add_argument("--rank-images", type=int, default=2000, help="training images the attribution reads")
    parser.add_argument("--train-sae", action="store_true", help="train the SAE at --sae first (TopK, k 16, 1,024 "
                                                                     "latents, every position of train-biased, seed 0)")
    args = parser.parse_args()
    task = build_cue_task(SHARED / "data" / "cifar10", args.task)
    biased, oracle = load_model("default:cue-biased"), load_model("default:cue-oracle")
    train, test, cuefree = task / "train-biased", task / "test-balanced", task / "test-cuefree"
    if args.train_sae:
        train_layer_sae(biased, args.layer, train, k=16, expansion=8, seed=0).save(args.sae)
    concepts = {name: task / "concepts" / name for name in ("cue", "cat", "dog")}
    rows: dict[str, Scores] = {}
    start = time.perf_counter()

    def score(name: str, model) -> None:
        rows[name] = evaluate(model, test, cuefree)
        print(f"  {name}: balanced {rows[name].balanced:.1%}, worst {rows[name].worst:.1%} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    found = shift(biased, args.layer, args.sae, train, concepts, test=test, cuefree=cuefree, top=args.top,
                  max_images=args.rank_images)
    count = len(found.ablated)
    print(f"SHIFT ablates {count} of the {len(found.candidates)} features with a positive attribution")
    rows.update({"biased model": found.scores["original"], "SHIFT": found.scores["SHIFT"],
                 "SHIFT + retrain": found.scores["SHIFT + retrain"]})
    d_sae = read_sae_config(args.sae).d_sae
    draws, retrained_draws = [], []
    for seed in range(args.seeds):
        picked = torch.randperm(d_sae, generator=torch.Generator().manual_seed(seed))[:count].tolist()
        randomly = edit(biased, [f"{found.layer}/{SAE_NAME}:{f}" for f in picked], saes={SAE_NAME: args.sae},
                        mode=found.edited.mode, data=train, max_images=args.rank_images)
        draws.append(evaluate(randomly, test, cuefree))
        retrained_draws.append(evaluate(retrain_head(randomly, train), test, cuefree))
    rows[f"{count} random features ({args.seeds} draws)"] = mean_scores(draws)
    rows[f"{count} random features + retrain"] = mean_scores(retrained_draws)
    channels = shift(biased, args.layer, None, train, concepts, top=args.top, max_images=args.rank_images,
                     retrain=False)
    picked = [c.unit for c in channels.candidates if c.proposed][:count]  # as many as SHIFT, if there are
    print(f"channels: {len(picked)} proposed and ablated: {', '.join(picked)}")
    neurons = edit(biased, picked, mode=found.edited.mode, data=train, max_images=args.rank_images)
    score(f"{len(picked)} channels (attribution + probe)", neurons)
    score(f"{len(picked)} channels + retrain", retrain_head(neurons, train))
    zeroed = edit(biased, found.ablated, mode="zero", saes={SAE_NAME: args.sae})
    score("SHIFT, zero-ablated", zeroed)
    score("retrain only (no edit)", retrain_head(edit(biased, []), train))
    rows["pixel baseline (cue removed from the input)"] = evaluate(biased, undo_cue(test, task / "test-uncued"),
                                                                   cuefree)
    score("oracle (trained with the cue balanced)", oracle)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    scores = {name: s.__dict__ for name, s in rows.items()}
    save_results("shift", {"layer": args.layer, "ablated": count, "rows": scores,
                           "seconds": time.perf_counter() - start}, args)

def mean_scores(draws: list[Scores]) -> Scores:
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    groups = {g: mean([d.groups[g] for d in draws]) for g in draws[0].groups}
    return Scores(groups, mean([d.balanced for d in draws]), mean([d.worst for d in draws]),
                  mean([d.cuefree for d in draws]), mean([d.cue_readable for d in draws]))


if __name__ == "__main__":
    main()
