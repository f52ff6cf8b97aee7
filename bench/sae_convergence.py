"""Do plain calls of every SAE kind converge? On toy superposition sets of several shapes (none of
them the docs' examples), `train_sae(x, d_sae=, k=, kind=)` with the defaults against the same call
trained 4x longer (explicit epochs, 4x the passes the plain call made): MMCS (mean max cosine of the
planted features to the decoder rows), the share of features recovered above cosine 0.9, L0 and FVU
on held-out rows, and how the plain call stopped.

    python bench/sae_convergence.py [--kinds topk,batchtopk,jumprelu,matryoshka,relu] [--shapes a,b,c,d]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from common import save_results

from vizneuron.sae import mean_max_cosine, toy_superposition, train_sae

KINDS = ("topk", "batchtopk", "jumprelu", "matryoshka", "relu")
#: name -> toy shape: features n in d dims, mean firing, frequency exponent; rows; d_sae; k
SHAPES = {
    "a": dict(n=160, d=40, mean_active=5.0, exponent=0.5, rows=50_000, d_sae=320, k=10),
    "b": dict(n=300, d=60, mean_active=4.0, exponent=0.5, rows=100_000, d_sae=600, k=8),
    "c": dict(n=96, d=24, mean_active=3.0, exponent=0.3, rows=30_000, d_sae=384, k=6),
    "d": dict(n=400, d=64, mean_active=6.0, exponent=0.8, rows=80_000, d_sae=800, k=12),
}


def recovered(true_features: torch.Tensor, decoder: torch.Tensor, at: float = 0.9) -> float:
    a = true_features / true_features.norm(dim=1, keepdim=True)
    b = decoder / decoder.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return ((a @ b.T).amax(1) > at).float().mean().item()


def measure(sae, toy, held: torch.Tensor) -> dict:
    with torch.no_grad():
        z = sae.encode(held)
        error = (sae.decode(z) - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum()
    return {"mmcs": mean_max_cosine(toy.features, sae.W_dec.detach()), "recovered_0.9": recovered(
        toy.features, sae.W_dec.detach()), "l0": (z > 0).sum(1).float().mean().item(), "fvu": error.item(),
        "training": {k: v for k, v in sae.config.training.items() if not isinstance(v, (dict, list))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--longer", type=int, default=4, help="how many times the plain call's passes to compare")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for shape_name in args.shapes.split(","):
        shape = SHAPES[shape_name]
        toy = toy_superposition(n=shape["n"], d=shape["d"], mean_active=shape["mean_active"],
                                exponent=shape["exponent"], seed=11)
        x = toy.sample(shape["rows"], torch.Generator().manual_seed(12))
        held = toy.sample(10_000, torch.Generator().manual_seed(13))
        for kind in args.kinds.split(","):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                plain = train_sae(x, d_sae=shape["d_sae"], k=shape["k"], kind=kind, progress=False)
                plain_s = time.perf_counter() - start
                epochs = max(1, math.ceil(args.longer * plain.config.training["samples_seen"] / len(x)))
                start = time.perf_counter()
                longer = train_sae(x, d_sae=shape["d_sae"], k=shape["k"], kind=kind, epochs=epochs, progress=False)
                longer_s = time.perf_counter() - start
            row = {"shape": shape_name, **shape, "kind": kind,
                   "plain": {**measure(plain, toy, held), "seconds": plain_s},
                   "longer": {**measure(longer, toy, held), "seconds": longer_s, "epochs": epochs}}
            print(shape_name, kind, f"plain MMCS {row['plain']['mmcs']:.3f} (L0 {row['plain']['l0']:.1f}, "
                  f"{row['plain']['training'].get('steps')} steps), {args.longer}x: {row['longer']['mmcs']:.3f}",
                  flush=True)
            save_results("sae_convergence", row, args, part=f"{shape_name} / {kind}")


if __name__ == "__main__":
    main()
