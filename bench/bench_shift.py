"""SHIFT for vision, with its baselines, on the cue task (`vizneuron/shift/task.py`): CIFAR-10 cat vs
dog, a faint stripe texture on 95 % of the training cats and 5 % of the training dogs.

The features are ranked once (attribution on the training split, the probe against the concept
sets). The settings are then chosen on the validation split (`val-balanced`: 400 training images
per class kept out of training, the cue on half of each class), by one criterion fixed in advance
(balanced accuracy of the edit, no retraining), over a grid fixed in advance (RULES x COUNTS x
MODES). The test split is scored once, with the chosen settings, for every row:

- the biased model; SHIFT (the proposed features ablated) and SHIFT + retrain (head refitted on
  the biased split with the edit in place);
- attribution only: the same number of features, the top ones by attribution, no probe (what the
  probe adds);
- random features: as many, drawn from the features with a positive attribution, and drawn from
  all features (the mean over seeds), each alone and + retrain;
- as many channels, chosen by the same attribution + rule;
- the head retrained with no edit; the pixel-level baseline (the cue taken out of the test
  images, where it is known); the oracle (trained with the cue balanced).

Gap recovered = share of the balanced-accuracy gap between the biased model and the oracle that a
row closes.

    python bench/bench_shift.py [--layer layer3] [--sae PATH] [--seeds 5] [--rank-images 2000]
    python bench/bench_shift.py --train-sae      # (re)make the bundled SAE the rows use, then run
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from common import ROOT, SHARED, save_results

from vizneuron import edit, load_model, train_layer_sae
from vizneuron.edit import unit_means
from vizneuron.sae.model import read_sae_config
from vizneuron.shift.run import SAE_NAME, Scores, cue_driven, evaluate, rank, retrain_head
from vizneuron.shift.task import build_cue_task, task_concepts, undo_cue
from vizneuron.units import parse_units

# the grid, fixed before any run: the proposal rule (z_min, margin, up_only), how many proposed
# features are ablated (the top ones by attribution; None: all), and how they are held
RULES = {"z 0.5, margin 0.3 (library default)": (0.5, 0.3, False), "z 0.25, margin 0.3": (0.25, 0.3, False),
         "z 1.0, margin 0.3": (1.0, 0.3, False), "z 0.5, margin 0.3, cue switches it on": (0.5, 0.3, True)}
COUNTS = (None, 25, 50, 100)
MODES = ("mean", "zero")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--sae",
                        default=str(ROOT / "vizneuron" / "models" / "weights" / "cue_biased_layer3_sae.safetensors"))
    parser.add_argument("--task", default=str(ROOT / ".cache" / "cue-task"))
    parser.add_argument("--seeds", type=int, default=5, help="random-feature draws")
    parser.add_argument("--rank-images", type=int, default=2000, help="training images the attribution reads")
    parser.add_argument("--train-sae", action="store_true", help="train the SAE at --sae first (TopK, k 16, 1,024 "
                                                                     "latents, every position of train-biased, seed 0)")
    args = parser.parse_args()
    task = build_cue_task(SHARED / "data" / "cifar10", args.task)
    biased, oracle = load_model("default:cue-biased"), load_model("default:cue-oracle")
    train, val, test, cuefree = (task / name for name in ("train-biased", "val-balanced", "test-balanced",
                                                          "test-cuefree"))
    if args.train_sae:
        train_layer_sae(biased, args.layer, train, k=16, expansion=8, seed=0).save(args.sae)
    concepts = task_concepts(task)
    start = time.perf_counter()

    def ablated(units: list[str], mode: str, means: dict[str, float], saes=None):
        values = [means[u] for u in units] if mode == "mean" else None
        return edit(biased, units, mode=mode, values=values, saes=saes)

    # rank once: every feature with a positive attribution, judged by the probe
    ranking = rank(biased, args.layer, args.sae, train, concepts, max_images=args.rank_images)
    saes = {SAE_NAME: args.sae}
    d_sae = read_sae_config(args.sae).d_sae
    every = parse_units(f"{ranking.layer}/{SAE_NAME}:*", biased, {SAE_NAME: ranking.sae})
    means = dict(zip([u.name for u in every], unit_means(biased, every, train, max_images=args.rank_images)))
    print(f"{len(ranking.candidates)} features with a positive attribution ({time.perf_counter() - start:.0f} s)")

    def proposed(candidates, rule: str, count: int | None) -> list[str]:
        z_min, margin, up_only = RULES[rule]
        chosen = [c.unit for c in candidates
                  if cue_driven(c.z, ranking.ignore, z_min=z_min, margin=margin, up_only=up_only)]
        return chosen[:count]  # candidates are best-first by attribution

    # choose on validation
    validation = []
    for rule, count, mode in itertools.product(RULES, COUNTS, MODES):
        units = proposed(ranking.candidates, rule, count)
        if count is not None and len(units) < count:  # the same set as "all" of this rule
            continue
        found = evaluate(ablated(units, mode, means, saes), val)
        validation.append({"rule": rule, "count": count, "mode": mode, "ablated": len(units),
                           "balanced": found.balanced, "worst": found.worst})
        print(f"  val: {rule}, {count or 'all'}, {mode}: {len(units)} features, balanced {found.balanced:.1%}, "
              f"worst {found.worst:.1%}", flush=True)
    best = max(validation, key=lambda row: row["balanced"])
    rule, mode, count = best["rule"], best["mode"], best["ablated"]
    print(f"chosen on validation: {rule}, {count} features, {mode} ({time.perf_counter() - start:.0f} s)")

    # test, once
    rows: dict[str, Scores] = {}

    def score(name: str, model) -> None:
        rows[name] = evaluate(model, test, cuefree)
        print(f"  {name}: balanced {rows[name].balanced:.1%}, worst {rows[name].worst:.1%} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    score("biased model", biased)
    chosen = proposed(ranking.candidates, rule, best["count"])
    shifted = ablated(chosen, mode, means, saes)
    score("SHIFT", shifted)
    score("SHIFT + retrain", retrain_head(shifted, train))
    by_attribution = ablated([c.unit for c in ranking.candidates[:count]], mode, means, saes)
    score(f"top {count} by attribution, no probe", by_attribution)
    score(f"top {count} by attribution + retrain", retrain_head(by_attribution, train))
    positive = [c.unit for c in ranking.candidates]
    pools = {"with a positive attribution": positive, "of all": [u.name for u in every]}
    for pool, names in pools.items():
        draws, retrained = [], []
        for seed in range(args.seeds):
            order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))[:count].tolist()
            randomly = ablated([names[i] for i in order], mode, means, saes)
            draws.append(evaluate(randomly, test, cuefree))
            retrained.append(evaluate(retrain_head(randomly, train), test, cuefree))
        rows[f"{count} random features {pool} ({args.seeds} draws)"] = mean_scores(draws)
        rows[f"{count} random features {pool} + retrain"] = mean_scores(retrained)
        print(f"  random {pool}: balanced {rows[f'{count} random features {pool} ({args.seeds} draws)'].balanced:.1%}",
              flush=True)
    channels = rank(biased, args.layer, None, train, concepts, max_images=args.rank_images)
    picked = proposed(channels.candidates, rule, count)  # as many as SHIFT, if there are
    channel_units = parse_units(picked, biased) if picked else []
    channel_means = dict(zip(picked, unit_means(biased, channel_units, train, max_images=args.rank_images)))
    neurons = ablated(picked, mode, channel_means)
    score(f"{len(picked)} channels (attribution + probe)", neurons)
    score(f"{len(picked)} channels + retrain", retrain_head(neurons, train))
    score("retrain only (no edit)", retrain_head(edit(biased, []), train))
    rows["pixel baseline (cue removed from the input)"] = evaluate(biased, undo_cue(test, task / "test-uncued"),
                                                                   cuefree)
    score("oracle (trained with the cue balanced)", oracle)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    save_results("shift", {"layer": args.layer, "d_sae": d_sae, "positive": len(positive),
                           "chosen": {"rule": rule, "mode": mode, "count": best["count"], "ablated": count},
                           "validation": validation, "rows": {name: s.__dict__ for name, s in rows.items()},
                           "seconds": time.perf_counter() - start}, args)


def mean_scores(draws: list[Scores]) -> Scores:
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    groups = {g: mean([d.groups[g] for d in draws]) for g in draws[0].groups}
    return Scores(groups, mean([d.balanced for d in draws]), mean([d.worst for d in draws]),
                  mean([d.cuefree for d in draws]), mean([d.cue_readable for d in draws]))


if __name__ == "__main__":
    main()
