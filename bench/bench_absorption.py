"""Feature absorption by SAE kind, on the hierarchical toy set (`vizneuron.sae.toy_hierarchy`): 8
parent features with 4 children each (a child fires only with its parent) plus 96 independent
features in 64 dims; each SAE a plain call (`train_sae(x, d_sae=256, k=8, kind=)`) on 60,000 rows,
for every kind and several seeds (the seed draws the toy set, its rows and the SAE's init).
`absorption`: how often the parent's own latent stays silent where a child fires, less how often it
misses where the parent fires alone; `child_parent_cosine`: mean cosine between each child's latent
and its parent's direction (Chanin et al. 2024, "A is for Absorption"; Matryoshka SAEs, Bussmann et
al. 2025, are built to avoid it).

    python bench/bench_absorption.py [--seeds 0,1,2] [--kinds topk,batchtopk,jumprelu,matryoshka,relu]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from common import save_results

from vizneuron.sae import train_sae
from vizneuron.sae.toy import absorption, toy_hierarchy

KINDS = ("topk", "batchtopk", "jumprelu", "matryoshka", "relu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for kind in args.kinds.split(","):
        for seed in map(int, args.seeds.split(",")):
            toy = toy_hierarchy(seed=seed)
            x = toy.sample(args.rows, torch.Generator().manual_seed(5 + seed))
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sae = train_sae(x, d_sae=256, k=8, kind=kind, seed=seed, progress=False)
            seconds = time.perf_counter() - start
            held = toy.sample(20_000, torch.Generator().manual_seed(1000 + seed))
            with torch.no_grad():
                l0 = (sae.encode(held) > 0).sum(1).float().mean().item()
            row = {"kind": kind, "seed": seed, **absorption(sae, toy), "l0": l0, "k": 8, "seconds": seconds,
                   "converged": sae.config.training.get("converged"), "warnings": [str(w.message) for w in caught]}
            print(row, flush=True)
            save_results("absorption", row, args, part=f"{kind} / seed {seed}")


if __name__ == "__main__":
    main()
