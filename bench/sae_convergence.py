"""Do plain calls of every SAE kind converge? On toy superposition sets of several shapes (none of
them the docs' examples), `train_sae(x, d_sae=, k=, kind=)` with the defaults against the same call
trained 4x longer (explicit epochs, 4x the passes the plain call made): MMCS (mean max cosine of the
planted features to the decoder rows), the share of features recovered above cosine 0.9, L0 and FVU
on held-out rows, and how the plain call stopped.

    python bench/sae_convergence.py [--kinds topk,batchtopk,jumprelu,matryoshka,relu] [--shapes a,b,c,d]
    python bench/sae_convergence.py --diagnose    # where batchtopk and jumprelu fall short: VARIANTS

`--diagnose` trains the variants in VARIANTS on the shapes where a plain call fell short, and
measures, besides MMCS, where the codes go: how many latents fire on more than 10 % of rows, and
the share of all firings that come from latents whose decoder row matches no planted feature
(best cosine below 0.9).
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


VARIANTS = {  # (kind, shape) -> label -> train_sae options on top of the plain call's
    ("batchtopk", "a"): {"plain call": {}, "topk, plain call (for reference)": {"kind": "topk"},
                         "lr 1e-3": {"lr": 1e-3}, "no AuxK loss": {"aux_weight": 0.0},
                         "k = the true mean L0 (5)": {"k": 5}, "topk, k = 5 (for reference)": {"kind": "topk", "k": 5}},
    ("batchtopk", "c"): {"plain call": {}, "topk, plain call (for reference)": {"kind": "topk"},
                         "lr 1e-3": {"lr": 1e-3}, "no AuxK loss": {"aux_weight": 0.0},
                         "k = the true mean L0 (3)": {"k": 3}, "topk, k = 3 (for reference)": {"kind": "topk", "k": 3}},
    ("jumprelu", "c"): {"plain call": {}, "plateau 0.003": {"plateau": 0.003}, "lr 1e-3": {"lr": 1e-3},
                        "20 epochs": {"epochs": 20}, "40 epochs": {"epochs": 40}, "80 epochs": {"epochs": 80}},
}


def where_codes_go(sae, toy, held: torch.Tensor) -> dict:
    """Latents firing on more than 10 % of held-out rows; the share of firings from latents whose
    decoder row is no planted feature (best cosine < 0.9); MMCS over the most frequent quarter of
    the planted features and over the rarest quarter."""
    with torch.no_grad():
        fired = sae.encode(held) > 0
    rows = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
    cosines = rows @ toy.features.T  # (latents, features)
    matched = cosines.amax(1) >= 0.9
    per_latent = fired.float().sum(0)
    order = toy.frequencies.argsort(descending=True)
    quarter = len(order) // 4
    return {"frequent_latents": int((per_latent > 0.1 * len(held)).sum()),
            "unmatched_share": float(per_latent[~matched].sum() / per_latent.sum().clamp(min=1)),
            "mmcs_frequent": float(cosines.amax(0)[order[:quarter]].mean()),
            "mmcs_rare": float(cosines.amax(0)[order[-quarter:]].mean())}


def diagnose(args) -> None:
    for (kind, shape_name), variants in VARIANTS.items():
        shape = SHAPES[shape_name]
        toy, x, held = toy_set(shape)
        for label, options in variants.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sae = train_sae(x, **{"d_sae": shape["d_sae"], "k": shape["k"], "kind": kind, **options},
                                progress=False)
            row = {"shape": shape_name, **shape, "kind": kind, "variant": label, "options": options,
                   **measure(sae, toy, held), **where_codes_go(sae, toy, held)}
            print(kind, shape_name, label, f"MMCS {row['mmcs']:.3f}, FVU {row['fvu']:.3f}, "
                  f"{row['frequent_latents']} frequent latents, {row['unmatched_share']:.0%} unmatched, MMCS frequent "
                  f"{row['mmcs_frequent']:.3f} rare {row['mmcs_rare']:.3f}", flush=True)
            save_results("sae_convergence_diagnosis", row, args, part=f"{kind} / {shape_name} / {label}")


def toy_set(shape: dict) -> tuple:
    """The shape's toy data, its training rows and 10,000 held-out rows (fixed seeds)."""
    toy = toy_superposition(n=shape["n"], d=shape["d"], mean_active=shape["mean_active"],
                            exponent=shape["exponent"], seed=11)
    return toy, toy.sample(shape["rows"], torch.Generator().manual_seed(12)), toy.sample(
        10_000, torch.Generator().manual_seed(13))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--longer", type=int, default=4, help="how many times the plain call's passes to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--diagnose", action="store_true", help="the variants of VARIANTS instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.diagnose:
        return diagnose(args)
    for shape_name in args.shapes.split(","):
        shape = SHAPES[shape_name]
        toy, x, held = toy_set(shape)
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
